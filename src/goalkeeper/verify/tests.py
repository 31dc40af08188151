"""Test-level evidence: run a check's test runner with goalkeeper's own reporter and judge every test.

A check whose command is pytest, `python -m unittest` or `go test` is rewritten so that the harness learns
every test id and outcome from a reporter it controls (verify/reporters/), not from the exit code alone.
The rules, baseline against now: every test that existed at baseline is collected and passes (an xfail stays
an xfail), none is newly skipped or deselected, the count does not fall, and every test that failed at
baseline passes. A run that ends without the reporter's "finished" record (os._exit, an atexit exit,
sys.exit at import) fails. A canary test whose assertion is false must fail; when it passes or is missing
the assertion machinery has been tampered with. Anything else is judged on its exit code, and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Runner = Literal["pytest", "unittest", "go"]

#: The name of the failing evidence a canary that passed produces (the same as verify.TAMPERING).
TAMPERING = "verification_tampering"

#: Ids kept per list (fail→pass, added, missing...) in evidence after the baseline.
LIST_CAP = 50

#: Ids kept with their outcome in the baseline's evidence: the rules compare against these.
BASELINE_CAP = 20_000

#: Characters of one test id kept (parametrised ids can be very long).
ID_CHARS = 300

#: Outcomes that count as "the test ran and did not fail".
GREEN = frozenset({"passed", "xfailed", "xpassed", "skipped"})

#: Outcomes that count as "failed at baseline" (a test -x never reached has no result: it is not one of them).
FAILED = frozenset({"failed", "error"})

_REPORTERS = Path(__file__).parent / "reporters"
_ASSIGNMENT = re.compile(r"[A-Za-z_]\w*=.*")
_PYTHON = re.compile(r"(.*/)?python(\d+(\.\d+)?)?")
#: pytest options under which no test runs: such a check keeps its exit code.
_NOT_A_RUN = frozenset({"--co", "--collect-only", "--collectonly", "--help", "-h", "--version", "-V", "--fixtures",
                        "--markers", "--fixtures-per-test"})
_SHELL = frozenset({"&&", "||", ";", "|", "&", ">", ">>", "<", "2>", "2>&1", "(", ")"})

CANARY_SOURCE = '''"""goalkeeper's canaries: both must fail."""
import unittest


def canary_assert():
    assert 1 == 2


def canary_assert_equal():
    unittest.TestCase().assertEqual(1, 2)
'''


@dataclass(frozen=True)
class Plan:
    """How one check runs with a reporter: the rewritten command, its extra environment, where records go."""

    runner: Runner
    command: str
    env: dict[str, str]
    out: Path | None
    """The records file (None for go, whose records are its -json output)."""
    folder: Path | None
    """The temporary folder holding the reporter (in lib/) and the records; removed after the run."""


@dataclass
class TestRun:
    """What a reporter said about one run."""

    runner: Runner
    outcomes: dict[str, str] = field(default_factory=dict)
    """Test id → passed, failed, error, skipped, xfailed, xpassed, deselected or "no result"."""
    finished: bool = False
    canary: Literal["failed", "passed", "missing", "n/a"] = "n/a"
    problems: list[str] = field(default_factory=list)
    unsupported: str = ""


# ---- recognising and rewriting a check's command


def recognise(command: str) -> tuple[Runner, list[str], list[str], list[str]] | None:
    """(runner, assignments, program words, arguments) for a single plain test-runner command, else None."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words or any(word in _SHELL or word.startswith(("$(", "`")) for word in words) or "\n" in command:
        return None
    assignments = []
    while words and _ASSIGNMENT.fullmatch(words[0]):
        assignments.append(words.pop(0))
    if not words:
        return None
    first, rest = words[0], words[1:]
    base = first.rsplit("/", 1)[-1]
    if base in ("pytest", "py.test"):
        return None if _NOT_A_RUN & set(rest) else ("pytest", assignments, [first], rest)
    if _PYTHON.fullmatch(first) and len(rest) >= 2 and rest[0] == "-m" and rest[1] in ("pytest", "unittest"):
        runner: Runner = "pytest" if rest[1] == "pytest" else "unittest"
        if _NOT_A_RUN & set(rest[2:]):
            return None
        return runner, assignments, [first, "-m", rest[1]], rest[2:]
    if base == "go" and rest[:1] == ["test"]:
        return "go", assignments, [first, "test"], rest[1:]
    return None


def plan(command: str, scratch: Path | None = None) -> Plan | None:
    """The command rewritten to run under goalkeeper's reporter, or None for a runner we do not know."""
    found = recognise(command)
    if found is None:
        return None
    runner, assignments, program, args = found
    prefix = [*assignments]
    if runner == "go":
        extra = [] if "-json" in args or "--json" in args else ["-json"]
        return Plan("go", _join([*prefix, *program, *extra, *args]), {}, None, None)
    token = secrets.token_hex(8)
    folder = Path(tempfile.mkdtemp(prefix="goalkeeper-tests-", dir=scratch or scratch_root()))
    lib = folder / "lib"
    lib.mkdir()
    # The records go to a folder whose name is a secret inside a folder nobody may list: the sandbox drops
    # every capability, so the code under test cannot find the file to forge records in (in-process code
    # that introspects the reporter still could: the clean room, not this, is what keeps tests honest).
    out = folder / secrets.token_hex(16) / "records.jsonl"
    out.parent.mkdir()
    out.touch()
    env = {"GOALKEEPER_TESTS_OUT": str(out), "GOALKEEPER_TESTS_TOKEN": token}
    if runner == "pytest":
        module = f"goalkeeper_pytest_{token}"
        shutil.copyfile(_REPORTERS / "pytest_plugin.py", lib / f"{module}.py")
        canary = lib / f"goalkeeper_canary_{token}.py"
        canary.write_text(CANARY_SOURCE)
        env |= {"GOALKEEPER_TESTS_CANARY": str(canary), "GOALKEEPER_TESTS_SELECT": json.dumps(_selection(args))}
        rewritten = [*prefix, *program, "-p", module, *args]
    else:
        module = f"goalkeeper_unittest_{token}"
        shutil.copyfile(_REPORTERS / "unittest_runner.py", lib / f"{module}.py")
        rewritten = [*prefix, program[0], "-m", module, *args]
    for path in lib.iterdir():
        path.chmod(0o444)
    lib.chmod(0o555)
    folder.chmod(0o311)
    env["PYTHONPATH"] = str(lib)
    return Plan(runner, _join(rewritten), env, out, folder)


def _join(words: list[str]) -> str:
    return " ".join(shlex.quote(word) for word in words)


def scratch_root() -> Path:
    """A folder outside /tmp: the sandbox gives every command a private /tmp, which would hide the reporter."""
    for place in (Path("/var/tmp"), Path("/dev/shm")):
        if place.is_dir() and os.access(place, os.W_OK):
            return place
    return Path(tempfile.gettempdir())


def _selection(args: list[str]) -> dict[str, Any]:
    """The selecting options the check's own command line gives pytest; the repository cannot add to them."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("-k", dest="keyword", default="")
    parser.add_argument("-m", dest="markexpr", default="")
    parser.add_argument("--deselect", action="append", default=None)
    parser.add_argument("--ignore", action="append", default=None)
    parser.add_argument("--ignore-glob", dest="ignore_glob", action="append", default=None)
    with contextlib.suppress(SystemExit):
        known, _ = parser.parse_known_args(args)
        return vars(known)
    return {}


def environment(base: dict[str, str] | None, extra: dict[str, str]) -> dict[str, str]:
    """The check's environment plus the reporter's: PYTHONPATH gains the reporter, PYTEST_ADDOPTS is dropped."""
    env = dict(os.environ if base is None else base)
    env.pop("PYTEST_ADDOPTS", None)  # options from the environment could deselect too
    if "PYTHONPATH" in extra and env.get("PYTHONPATH"):
        extra = {**extra, "PYTHONPATH": extra["PYTHONPATH"] + os.pathsep + env["PYTHONPATH"]}
    return env | extra


@contextlib.contextmanager
def planned(command: str) -> Iterator[Plan | None]:
    """`plan(command)`, its folder removed afterwards."""
    made = plan(command)
    try:
        yield made
    finally:
        if made is not None and made.folder is not None:
            made.folder.chmod(0o700)
            shutil.rmtree(made.folder, ignore_errors=True)


# ---- reading what the reporter said


def read_run(made: Plan, output: str) -> TestRun:
    """The run's records: from the records file (pytest, unittest) or the -json output (go)."""
    if made.runner == "go":
        return parse_go(output)
    assert made.out is not None
    try:
        text = made.out.read_text(errors="replace")
    except OSError:
        text = ""
    return parse_records(made.runner, text)


def parse_records(runner: Runner, text: str) -> TestRun:
    """Fold the reporter's JSON lines into one outcome per test."""
    run = TestRun(runner)
    phases: dict[str, list[dict[str, Any]]] = {}
    canaries: list[str] = []
    collected: list[str] = []
    announced = False
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if "collected" in record:
            collected += [str(test_id) for test_id in record["collected"]]
        elif "canaries" in record:
            announced = True
            canaries += [str(test_id) for test_id in record["canaries"]]
        elif "id" in record:
            phases.setdefault(str(record["id"]), []).append(record)
        elif "collect_error" in record:
            run.problems.append(f"collection error in {record['collect_error'] or 'the session'}")
        elif "unsupported" in record:
            run.unsupported = str(record["unsupported"])
        elif record.get("finished"):
            run.finished = True
    for test_id in collected:
        run.outcomes[test_id] = _fold(phases.get(test_id, []))
    for test_id, records in phases.items():
        if test_id not in run.outcomes and test_id not in canaries:
            run.outcomes[test_id] = _fold(records)
    # An empty list: nothing was collected to host the canaries; the rules judge that run, not the canary.
    unhosted = announced and not canaries
    run.canary = "n/a" if unhosted else _canary([_fold(phases.get(test_id, [])) for test_id in canaries])
    return run


def _fold(records: list[dict[str, Any]]) -> str:
    """One outcome from a test's setup, call, teardown and subtest records (the worst wins)."""
    if not records:
        return "no result"
    if any(r.get("outcome") == "deselected" for r in records):
        return "deselected"
    if any(r.get("outcome") == "error" or (r.get("outcome") == "failed" and r.get("when") != "call")
           for r in records):
        return "error"
    if any(r.get("outcome") == "failed" for r in records):
        return "failed"  # a strict xpass and a failing subtest included
    if any(r.get("outcome") == "skipped" and r.get("xfail") for r in records):
        return "xfailed"
    if any(r.get("outcome") == "passed" and r.get("xfail") for r in records):
        return "xpassed"
    if any(r.get("outcome") == "skipped" for r in records):
        return "skipped"
    return "passed" if any(r.get("when") == "call" for r in records) else "no result"


def _canary(outcomes: list[str]) -> Literal["failed", "passed", "missing"]:
    if not outcomes or any(outcome in ("no result", "deselected") for outcome in outcomes):
        return "missing"
    return "failed" if all(outcome == "failed" for outcome in outcomes) else "passed"


def parse_go(output: str) -> TestRun:
    """`go test -json` events: each test's last pass/fail/skip; a test that started and never ended has none."""
    run = TestRun("go", finished=True)
    ended_packages: set[str] = set()
    started_packages: set[str] = set()
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        action, package, test = event.get("Action"), str(event.get("Package", "")), event.get("Test")
        started_packages.add(package)
        if not test:
            if action in ("pass", "fail", "skip"):
                ended_packages.add(package)
            continue
        test_id = f"{package}.{test}"
        if action == "run":
            run.outcomes.setdefault(test_id, "no result")
        elif action in ("pass", "fail", "skip"):
            run.outcomes[test_id] = {"pass": "passed", "fail": "failed", "skip": "skipped"}[action]
    run.finished = bool(started_packages) and started_packages <= ended_packages
    return run


# ---- the rules


def judge(now: TestRun, baseline: dict[str, Any] | None) -> tuple[bool, list[str], dict[str, list[str]]]:
    """(passed, problems, id lists) for a run, against the baseline's evidence record when there is one.

    Without a baseline (the baseline run itself) the run passes when it finished and no test failed.
    """
    problems = list(now.problems)
    tests = {k: v for k, v in now.outcomes.items() if v != "deselected"}
    red = sorted(k for k, v in tests.items() if v not in GREEN)
    lists: dict[str, list[str]] = {"failing": red}
    if not now.finished:
        problems.append("the run ended before the reporter finished (an early exit: os._exit, an atexit "
                        "handler or sys.exit)")
    if red:
        problems.append(f"{len(red)} test(s) did not pass: {_some(red)}")
    if baseline is not None:
        before: dict[str, str] = {k: v for k, v in baseline.get("outcomes", {}).items() if v != "deselected"}
        lists |= _compare(before, tests, now.outcomes)
        problems += _rule_problems(lists, int(baseline.get("count", len(before))), len(tests))
    return not problems, problems, lists


#: The id unittest gives a module it could not import: a stand-in for the tests that module will hold.
_IMPORT_FAILURE = "unittest.loader._FailedTest."


def _replaced(test_id: str, tests: dict[str, str]) -> bool:
    """Whether a module that failed to import at baseline now imports: its real tests stand in its place."""
    module = test_id.removeprefix(_IMPORT_FAILURE)
    return test_id.startswith(_IMPORT_FAILURE) and any(k.startswith(f"{module}.") for k in tests)


def _compare(before: dict[str, str], tests: dict[str, str], everything: dict[str, str]) -> dict[str, list[str]]:
    missing = sorted(k for k in before if k not in tests and not _replaced(k, tests))
    return {
        "missing": missing,
        "deselected": sorted(k for k in before if everything.get(k) == "deselected"),
        "fail_to_pass": sorted(k for k, v in before.items() if v in FAILED and tests.get(k) == "passed"),
        "newly_skipped": sorted(k for k, v in before.items() if v != "skipped" and tests.get(k) == "skipped"),
        "xfail_changed": sorted(k for k, v in before.items() if v == "xfailed" and k in tests
                                and tests[k] != "xfailed"),
        # An xfail or skip marker added to a failing test makes it "green" without fixing it.
        "not_fixed": sorted(k for k, v in before.items() if v in FAILED and k in tests and tests[k] != "passed"),
        "newly_xfail": sorted(k for k, v in before.items() if v == "passed" and tests.get(k) in ("xfailed", "xpassed")),
        "added": sorted(k for k in tests if k not in before),
    }


def _rule_problems(lists: dict[str, list[str]], count: int, now: int) -> list[str]:
    problems = []
    if lists["missing"]:
        problems.append(f"{len(lists['missing'])} baseline test(s) missing (deleted, deselected or not "
                        f"collected): {_some(lists['missing'])}")
    if lists["newly_skipped"]:
        problems.append(f"{len(lists['newly_skipped'])} test(s) newly skipped: {_some(lists['newly_skipped'])}")
    if lists["xfail_changed"]:
        problems.append(f"an xfail must stay an xfail: {_some(lists['xfail_changed'])}")
    if lists["not_fixed"]:
        problems.append(f"{len(lists['not_fixed'])} test(s) that failed at baseline do not pass now: "
                        f"{_some(lists['not_fixed'])}")
    if lists["newly_xfail"]:
        problems.append(f"{len(lists['newly_xfail'])} passing test(s) newly marked xfail: "
                        f"{_some(lists['newly_xfail'])}")
    if now < count:
        problems.append(f"the test count fell from {count} to {now}")
    return problems


def _some(ids: list[str], shown: int = 5) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(ids[:shown]) + more


# ---- the compact record kept in Evidence.tests


def record(now: TestRun, problems: list[str], lists: dict[str, list[str]], *, baseline: bool) -> dict[str, Any]:
    """Counts plus the ids that matter; the baseline keeps every id (up to BASELINE_CAP) for later rules."""
    tests = {k[:ID_CHARS]: v for k, v in now.outcomes.items()}
    counted = {k: v for k, v in tests.items() if v != "deselected"}
    kept: dict[str, Any] = {
        "runner": now.runner,
        "count": len(counted),
        "counts": dict(sorted(Counter(counted.values()).items())),
        "finished": now.finished,
        "canary": now.canary,
        "problems": problems,
    }
    if baseline:
        kept["outcomes"] = dict(list(tests.items())[:BASELINE_CAP])
        kept["truncated"] = len(tests) > BASELINE_CAP
    else:
        kept |= {name: [i[:ID_CHARS] for i in ids[:LIST_CAP]] for name, ids in lists.items() if ids}
        kept["truncated"] = any(len(ids) > LIST_CAP for ids in lists.values())
    return kept


def canary_problem(now: TestRun) -> str | None:
    """Why the canary says the assertion machinery was tampered with, or None."""
    if now.canary == "passed":
        return "the canary test (an assertion that is false) passed: assertions or test reports were tampered with"
    if now.canary == "missing" and now.finished:
        return "the canary test never reported: the test runner's collection or reporting was tampered with"
    return None
