"""The observed verification surface: strace at baseline, inside the sandbox, and the rule for changes.

Real strace, real bubblewrap, real git repositories in tmp_path (and the vendored more-itertools sdist);
the parser is also fed hand-written logs for the shapes strace prints rarely (unfinished calls, escapes).
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from goalkeeper.events import payload_of
from goalkeeper.render.surface import summary_lines
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.spec.contract import Check, Contract, Metric
from goalkeeper.store import Store
from goalkeeper.verify.checks import run_checks
from goalkeeper.verify.observed import Surface, observed_surface, surface_from_pins, surface_summary
from goalkeeper.verify.pins import Pins, pin_verification_surface
from goalkeeper.verify.trace import (
    Tracer,
    calls,
    follow,
    open_log,
    read_trace,
    split_args,
    tracer_problem,
    unescape,
)
from helpers import git
from scenario import HONEST_FIX, TESTS, events, gk, new_goal, run, sample_repo, scripted, write_script

needs_strace = pytest.mark.skipif(shutil.which("strace") is None or shutil.which("bwrap") is None,
                                  reason="strace and bubblewrap are needed to observe the surface")

SDIST = Path(__file__).parent / "data" / "more-itertools-10.5.0.tar.gz"
PY = sys.executable


# ---------------------------------------------------------------- the parser, on hand-written logs


def test_strings_are_unescaped_as_strace_prints_them() -> None:
    assert unescape(r"we ird,\74x\76\"q/f\303\251\n") == 'we ird,<x>"q/fé\n'
    assert unescape(r"a\x41\\b\t") == "aA\\b\t"
    assert split_args(r'AT_FDCWD</a,b\76>, "x, \"y\"", {st_mode=S_IFREG, st_size=1}, 0') == [
        r"AT_FDCWD</a,b\76>", r'"x, \"y\""', "{st_mode=S_IFREG, st_size=1}", "0"]


def test_unfinished_calls_are_joined_where_they_began() -> None:
    log = [
        '5 clone(child_stack=NULL, flags=SIGCHLD <unfinished ...>\n',
        '6 openat(AT_FDCWD</w/sub>, "child.txt", O_RDONLY) = 3</w/sub/child.txt>\n',
        '5 <... clone resumed>, child_tidptr=0x1) = 6\n',
        '5 openat(AT_FDCWD</w>, "late", O_RDONLY <unfinished ...>\n',
        '5 <... openat resumed>) = -1 ENOENT (No such file or directory)\n',
    ]
    seen = [(call.pid, call.name, call.result) for call in calls(log)]
    assert seen == [(5, "clone", "6"), (6, "openat", "3"), (5, "openat", "-1")]


def test_relative_paths_follow_chdir_fchdir_and_fork() -> None:
    log = [
        '1 chdir("sub") = 0\n',
        '1 stat("probe.ini", 0x1) = -1 ENOENT (No such file or directory)\n',
        '1 clone(child_stack=NULL, flags=SIGCHLD) = 2\n',
        '2 execve("./run.sh", ["./run.sh"], 0x1 /* 3 vars */) = 0\n',
        '1 fchdir(3</w/other>) = 0\n',
        '1 access("data.csv", R_OK) = 0\n',
        '1 getdents64(4</w/listed>, 0x1 /* 3 entries */, 32768) = 72\n',
        '1 openat(AT_FDCWD</w>, "out.log", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 5</w/out.log>\n',
        '1 +++ exited with 0 +++\n',
        'garbage that is not a call\n',
    ]
    found = read_trace(log, Path("/w"))
    assert found.missing == {"/w/sub/probe.ini"}
    assert found.executed == {"/w/sub/run.sh"}
    assert found.stat == {"/w/other/data.csv"}
    assert found.listed == {"/w/listed"}
    assert found.written == {"/w/out.log"}


# ---------------------------------------------------------------- a log read while strace writes it


def test_a_log_is_followed_as_it_grows_split_mid_line_and_mid_character(tmp_path: Path) -> None:
    log, ended = tmp_path / "0.trace", threading.Event()
    log.write_bytes(b"1 openat(AT_FDCWD, \"caf\xc3")
    opened = open_log(log, ended)
    assert opened is not None
    with opened:
        lines = follow(opened, ended)

        def write_rest() -> None:
            time.sleep(0.1)
            with log.open("ab") as more:
                more.write(b"\xa9\") = 3\n2 exit_group(0) = ?")
            ended.set()

        writer = threading.Thread(target=write_rest)
        writer.start()
        assert list(lines) == ['1 openat(AT_FDCWD, "caf\u00e9") = 3\n', "2 exit_group(0) = ?"]
        writer.join()


def test_a_log_replaced_by_a_fifo_or_a_link_is_not_read_and_nothing_waits(tmp_path: Path) -> None:
    ended = threading.Event()
    ended.set()
    fifo, link = tmp_path / "0.trace", tmp_path / "1.trace"
    os.mkfifo(fifo)  # opened for reading the usual way, it would wait for a writer forever
    (tmp_path / "elsewhere").write_text("1 openat(AT_FDCWD, \"/etc/passwd\") = 3\n")
    link.symlink_to(tmp_path / "elsewhere")
    assert open_log(fifo, ended) is None
    assert open_log(link, ended) is None
    assert open_log(tmp_path / "never.trace", ended) is None  # strace never started


# ---------------------------------------------------------------- traced for real, in the sandbox


CODE = ("import json, pathlib\n\nOFFSET = json.loads((pathlib.Path(__file__).parent / 'offset.json').read_text())\n\n\n"
        "def add(a, b):\n    return a - b + OFFSET\n")
TEST = ("import json, pathlib, unittest\n\nfrom pkg.calc import add\n\n"
        "CASES = json.loads((pathlib.Path(__file__).parent / 'fixtures' / 'cases.json').read_text())\n\n\n"
        "class AddTest(unittest.TestCase):\n"
        "    def test_add(self):\n"
        "        for a, b, want in CASES:\n"
        "            self.assertEqual(add(a, b), want)\n")
BENCH = ("import json, sys\n\nsys.path.insert(0, '.')\nfrom pkg.calc import add  # noqa: E402\n\n"
         "numbers = [int(line) for line in open('bench/input.txt')]\n"
         "print(json.dumps({'total': sum(add(n, 0) for n in numbers)}))\n")
MAKEFILE = f"test:\n\t{PY} -m pytest -q -p no:cacheprovider tests\n"


@pytest.fixture
def small(git_repo: Path) -> Path:
    """A package, a pytest suite reading a fixture, a benchmark reading its input, and a Makefile."""
    files = {"pkg/__init__.py": "", "pkg/calc.py": CODE, "pkg/offset.json": "0", "tests/__init__.py": "",
             "tests/test_calc.py": TEST,
             "tests/fixtures/cases.json": "[[2, 3, 5]]", "bench/bench.py": BENCH, "bench/input.txt": "1\n2\n3\n",
             "Makefile": MAKEFILE, "README.md": "calc\n"}
    for path, text in files.items():
        (git_repo / path).parent.mkdir(parents=True, exist_ok=True)
        (git_repo / path).write_text(text)
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "baseline")
    return git_repo


def goal(*checks: Check) -> Contract:
    return Contract.model_validate({"outcome": "add adds", "checks": list(checks)})


SMALL_GOAL = goal(Check(name="tests", run="make test", timeout_s=120),
                  Check(name="bench", run=f"{PY} bench/bench.py", timeout_s=60,
                        metric=Metric(regex=r'"total": (\d+)', target="> 0")))


def observe(repo: Path, contract: Contract, mode: str = "workspace-write") -> Surface:
    """Run the contract's checks once under the tracer, as the baseline does, and build the surface."""
    sandbox = SandboxPolicy(mode, repo.resolve())  # type: ignore[arg-type]
    assert tracer_problem(sandbox) is None
    tracer = Tracer()
    try:
        asyncio.run(run_checks(contract, repo, sandbox=sandbox, tracer=tracer))
        accesses, lost = tracer.accesses()
        assert lost == []
        return observed_surface(accesses, repo, pin_verification_surface(repo, contract))
    finally:
        tracer.close()


@needs_strace
def test_the_surface_holds_tests_configs_fixtures_inputs_and_probes(small: Path) -> None:
    surface = observe(small, SMALL_GOAL)
    assert surface.observed
    assert {"tests/test_calc.py", "tests/fixtures/cases.json", "bench/input.txt", "bench/bench.py",
            "Makefile"} <= surface.paths
    assert {"conftest.py", "tests/conftest.py"} <= surface.missing  # pytest looked for them, found none
    assert "pkg/calc.py" in surface.code and "pkg/calc.py" not in surface.paths
    assert {".", "tests"} <= surface.listed_dirs
    assert "README.md" not in surface.paths - surface.stat_only


@needs_strace
def test_tampering_touches_the_surface_and_honest_work_does_not(small: Path) -> None:
    surface = observe(small, SMALL_GOAL)
    for path in ("conftest.py", "tests/conftest.py", "unittest.py", "unittest/__init__.py", "pytest.py",
                 "_pytest/__init__.py", "sitecustomize.py", "x.pth", "pytest.ini", "setup.cfg", ".coveragerc",
                 "tox.ini", "pyproject.toml", "json.py", "tests/__pycache__/test_calc.cpython-311.pyc"):
        assert surface.touches(path, "added"), path
    for path in ("tests/fixtures/cases.json", "bench/input.txt", "Makefile", "tests/test_calc.py"):
        assert surface.touches(path, "modified"), path
        assert surface.touches(path, "deleted"), path
    assert not surface.touches("pkg/calc.py", "modified")  # the work itself
    assert not surface.touches("pkg/offset.json", "modified")  # package data beside it: the work too
    assert not surface.touches("pkg/helpers.py", "added")  # a new module beside the code under test
    assert not surface.touches("pkg/json.py", "added")  # inside a package it shadows nothing
    assert not surface.touches("tests/test_more.py", "added")  # new tests: the per-test evidence judges them
    assert not surface.touches("docs/notes.md", "added")
    assert not surface.touches("types.go", "added") and not surface.touches("json/data.txt", "added")
    assert not surface.touches("README.md", "modified")


@needs_strace
def test_a_read_only_sandbox_is_traced_too(small: Path) -> None:
    surface = observe(small, goal(Check(name="bench", run=f"{PY} bench/bench.py", timeout_s=60)), "read-only")
    assert "bench/input.txt" in surface.paths


@needs_strace
def test_more_itertools_surface(tmp_path: Path) -> None:
    with tarfile.open(SDIST) as archive:
        archive.extractall(tmp_path, filter="data")
    repo = tmp_path / "more-itertools-10.5.0"
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "more-itertools 10.5.0")
    surface = observe(repo, goal(Check(name="tests", run=f"{PY} -m pytest -q -p no:cacheprovider tests",
                                       timeout_s=300)))
    assert {"tests/test_more.py", "tests/test_recipes.py", "pyproject.toml", "tox.ini", "setup.cfg"} <= surface.paths
    assert {"conftest.py", "tests/conftest.py", "pytest.ini"} <= surface.missing
    assert "more_itertools/more.py" in surface.code
    assert not surface.touches("more_itertools/more.py", "modified")
    assert not surface.touches("more_itertools/extra.py", "added")
    for path in ("conftest.py", "unittest.py", "pytest.py", "pytest.ini", "sitecustomize.py"):
        assert surface.touches(path, "added"), path
    summary = surface_summary(surface)
    assert summary["paths"] == len(surface.paths) and "pyproject.toml" in summary["configs"]
    assert summary_lines(summary)[0].startswith("verification surface (surface observed)")


# ---------------------------------------------------------------- stored with the goal, and the fallback


@needs_strace
def test_the_baseline_records_the_observed_surface(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    with Store() as store:
        record = new_goal(store, workspace)
        run(store, record, workspace, scripted(HONEST_FIX))
        stored = events(store, record, "verification_surface")
    assert len(stored) == 1  # recorded once, from the baseline's own (traced) run
    surface = Surface.from_json(payload_of(stored[0].event)["surface"])
    assert surface.observed
    assert "tests/test_cart.py" in surface.paths and "cart.py" in surface.code
    assert surface.touches("unittest.py", "added") and not surface.touches("cart.py", "modified")
    assert payload_of(stored[0].event)["summary"]["paths"] == len(surface.paths)


def test_without_strace_the_surface_is_inferred(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    monkeypatch.setenv("PATH", str(bare))
    problem = tracer_problem(None)
    assert problem is not None and "strace" in problem
    pins = Pins((), ("test_*.py",))
    surface = surface_from_pins(pins, problem)
    assert not surface.observed
    assert surface.provenance.startswith("surface inferred, not observed")
    assert surface.touches("conftest.py", "added") and surface.touches("unittest.py", "added")
    assert not surface.touches("helpers.py", "added")
    assert Surface.from_json(surface.to_json()) == surface


# ---------------------------------------------------------------- shown by gk lint and gk goal


@needs_strace
def test_gk_lint_and_gk_goal_show_the_surface(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    check = ["--check", f"tests={TESTS}", "--cwd", str(workspace)]
    linted = gk("lint", "--objective", "Fix the discount bug so the tests pass", *check, home=goalkeeper_home)
    assert "verification surface (surface observed):" in linted.stdout, linted.stdout + linted.stderr
    assert "probed, absent:" in linted.stdout
    data = json.loads(gk("lint", "--objective", "Fix the discount bug so the tests pass", *check, "--json",
                         home=goalkeeper_home).stdout)
    assert data["surface"]["observed"] is True and data["surface"]["paths"] > 0
    unrun = json.loads(gk("lint", "--objective", "Fix the discount bug so the tests pass", *check, "--json",
                          "--no-run", home=goalkeeper_home).stdout)
    assert unrun["surface"]["provenance"].startswith("surface inferred, not observed")
    done = gk("goal", "Fix the discount bug so the tests pass", *check, home=goalkeeper_home)
    assert "verification surface (surface observed):" in done.stderr, done.stdout + done.stderr
    script = write_script(tmp_path / "script.json", HONEST_FIX)
    gk("run", "--model", f"scripted:{script}", "--cwd", str(workspace), home=goalkeeper_home, timeout=300)
    shown = gk("goal", "--cwd", str(workspace), home=goalkeeper_home)
    assert "verification surface (surface observed):" in shown.stdout, shown.stdout + shown.stderr
    summary = json.loads(gk("goal", "--json", "--cwd", str(workspace), home=goalkeeper_home).stdout)
    assert summary["observed_surface"]["observed"] is True


def path_without_strace(folder: Path) -> str:
    """A PATH of one folder linking every program on the current PATH except strace."""
    folder.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            target = folder / entry.name
            if entry.name != "strace" and not target.exists() and not target.is_symlink():
                target.symlink_to(entry.path)
    return str(folder)


def test_a_goal_without_strace_records_an_inferred_surface(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", path_without_strace(tmp_path / "bin"))
    workspace = sample_repo(tmp_path)
    with Store() as store:
        record = new_goal(store, workspace)
        result = run(store, record, workspace, scripted(HONEST_FIX))
        stored = events(store, record, "verification_surface")
    surface = Surface.from_json(payload_of(stored[0].event)["surface"])
    assert not surface.observed and "strace is not installed" in surface.note
    assert "tests/test_cart.py" in surface.paths  # the conventions still hold
    assert payload_of(stored[0].event)["summary"]["provenance"].startswith("surface inferred, not observed")
    assert result.status == "achieved"


@needs_strace
def test_odd_file_names_come_back_exactly(tmp_path: Path) -> None:
    names = [b"with space,comma.txt", b'quote"and\\back.txt', b"angle<x>.txt", b"new\nline.txt", b"caf\xc3\xa9.txt",
             b"not-utf8-\xff.txt", b"tab\there.txt"]
    folder = tmp_path / "odd"
    folder.mkdir()
    for name in names:
        (folder / os.fsdecode(name)).write_text("x")
    script = ("import os\nfor name in sorted(os.listdir(b'.')):\n    open(name, 'rb').read()\n"
              "os.path.exists('absent, <really>')\n")
    tracer = Tracer()
    try:
        sandbox = SandboxPolicy("workspace-write", folder.resolve())
        result = asyncio.run(tracer.run(sandbox, f"{PY} -c {shlex.quote(script)}", folder, 60))
        assert result.exit_code == 0, result.output
        accesses, lost = tracer.accesses()
    finally:
        tracer.close()
    assert lost == []
    real = os.path.realpath(folder)
    assert {os.path.join(real, os.fsdecode(name)) for name in names} <= accesses.read
    assert os.path.join(real, "absent, <really>") in accesses.missing
    assert real in accesses.listed
