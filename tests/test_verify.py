"""Running checks and keep_green commands as real processes, and reading metrics from their output."""

from __future__ import annotations

import asyncio
import os
import select
import shlex
import sys
import time
from pathlib import Path

import pytest

from goalkeeper.events import Evidence
from goalkeeper.spec.contract import Check, Constraints, Contract, Metric
from goalkeeper.verify.checks import (
    MetricNotFound,
    all_pass,
    evidence_table,
    missing_commands,
    passing_names,
    read_metric,
    run_check,
    run_checks,
    run_constraint,
)


def check(tmp_path: Path, run: str, metric: Metric | None = None, timeout_s: float = 30) -> Evidence:
    return asyncio.run(run_check(Check(name="c", run=run, metric=metric, timeout_s=timeout_s), tmp_path))


# ---------------------------------------------------------------- exit codes


def test_a_check_passes_on_exit_code_zero(tmp_path: Path) -> None:
    evidence = check(tmp_path, "echo hello")

    assert evidence.passed
    assert (evidence.name, evidence.kind, evidence.exit_code) == ("c", "check", 0)
    assert evidence.command == "echo hello"
    assert evidence.output_tail == "hello\n"
    assert evidence.error is None and evidence.metric is None


def test_a_check_fails_on_a_nonzero_exit_code(tmp_path: Path) -> None:
    evidence = check(tmp_path, "echo broken; exit 3")

    assert not evidence.passed
    assert evidence.exit_code == 3
    assert "broken" in evidence.output_tail


def test_a_check_runs_in_the_workspace(tmp_path: Path) -> None:
    (tmp_path / "marker.txt").write_text("here")

    assert check(tmp_path, "test -f marker.txt").passed


def test_output_tail_keeps_the_last_4000_characters(tmp_path: Path) -> None:
    evidence = check(tmp_path, "head -c 10000 /dev/zero | tr '\\0' a; echo END")

    assert len(evidence.output_tail) == 4000
    assert evidence.output_tail.endswith("aEND\n")


def test_a_command_that_does_not_exist_says_so(tmp_path: Path) -> None:
    evidence = asyncio.run(run_check(Check(name="tests", run="no-such-tool-xyz --all"), tmp_path))

    assert not evidence.passed
    assert evidence.exit_code == 127
    assert evidence.error == "command not found: no-such-tool-xyz; check the `run` of check tests"


# ---------------------------------------------------------------- timeouts


def _gone(pid: int, within_s: float) -> bool:
    """Whether process `pid` has exited (or will within `within_s`), waiting on its pidfd, not on sleep."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([handle], [], [], within_s)
        return bool(readable)
    finally:
        os.close(handle)


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    started = time.monotonic()
    evidence = check(tmp_path, "sleep 30 & echo $! > bg.pid; sleep 30", timeout_s=1)
    elapsed = time.monotonic() - started

    assert elapsed < 5
    assert not evidence.passed
    assert evidence.timed_out
    assert evidence.error is not None
    assert "timed out after 1s" in evidence.error
    assert 'timeout = "2s"' in evidence.error  # says how to raise it
    assert _gone(int((tmp_path / "bg.pid").read_text()), within_s=2)


# ---------------------------------------------------------------- metrics


def test_a_metric_is_read_with_a_regex(tmp_path: Path) -> None:
    evidence = check(tmp_path, "echo 'warmup 999'; echo 'p95: 150 ms'; echo 'p95: 101.5 ms'",
                     Metric(regex=r"p95: ([\d.]+)", target="< 120"))

    assert evidence.passed
    assert evidence.metric == 101.5  # the last match counts: the final figure a benchmark prints
    assert evidence.target == "< 120"


def test_a_metric_is_read_from_json_output(tmp_path: Path) -> None:
    script = tmp_path / "bench.py"
    script.write_text('import json\nprint(json.dumps({"stats": {"latency": {"p95": 80}}}, indent=2))\n')

    metric = Metric(json_path="stats.latency.p95", target="< 120")

    evidence = check(tmp_path, f"{shlex.quote(sys.executable)} bench.py", metric)

    assert evidence.passed
    assert evidence.metric == 80.0


def test_a_metric_is_read_from_the_last_json_line(tmp_path: Path) -> None:
    output = 'starting\n{"p95": 500}\nprogress 50%\n{"results": [{"ms": 42.5}], "p95": 90}\ndone\n'
    (tmp_path / "out.txt").write_text(output)

    evidence = check(tmp_path, "cat out.txt", Metric(json_path="$.results[0].ms", target="<= 42.5"))

    assert evidence.passed
    assert evidence.metric == 42.5
    assert read_metric(Metric(json_path="p95", target="< 1"), output) == 90.0
    assert read_metric(Metric(json_path="results.0.ms", target="< 1"), output) == 42.5


@pytest.mark.parametrize(
    ("target", "passes"),
    [("< 5", False), ("< 6", True), ("<= 5", True), ("<= 4.9", False), ("> 5", False), ("> 4", True),
     (">= 5", True), (">= 5.1", False), ("== 5", True), ("== 6", False)],
)
def test_each_comparator_decides_the_check(tmp_path: Path, target: str, passes: bool) -> None:
    evidence = check(tmp_path, "echo 'value: 5'", Metric(regex=r"value: (\d+)", target=target))

    assert evidence.passed is passes
    assert evidence.metric == 5.0


def test_a_metric_is_recorded_even_when_the_check_exits_nonzero(tmp_path: Path) -> None:
    evidence = check(tmp_path, "echo 'score: 0.7'; exit 1", Metric(regex=r"score: ([\d.]+)", target=">= 0.5"))

    assert not evidence.passed
    assert evidence.metric == 0.7


def test_a_missing_metric_fails_the_check_and_says_why(tmp_path: Path) -> None:
    evidence = check(tmp_path, "echo 'nothing to see'", Metric(regex=r"p95: (\d+)", target="< 120"))

    assert not evidence.passed
    assert evidence.metric is None
    assert evidence.error is not None and "matched nothing" in evidence.error


@pytest.mark.parametrize(
    ("metric", "output", "says"),
    [
        (Metric(json_path="p95", target="< 1"), "no json here\n", "no JSON"),
        (Metric(json_path="p99", target="< 1"), '{"p95": 3}\n', "no 'p99'"),
        (Metric(json_path="items[5]", target="< 1"), '{"items": [1, 2]}\n', "no 5"),
        (Metric(json_path="p95", target="< 1"), '{"p95": "fast"}\n', "not a number"),
        (Metric(json_path="ok", target="< 1"), '{"ok": true}\n', "not a number"),
        (Metric(regex=r"p95: (\w+)", target="< 1"), "p95: fast\n", "not a number"),
    ],
)
def test_unreadable_metrics_raise_metric_not_found(metric: Metric, output: str, says: str) -> None:
    with pytest.raises(MetricNotFound, match=says):
        read_metric(metric, output)


# ---------------------------------------------------------------- constraints and many checks


def test_run_checks_runs_checks_then_keep_green_in_order(tmp_path: Path) -> None:
    contract = Contract(
        outcome="x",
        checks=[Check(name="ok", run="true"), Check(name="bad", run="false")],
        constraints=Constraints(keep_green=["echo lint ok", "exit 2"]),
    )

    evidence = asyncio.run(run_checks(contract, tmp_path))

    assert [(item.name, item.kind, item.passed) for item in evidence] == [
        ("ok", "check", True), ("bad", "check", False),
        ("echo lint ok", "constraint", True), ("exit 2", "constraint", False),
    ]
    assert not all_pass(evidence)
    assert passing_names(evidence) == frozenset({"ok", "echo lint ok"})


def test_run_checks_runs_only_the_keep_green_commands_it_is_given(tmp_path: Path) -> None:
    contract = Contract(outcome="x", checks=[Check(name="ok", run="true")],
                        constraints=Constraints(keep_green=["exit 2", "true"]))

    evidence = asyncio.run(run_checks(contract, tmp_path, keep_green=["true"]))

    assert [item.name for item in evidence] == ["ok", "true"]
    assert all_pass(evidence)


def test_a_constraint_is_evidence_named_by_its_command(tmp_path: Path) -> None:
    evidence = asyncio.run(run_constraint("not-a-real-linter .", tmp_path, timeout_s=10))

    assert (evidence.kind, evidence.name, evidence.passed) == ("constraint", "not-a-real-linter .", False)
    assert evidence.error is not None and evidence.error.startswith("command not found: not-a-real-linter")


def test_the_evidence_table_shows_result_metric_and_exit() -> None:
    evidence = [
        Evidence(name="p95", kind="check", command="b", exit_code=0, duration_s=1.25, output_tail="",
                 passed=True, metric=101.5, target="< 120"),
        Evidence(name="a | b", kind="constraint", command="a | b", exit_code=1, duration_s=0.04,
                 output_tail="", passed=False),
        Evidence(name="slow", kind="check", command="s", exit_code=124, duration_s=2.0, output_tail="",
                 passed=False, target=">= 1", timed_out=True),
    ]

    lines = evidence_table(evidence).splitlines()

    assert lines[0] == "| name | kind | result | metric / target | exit | duration |"
    assert lines[2] == "| p95 | check | PASS | 101.5 (< 120) | 0 | 1.2s |"
    assert lines[3] == "| a \\| b | constraint | FAIL |  | 1 | 0.0s |"
    assert lines[4] == "| slow | check | FAIL | — (>= 1) | timeout | 2.0s |"


def test_missing_commands_names_checks_whose_program_does_not_exist(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    contract = Contract(
        outcome="x",
        checks=[Check(name="ok", run="echo hi"), Check(name="local", run="./run.sh --all"),
                Check(name="typo", run="CI=1 pytset -q"), Check(name="shell", run="(cd sub && make)")],
        constraints=Constraints(keep_green=["nope-linter ."]),
    )

    assert missing_commands(contract, tmp_path) == [("typo", "pytset"), ("nope-linter .", "nope-linter")]


def test_a_program_installed_after_it_was_missing_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lookups are kept only when bash found the program (a batch asks the same for every goal): one that was
    missing is looked up again, and found once it is installed."""
    tools = tmp_path / "bin"
    tools.mkdir()
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    contract = Contract(outcome="x", checks=[Check(name="lint", run="gk-test-linter --strict")])
    assert missing_commands(contract, tmp_path) == [("lint", "gk-test-linter")]
    (tools / "gk-test-linter").write_text("#!/bin/sh\nexit 0\n")
    (tools / "gk-test-linter").chmod(0o755)
    assert missing_commands(contract, tmp_path) == []
