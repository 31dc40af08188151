"""`gk init --template`: every template is valid, teaches, and passes `gk lint` on a sample repository it fits.

Each sample is a real git repository in tmp_path where the template's check fails now (so the goal is not
achieved at once), its keep_green commands are green, and the checks pass once the work is done (DONE). The
tools are the dev environment's real pytest, coverage.py and ruff.
"""

from __future__ import annotations

import asyncio
import os
import sys
from importlib import resources
from pathlib import Path

import pytest

from goalkeeper.contract.toml import load_contract
from goalkeeper.sandbox.globs import path_matches
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.templates import TEMPLATE_NAMES, template, templates, write_template
from goalkeeper.verify.checks import run_check, run_checks
from goalkeeper.verify.lint import lint_goal
from helpers import git
from scenario import gk

PYTEST_PATHS = '[tool.pytest.ini_options]\npythonpath = ["src"]\n'

SAMPLES: dict[str, dict[str, str]] = {
    "tests-green": {
        "calc.py": "def add(a, b):\n    return a - b\n",
        "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
    },
    "coverage": {
        "pyproject.toml": PYTEST_PATHS,
        "src/shapes.py": "".join(f"def area_{n}(x):\n    if x < 0:\n        raise ValueError(x)\n"
                                 f"    return x * {n}\n\n\n" for n in range(1, 6)),
        "tests/test_shapes.py": "from shapes import area_1\n\n\ndef test_area_1():\n    assert area_1(2) == 2\n",
    },
    "perf-metric": {
        "slow.py": "import time\n\n\ndef work():\n    time.sleep(0.15)\n    return sum(range(1000))\n",
        "bench.py": ("import json\nimport time\n\nfrom slow import work\n\nsamples = []\nfor _ in range(3):\n"
                     "    start = time.perf_counter()\n    work()\n"
                     "    samples.append((time.perf_counter() - start) * 1000)\n"
                     'print(json.dumps({"p95_ms": max(samples)}))\n'),
        "tests/test_slow.py": "from slow import work\n\n\ndef test_work():\n    assert work() == 499500\n",
    },
    "lint-clean": {
        "app.py": "import os\n\n\ndef greet(name):\n    return f'hello {name}'\n",
        "tests/test_app.py": "from app import greet\n\n\ndef test_greet():\n    assert greet('a') == 'hello a'\n",
    },
    "error-backlog": {
        "session.py": "def user_of(cookies):\n    return cookies['user']\n",
        "tests/test_session.py": ("from session import user_of\n\n\ndef test_user():\n"
                                  "    assert user_of({'user': 'a'}) == 'a'\n"),
    },
    "docs-sync": {
        "pyproject.toml": PYTEST_PATHS,
        "README.md": "# app\n\n`greet(name)` returns `Hello, NAME!`.\n",
        "src/app.py": "def greet(name):\n    return f'hello {name}'\n",
        "tests/test_app.py": "from app import greet\n\n\ndef test_greet():\n    assert greet('a') == 'hello a'\n",
    },
    "migration": {
        "pyproject.toml": PYTEST_PATHS,
        "src/clock.py": "import datetime\n\n\ndef stamp():\n    return datetime.datetime.utcnow().year\n",
        "tests/test_clock.py": "from clock import stamp\n\n\ndef test_stamp():\n    assert stamp() >= 2024\n",
    },
}

#: What finishing each sample's goal looks like: with these files, every check passes and every constraint holds.
DONE: dict[str, dict[str, str]] = {
    "tests-green": {"calc.py": "def add(a, b):\n    return a + b\n"},
    "coverage": {"tests/test_shapes.py": "".join(
        f"import pytest\nfrom shapes import area_{n}\n\n\ndef test_area_{n}():\n    assert area_{n}(2) == {2 * n}\n"
        f"    with pytest.raises(ValueError):\n        area_{n}(-1)\n" for n in range(1, 6))},
    "perf-metric": {"slow.py": "def work():\n    return sum(range(1000))\n"},
    "lint-clean": {"app.py": "def greet(name):\n    return f'hello {name}'\n"},
    "error-backlog": {"REPORT.md": "# Backlog\n\n- ERR-101: fixed, test_missing_cookie\n"
                                   "- ERR-102: diagnosed: rounding happens twice\n"
                                   "- ERR-103 — Diagnosed: no sample file\n"},
    "docs-sync": {"DISCREPANCIES.md": "- `README.md:3` says `Hello, NAME!`; `src/app.py:2` returns `hello NAME`\n"},
    "migration": {"src/clock.py": "import datetime\n\n\ndef stamp():\n"
                                  "    return datetime.datetime.now(datetime.timezone.utc).year\n"},
}


@pytest.fixture(autouse=True)
def dev_tools_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The templates name `python`, `coverage` and `ruff`: the dev environment's, as a developer's shell has them."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def sample(tmp_path: Path, files: dict[str, str]) -> Path:
    repo = tmp_path / "sample"
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "sample")
    return repo


def test_there_is_a_sample_for_every_template_and_a_file_for_every_name() -> None:
    shipped = {entry.name.removesuffix(".toml") for entry in resources.files("goalkeeper.templates").iterdir()
               if entry.name.endswith(".toml")}
    assert shipped == set(TEMPLATE_NAMES) == set(SAMPLES)


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_template_passes_lint_on_a_sample_repo_it_fits(tmp_path: Path, name: str) -> None:
    repo = sample(tmp_path, SAMPLES[name])
    write_template(name, repo / "goal.toml")
    report = lint_goal(load_contract(repo / "goal.toml"), repo)
    assert report.ran
    assert [(f.code, f.message) for f in report.findings if f.severity != "info"] == []
    assert all(score.score == 2 for score in report.scores if score.element != "constraints")


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_templates_checks_pass_once_the_work_is_done(tmp_path: Path, name: str) -> None:
    repo = sample(tmp_path, SAMPLES[name])
    write_template(name, repo / "goal.toml")
    contract = load_contract(repo / "goal.toml")
    for path, text in DONE[name].items():
        (repo / path).write_text(text)
    bounds = contract.boundaries
    sandbox = SandboxPolicy(bounds.sandbox, repo.resolve(), tuple(bounds.protect), tuple(bounds.paths),
                            network=bounds.network)
    evidence = asyncio.run(run_checks(contract, repo, sandbox=sandbox))
    assert [(e.name, e.output_tail[-300:]) for e in evidence if not e.passed] == []
    touched = {line[3:] for line in git(repo, "status", "--porcelain").splitlines()} - {"goal.toml"}
    assert not [path for path in touched if any(path_matches(glob, path) for glob in bounds.protect)]


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_template_teaches_each_element_in_comments(name: str) -> None:
    text = template(name).text
    for marker in ("1. OUTCOME", "2. VERIFICATION SURFACE", "3. CONSTRAINTS", "4. BOUNDARIES", "5. ITERATION POLICY",
                   "6. BLOCKED STOP CONDITION", "7. CONTEXT", "8. DELIVERABLES", "BUDGET"):
        assert f"# {marker}" in text


def test_the_coverage_template_reads_coverage_pys_total(tmp_path: Path) -> None:
    repo = sample(tmp_path, SAMPLES["coverage"])
    write_template("coverage", repo / "goal.toml")
    [check] = load_contract(repo / "goal.toml").checks
    assert "coverage report --format=total" in check.run
    assert check.metric is not None and check.metric.target == ">= 80"
    evidence = asyncio.run(run_check(check, repo))
    assert evidence.metric is not None and evidence.metric < 80 and not evidence.passed  # 1 of 5 functions tested


def test_gk_init_writes_a_template_that_gk_lint_accepts(tmp_path: Path, goalkeeper_home: Path) -> None:
    repo = sample(tmp_path, SAMPLES["tests-green"])
    env = {"PATH": os.environ["PATH"]}
    written = gk("init", "--template", "tests-green", "--cwd", str(repo), home=goalkeeper_home, env_extra=env)
    assert written.returncode == 0 and "tests-green" in written.stdout
    linted = gk("lint", "--cwd", str(repo), home=goalkeeper_home, env_extra=env)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "goal score 16/18" in linted.stdout and "no errors" in linted.stdout


def test_gk_init_refuses_to_overwrite_without_force(tmp_path: Path, goalkeeper_home: Path) -> None:
    (tmp_path / "goal.toml").write_text("mine\n")
    refused = gk("init", "--template", "coverage", "--cwd", str(tmp_path), home=goalkeeper_home)
    assert refused.returncode == 4 and "already exists" in refused.stderr and "--force" in refused.stderr
    assert (tmp_path / "goal.toml").read_text() == "mine\n"
    forced = gk("init", "--template", "coverage", "--output", "goal.toml", "--force", "--cwd", str(tmp_path),
                home=goalkeeper_home)
    assert forced.returncode == 0 and (tmp_path / "goal.toml").read_text() == template("coverage").text


def test_gk_init_names_the_templates_for_an_unknown_one(tmp_path: Path, goalkeeper_home: Path) -> None:
    done = gk("init", "--template", "test-green", "--cwd", str(tmp_path), home=goalkeeper_home)
    assert done.returncode == 4 and "did you mean `tests-green`" in done.stderr
    assert all(name in done.stderr for name in TEMPLATE_NAMES)
    assert not (tmp_path / "goal.toml").exists()


def test_gk_init_list_describes_every_template(goalkeeper_home: Path) -> None:
    listed = gk("init", "--list", home=goalkeeper_home)
    assert listed.returncode == 0
    for each in templates():
        assert f"{each.name}" in listed.stdout and each.summary in listed.stdout
