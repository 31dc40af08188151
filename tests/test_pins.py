"""Tamper-evident verification over real git repositories: what is pinned, how the surface changed, and
whether the checks still pass with the baseline surface restored."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from goalkeeper.events import Evidence
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.spec.contract import Check, Contract, Metric
from goalkeeper.verify.checks import all_pass, run_checks
from goalkeeper.verify.pins import (
    Pin,
    Pins,
    pin_verification_surface,
    surface_state,
    tamper_feedback,
    verify_restored,
)
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


def restored(repo: Path, base: str, pins: Pins, goal: Contract = UNIT_CONTRACT,
             sandbox: SandboxPolicy | None = None, env: dict[str, str] | None = None) -> bool:
    return all_pass(asyncio.run(verify_restored(repo, base, pins, goal, None, sandbox, env)))


async def verify_restored_as_is(repo: Path, goal: Contract = UNIT_CONTRACT) -> list[Evidence]:
    """The first half of the double verification: the checks on the tree as the model left it."""
    return await run_checks(goal, repo)


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
    feedback = tamper_feedback(state)
    assert "tests/test_calc.py (modified)" in feedback and "assertTrue(True)" in feedback


def test_a_deleted_test_file_is_a_modification(project: tuple[Path, str]) -> None:
    repo, base = project
    pins = pin_verification_surface(repo, UNIT_CONTRACT)
    (repo / "tests/test_calc.py").unlink()
    (repo / "tests/test_other.py").write_text("")

    state = surface_state(repo, pins, base)

    assert (state.state, state.deleted, state.added) == ("modified", ["tests/test_calc.py"], ["tests/test_other.py"])
    assert "+++ /dev/null" in state.diff and "-        self.assertEqual(add(2, 3), 5)" in state.diff
    assert "tests/test_calc.py (deleted)" in tamper_feedback(state)


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

    feedback = tamper_feedback(surface_state(repo, pins, base), limit=500)

    assert "diff cut at 500" in feedback and len(feedback) < 2000


# ---------------------------------------------------------------- verification on the restored surface


def test_a_weakened_assertion_over_buggy_code_fails_once_restored(project: tuple[Path, str]) -> None:
    repo, base = project
    pins = pin_verification_surface(repo, UNIT_CONTRACT)
    (repo / "tests/test_calc.py").write_text(TEST_CALC.replace("assertEqual(add(2, 3), 5)", "assertTrue(True)"))

    assert all_pass(asyncio.run(verify_restored_as_is(repo)))
    assert not restored(repo, base, pins)
    assert "assertTrue(True)" in (repo / "tests/test_calc.py").read_text()  # the workspace is left alone


def test_a_deleted_failing_test_comes_back_and_fails(project: tuple[Path, str]) -> None:
    repo, base = project
    pins = pin_verification_surface(repo, UNIT_CONTRACT)
    (repo / "tests/test_calc.py").unlink()

    assert all_pass(asyncio.run(verify_restored_as_is(repo)))
    assert not restored(repo, base, pins)
    assert not (repo / "tests/test_calc.py").exists()


def test_fixed_code_with_a_new_test_passes_restored_and_extends_the_surface(project: tuple[Path, str]) -> None:
    repo, base = project
    pins = pin_verification_surface(repo, UNIT_CONTRACT)
    (repo / "calc.py").write_text(FIXED_CALC)
    (repo / "tests/test_more.py").write_text(TEST_CALC.replace("AddTest", "MoreTest").replace("(2, 3), 5", "(1, 1), 2"))

    assert restored(repo, base, pins)
    assert surface_state(repo, pins, base).state == "extended"


def test_a_new_test_that_fails_is_kept_in_the_restored_copy(project: tuple[Path, str]) -> None:
    repo, base = project
    pins = pin_verification_surface(repo, UNIT_CONTRACT)
    (repo / "calc.py").write_text(FIXED_CALC)
    (repo / "tests/test_more.py").write_text(TEST_CALC.replace("(2, 3), 5", "(2, 2), 5"))

    assert not restored(repo, base, pins)


def test_a_benchmark_edited_to_do_less_work_misses_its_target_once_restored(git_repo: Path) -> None:
    base = commit(git_repo, {"calc.py": FIXED_CALC, "bench.py": BENCH})
    goal = contract(Check(name="bench", run=f"{sys.executable} bench.py", timeout_s=60,
                          metric=Metric(json_path="calls", target="< 500")))
    pins = pin_verification_surface(git_repo, goal)
    (git_repo / "bench.py").write_text(BENCH.replace("N = 1000", "N = 10"))

    assert all_pass(asyncio.run(verify_restored_as_is(git_repo, goal)))
    assert pins.paths == {"bench.py"}
    assert not restored(git_repo, base, pins, goal)
    assert surface_state(git_repo, pins, base).modified == ["bench.py"]


def test_a_deleted_executable_script_comes_back_executable(git_repo: Path) -> None:
    commit(git_repo, {"check.sh": "#!/bin/sh\nexit 0\n"})
    os.chmod(git_repo / "check.sh", 0o755)
    git(git_repo, "commit", "-q", "-am", "executable")
    base = git(git_repo, "rev-parse", "HEAD").strip()
    goal = contract(Check(name="script", run="./check.sh"))
    pins = pin_verification_surface(git_repo, goal)
    (git_repo / "check.sh").unlink()

    assert restored(git_repo, base, pins, goal)


def test_the_sandbox_is_retargeted_to_the_restored_copy(project: tuple[Path, str]) -> None:
    repo, base = project
    pins = pin_verification_surface(repo, UNIT_CONTRACT)
    (repo / "calc.py").write_text(FIXED_CALC)
    writes = contract(Check(name="tests", run=f"{UNITTEST} && touch written", timeout_s=60))
    sandbox = SandboxPolicy("workspace-write", repo.resolve())
    env = {"PATH": os.environ["PATH"], "HOME": str(repo.parent / "home")}

    # confined to the workspace itself, the scratch copy would be read-only and `touch` would fail
    assert restored(repo, base, pins, writes, sandbox=sandbox, env=env)
    assert not (repo / "written").exists()
