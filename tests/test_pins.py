"""Tamper-evident verification over real git repositories: what is pinned, how the surface changed, and
what the model is told about it (the clean room's own verdicts are in test_cleanroom.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from goalkeeper.spec.contract import Check, Contract
from goalkeeper.verify.pins import Pin, Pins, pin_verification_surface, surface_state
from goalkeeper.verify.surface import tamper_feedback
from helpers import git

CALC = "def add(a, b):\n    return a - b\n"
FIXED_CALC = "def add(a, b):\n    return a + b\n"
TEST_CALC = (
    "import unittest\n\nfrom calc import add\n\n\n"
    "class AddTest(unittest.TestCase):\n"
    "    def test_add(self):\n"
    "        self.assertEqual(add(2, 3), 5)\n"
)
BENCH = (
    "import json, time\n\nfrom calc import add\n\n"
    "N = 1000\nstart = time.perf_counter()\ntotal = sum(add(i, 1) for i in range(N))\n"
    "print(json.dumps({'calls': N}))\n"
)
UNITTEST = f"{sys.executable} -m unittest discover -s tests -t ."


def contract(*checks: Check, keep_green: list[str] | None = None) -> Contract:
    return Contract.model_validate({"outcome": "add adds", "checks": list(checks),
                                    "constraints": {"keep_green": keep_green or []}})


UNIT_CONTRACT = contract(Check(name="tests", run=UNITTEST, timeout_s=60))


def commit(repo: Path, files: dict[str, str]) -> str:
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "baseline")
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def project(git_repo: Path) -> tuple[Path, str]:
    """A repository with buggy code and a test that catches the bug, committed as the goal's baseline."""
    base = commit(git_repo, {"calc.py": CALC, "tests/__init__.py": "", "tests/test_calc.py": TEST_CALC})
    return git_repo, base


# ---------------------------------------------------------------- pinning


def test_test_files_are_pinned_by_convention_at_any_depth(git_repo: Path) -> None:
    commit(git_repo, {"calc.py": CALC, "test_top.py": "", "pkg/calc_test.py": "", "pkg/tests/data.json": "{}",
                      "web/app.test.ts": "", "web/__tests__/x.js": "", "spec/a_spec.rb": "", "src/app.py": ""})

    pins = pin_verification_surface(git_repo, contract())

    assert sorted(pins.paths) == ["pkg/calc_test.py", "pkg/tests/data.json", "spec/a_spec.rb", "test_top.py",
                                  "web/__tests__/x.js", "web/app.test.ts"]
    assert all(pin.sha256 is not None and len(pin.sha256) == 64 for pin in pins.files)


def test_test_configuration_is_pinned_and_pyproject_only_when_it_configures_tests(git_repo: Path) -> None:
    commit(git_repo, {"conftest.py": "", "pytest.ini": "", "tox.ini": "", "setup.cfg": "", ".coveragerc": "",
                      "pyproject.toml": "[tool.pytest.ini_options]\naddopts = '-q'\n",
                      "lib/pyproject.toml": "[project]\nname = 'lib'\n"})

    pins = pin_verification_surface(git_repo, contract())

    assert sorted(pins.paths) == [".coveragerc", "conftest.py", "pyproject.toml", "pytest.ini", "setup.cfg",
                                  "tox.ini"]


def test_files_named_by_check_and_keep_green_commands_are_pinned(git_repo: Path) -> None:
    commit(git_repo, {"bench.py": "", "scripts/lint.sh": "", "checks/smoke.py": "", "calc.py": ""})
    goal = contract(Check(name="bench", run="python bench.py --rounds=3 && echo done"),
                    Check(name="smoke", run="python -m unittest checks.smoke"),
                    keep_green=["bash scripts/lint.sh missing.sh ../outside.py"])

    pins = pin_verification_surface(git_repo, goal)

    assert sorted(pins.paths) == ["bench.py", "checks/smoke.py", "scripts/lint.sh"]


def test_extra_pins_add_globs_and_ignored_files_are_never_pinned(git_repo: Path) -> None:
    commit(git_repo, {".gitignore": "build/\n", "fixtures/golden.txt": "42\n", "build/tests/out.txt": ""})

    pins = pin_verification_surface(git_repo, contract(), extra_pins=["fixtures/"])

    assert sorted(pins.paths) == ["fixtures/golden.txt"]
    assert "fixtures/" in pins.globs


def test_pins_round_trip_through_json() -> None:
    pins = Pins(files=(Pin("tests/test_a.py", "ab" * 32),), globs=("**/tests/**",))

    assert Pins.from_json(pins.to_json()) == pins


# ---------------------------------------------------------------- surface states


def test_an_untouched_surface_is_unchanged(project: tuple[Path, str]) -> None:
    repo, base = project
    pins = pin_verification_surface(repo, UNIT_CONTRACT)
    (repo / "calc.py").write_text(FIXED_CALC)

    state = surface_state(repo, pins, base)

    assert (state.state, state.modified, state.deleted, state.added, state.diff) == ("unchanged", [], [], [], "")


def test_a_new_test_file_extends_the_surface(project: tuple[Path, str]) -> None:
    repo, base = project
    pins = pin_verification_surface(repo, UNIT_CONTRACT)
    (repo / "tests/test_more.py").write_text("")

    state = surface_state(repo, pins, base)

    assert (state.state, state.added, state.modified) == ("extended", ["tests/test_more.py"], [])


def test_a_weakened_assertion_is_a_modification_with_its_diff(project: tuple[Path, str]) -> None:
    repo, base = project
    pins = pin_verification_surface(repo, UNIT_CONTRACT)
    (repo / "tests/test_calc.py").write_text(TEST_CALC.replace("assertEqual(add(2, 3), 5)", "assertTrue(True)"))

    state = surface_state(repo, pins, base)

    assert (state.state, state.modified) == ("modified", ["tests/test_calc.py"])
    assert "-        self.assertEqual(add(2, 3), 5)\n+        self.assertTrue(True)\n" in state.diff
    feedback = tamper_feedback(state, [("tests/test_calc.py", "modified")])
    assert "tests/test_calc.py (modified)" in feedback and "assertTrue(True)" in feedback


def test_a_deleted_test_file_is_a_modification(project: tuple[Path, str]) -> None:
    repo, base = project
    pins = pin_verification_surface(repo, UNIT_CONTRACT)
    (repo / "tests/test_calc.py").unlink()
    (repo / "tests/test_other.py").write_text("")

    state = surface_state(repo, pins, base)

    assert (state.state, state.deleted, state.added) == ("modified", ["tests/test_calc.py"], ["tests/test_other.py"])
    assert "+++ /dev/null" in state.diff and "-        self.assertEqual(add(2, 3), 5)" in state.diff
    assert "tests/test_calc.py (deleted)" in tamper_feedback(state, [("tests/test_calc.py", "deleted")])


def test_a_skip_decorator_is_a_modification(project: tuple[Path, str]) -> None:
    repo, base = project
    pins = pin_verification_surface(repo, UNIT_CONTRACT)
    (repo / "tests/test_calc.py").write_text(TEST_CALC.replace("    def test_add", "    @unittest.skip('x')\n"
                                                                                     "    def test_add"))

    state = surface_state(repo, pins, base)

    assert state.state == "modified"
    assert "+    @unittest.skip('x')" in state.diff


def test_tamper_feedback_caps_the_diff(project: tuple[Path, str]) -> None:
    repo, base = project
    pins = pin_verification_surface(repo, UNIT_CONTRACT)
    (repo / "tests/test_calc.py").write_text("x = 1\n" * 5000)

    feedback = tamper_feedback(surface_state(repo, pins, base), [("tests/test_calc.py", "modified")], limit=500)

    assert "diff cut at 500" in feedback and len(feedback) < 2000
