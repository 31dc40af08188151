"""Runs a goal's checks and keep_green commands and turns each run into Evidence.

The harness trusts only this: a check passes on exit code 0, or on a metric read from its output
that meets its target.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import shlex
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from goalkeeper.core.figures import format_duration
from goalkeeper.sandbox.bwrap import run_confined
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.sandbox.process import CommandResult
from goalkeeper.spec.contract import Check, Contract, Metric, json_path_steps
from goalkeeper.verify import tests as testlevel
from goalkeeper.verify.trace import Tracer

if TYPE_CHECKING:
    from goalkeeper.events import Evidence, EvidenceKind

#: Characters of output kept in Evidence.output_tail.
OUTPUT_TAIL_CHARS = 4000


class MetricNotFound(ValueError):
    """A check's output did not contain its metric, or held something that is not a number."""


class MetricNotFinite(MetricNotFound):
    """A check's metric read as inf or nan: a failed measurement, never a value that meets a target."""


def read_metric(metric: Metric, output: str) -> float:
    """The metric's value in `output`: the regex's last match (the final figure a benchmark prints), or the
    JSON path's number in the last JSON document. Not a finite number: MetricNotFinite."""
    if metric.regex is not None:
        # MULTILINE so that ^ and $ anchor at line ends, as people expect when matching tool output.
        matches = list(re.finditer(metric.regex, output, re.MULTILINE))
        if not matches:
            raise MetricNotFound(f"regex {metric.regex!r} matched nothing in the output")
        return _number(matches[-1].group(1), f"regex {metric.regex!r}")
    assert metric.json_path is not None  # the Metric validator guarantees exactly one of the two
    value: object = _last_json(output)
    for step in json_path_steps(metric.json_path):
        value = _step(value, step, metric.json_path)
    return _number(value, f"json path {metric.json_path!r}")


def _last_json(output: str) -> object:
    """The whole output as JSON, or else the last line that is a JSON object or array."""
    with contextlib.suppress(ValueError):
        return json.loads(output)
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith(("{", "[")):
            with contextlib.suppress(ValueError):
                return json.loads(line)
    raise MetricNotFound("the output holds no JSON object or array (print one, e.g. on its last line)")


def _step(value: object, step: str | int, path: str) -> object:
    if isinstance(value, dict) and isinstance(step, str) and step in value:
        return value[step]
    if isinstance(value, list):
        # "results.0.ms" is read like "results[0].ms".
        index = step if isinstance(step, int) else int(step) if step.lstrip("-").isdigit() else None
        if index is not None and -len(value) <= index < len(value):
            return value[index]
    raise MetricNotFound(f"json path {path!r}: no {step!r} in {_preview(value)}")


def _number(value: object, source: str) -> float:
    number = _float(value)
    if number is None:
        raise MetricNotFound(f"{source} found {_preview(value)}, which is not a number")
    if not math.isfinite(number):
        # "-inf" < 1 holds, and JSON's NaN and -Infinity parse: a failed measurement must not pass a target.
        raise MetricNotFinite(f"metric is not a finite number: {number} ({source})")
    return number


def _float(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value.strip())
    return None


def _preview(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


async def run_check(check: Check, workspace: Path, env: dict[str, str] | None = None,
                    sandbox: SandboxPolicy | None = None, baseline: Evidence | None = None,
                    tracer: Tracer | None = None) -> Evidence:
    """Run one check. It passes on exit code 0 and, when it has a metric, a value that meets the target.

    `env` is the whole environment of the command; None inherits this process's. `sandbox` confines it
    like the shell tool's commands (None: unconfined); SandboxError when the sandbox cannot be enforced.
    A test runner goalkeeper knows runs with its reporter, and then every test must also pass the rules
    against `baseline` (this check's baseline evidence; None for the baseline run itself). With `tracer` it
    runs under strace (the baseline's observation of the verification surface).
    """
    run = run_confined if tracer is None else tracer.run
    with testlevel.planned(check.run) if _reportable(sandbox) else contextlib.nullcontext() as made:
        if made is None:
            result = await run(sandbox, check.run, workspace, check.timeout_s, env=env)
            return _judged(check, result, None)
        confined = sandbox if sandbox is None or made.out is None else replace(
            sandbox, extra_writable=(*sandbox.extra_writable, made.out.parent))
        result = await run(confined, made.command, workspace, check.timeout_s,
                           env=testlevel.environment(env, made.env))
        result = replace(result, command=check.run)
        return _judged(check, result, _test_evidence(made, result, baseline))


def _reportable(sandbox: SandboxPolicy | None) -> bool:
    # A read-only sandbox gives the reporter nowhere to write its records: such checks keep their exit code.
    return sandbox is None or sandbox.mode != "read-only"


def _test_evidence(made: testlevel.Plan, result: CommandResult,
                   baseline: Evidence | None) -> dict[str, Any] | None:
    """The per-test record of a run with a reporter; None when it cannot be judged by tests (xdist)."""
    run = testlevel.read_run(made, result.output)
    before = baseline.tests if baseline is not None and baseline.basis == "tests" else None
    if run.unsupported:
        if before is None:
            return None
        # The same check was judged test by test at baseline: code under test that claims otherwise (a
        # forged "unsupported" record, then os._exit) must not fall back to the exit code.
        run.problems.append(f"the baseline was judged test by test, but this run cannot be ({run.unsupported})")
    passed, problems, lists = testlevel.judge(run, before)
    # Only a canary that failed at baseline, before the model ran anything, can say tampering later.
    canary = testlevel.canary_problem(run) if before is not None and before.get("canary") == "failed" else None
    kept = testlevel.record(run, problems, lists, baseline=baseline is None)
    return {**kept, "passed": passed, "tampering": canary}


def _judged(check: Check, result: CommandResult, tests: dict[str, Any] | None) -> Evidence:
    longer = format_duration(2 * check.timeout_s)
    longer = f'if it needs longer, raise it with `timeout = "{longer}"` in check {check.name}'
    error = _failure(result, check.timeout_s, f"check {check.name}", longer)
    if tests is not None and not tests["passed"] and error is None:
        error = "; ".join(tests["problems"])
    value = None
    if check.metric is not None:
        # Read even after a failing exit: a person wants to see how close it got.
        try:
            value = read_metric(check.metric, result.output)
        except MetricNotFinite as err:
            error = error or f"{err}; the measurement failed, so check {check.name} does not pass"
        except MetricNotFound as err:
            error = error or f"{err}; check the metric of check {check.name} against its output"
    metric_ok = check.metric is None or (value is not None and check.metric.met(value))
    evidence = _evidence(check.name, "check", result, metric_ok=metric_ok and (tests is None or tests["passed"]),
                         metric=value, target=check.metric.target if check.metric else None, error=error)
    return evidence.model_copy(update={"tests": tests, "basis": "tests" if tests is not None else "exit code only"})


async def run_constraint(command: str, workspace: Path, timeout_s: float = 600,
                         env: dict[str, str] | None = None, sandbox: SandboxPolicy | None = None,
                         tracer: Tracer | None = None) -> Evidence:
    """Run one keep_green command (under `sandbox` when given, traced with `tracer`); it holds on exit code 0."""
    run = run_confined if tracer is None else tracer.run
    result = await run(sandbox, command, workspace, timeout_s, env=env)
    faster = f"keep_green commands get {format_duration(timeout_s)}; make `{command}` faster or narrower"
    error = _failure(result, timeout_s, f"keep_green command `{command}`", faster)
    return _evidence(command, "constraint", result, error=error)


async def run_checks(contract: Contract, workspace: Path, keep_green: list[str] | None = None,
                     env: dict[str, str] | None = None, sandbox: SandboxPolicy | None = None,
                     baseline: list[Evidence] | None = None, tracer: Tracer | None = None) -> list[Evidence]:
    """Every check, then the keep_green commands (None: all of the contract's), one after another,
    all under `sandbox` when given (and under strace with `tracer`). With `baseline` (the baseline run's
    evidence) each check's tests are judged against their baseline, and a canary that did not fail adds a
    failing `verification_tampering`."""
    before = {e.name: e for e in baseline or [] if e.is_check}
    evidence = [await run_check(check, workspace, env, sandbox, before.get(check.name), tracer)
                for check in contract.checks]
    evidence += [_tampered(item) for item in evidence if item.tests and item.tests.get("tampering")]
    commands = contract.constraints.keep_green if keep_green is None else keep_green
    evidence += [await run_constraint(command, workspace, env=env, sandbox=sandbox, tracer=tracer)
                 for command in commands]
    return evidence


def _tampered(item: Evidence) -> Evidence:
    """The failing evidence a canary that did not fail produces: the verdict is tampering, not a plain fail."""
    from goalkeeper.events import Evidence

    assert item.tests is not None
    return Evidence(name=testlevel.TAMPERING, kind="check", command=item.command, exit_code=1,
                    duration_s=item.duration_s, output_tail=item.output_tail[-1000:], passed=False,
                    error=f"check {item.name}: {item.tests['tampering']}", basis="tests")


def _failure(result: CommandResult, timeout_s: float, what: str, if_slow: str) -> str | None:
    """Why a run could not be judged normally, in words that say where to fix it."""
    if result.timed_out:
        limit = format_duration(timeout_s)
        return f"timed out after {limit} and was killed with its child processes; {if_slow}"
    problem = cannot_start(result.exit_code, result.output)
    return None if problem is None else f"{problem}; check the `run` of {what}"


#: How bash says it could not start a program: `bash: line 1: tool: command not found` (the prefix is bash,
#: or the script it ran; `line N:` only in some), then exit code 127, or 126 for one it cannot execute.
_BASH_SAYS = re.compile(r"^[^\n:]+: (?:line \d+: )?(?P<program>[^\n:]+): (?P<why>[^\n:]+)(?::[^\n]*)?$", re.MULTILINE)
_CANNOT_START = {127: ("command not found", {"command not found", "No such file or directory"}),
                 126: ("command not executable", {"Permission denied", "Is a directory", "cannot execute binary file"})}


def cannot_start(exit_code: int, output: str) -> str | None:
    """`command not found: PROGRAM` (or not executable) when bash said so, naming the program it could not
    start (the last it reported); None when the command ran and chose that exit code itself."""
    if exit_code not in _CANNOT_START:
        return None
    problem, reasons = _CANNOT_START[exit_code]
    said = [match["program"] for match in _BASH_SAYS.finditer(output) if match["why"].strip() in reasons]
    return f"{problem}: {said[-1]}" if said else None


def _evidence(name: str, kind: EvidenceKind, result: CommandResult, *, metric_ok: bool = True,
              metric: float | None = None, target: str | None = None, error: str | None = None) -> Evidence:
    """Passed means exit code 0, no timeout, and (for a metric check) the target met."""
    from goalkeeper.events import Evidence  # loaded once a run is judged: `gk exec` starts the checks sooner

    return Evidence(
        name=name,
        kind=kind,
        command=result.command,
        exit_code=result.exit_code,
        duration_s=result.duration_s,
        output_tail=result.output[-OUTPUT_TAIL_CHARS:],
        passed=metric_ok and result.exit_code == 0 and not result.timed_out,
        metric=metric,
        target=target,
        timed_out=result.timed_out,
        error=error,
    )


def all_pass(evidence: list[Evidence]) -> bool:
    """Whether every check passed and every constraint held (vacuously true for none)."""
    return all(item.passed for item in evidence)


def passing_names(evidence: list[Evidence]) -> frozenset[str]:
    """The names of the checks and constraints that passed."""
    return frozenset(item.name for item in evidence if item.passed)


def evidence_table(evidence: list[Evidence]) -> str:
    """A compact Markdown table: name | kind | result | metric/target | exit | duration."""
    rows = ["| name | kind | result | metric / target | exit | duration |", "|---|---|---|---|---|---|"]
    for item in evidence:
        metric = "" if item.target is None else (
            f"{'—' if item.metric is None else f'{item.metric:g}'} ({item.target})")
        cells = [item.name, item.kind, "PASS" if item.passed else "FAIL", metric,
                 "timeout" if item.timed_out else str(item.exit_code), f"{item.duration_s:.1f}s"]
        rows.append("| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |")
    return "\n".join(rows)


def missing_commands(contract: Contract, workspace: Path) -> list[tuple[str, str]]:
    """(check or keep_green name, first word) for each command whose program does not exist here.

    Asked before a goal is set, so a typo fails at once rather than after the first turn. Only a plain
    first word is judged; anything shell-shaped (subshells, redirections) is given the benefit of the doubt.
    """
    runs = [(check.name, check.run) for check in contract.checks]
    runs += [(command, command) for command in contract.constraints.keep_green]
    missing = []
    for name, command in runs:
        word = _program(command)
        if word is not None and not _is_command(word, workspace):
            missing.append((name, word))
    return missing


def _program(command: str) -> str | None:
    """The program a command line starts with, after any `VAR=value` assignments; None if unclear."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    words = list(itertools.dropwhile(lambda word: re.fullmatch(r"[A-Za-z_]\w*=.*", word), words))
    return words[0] if words and re.fullmatch(r"[\w./+-]+", words[0]) else None


#: (program, folder, PATH) bash found once: a batch lints the same checks for every goal. Only what was found is
#: kept: a program installed since is found on the next ask, and one removed since fails the baseline's run with
#: `cannot_start`'s message, the same words this lint would give.
_FOUND: set[tuple[str, str, str]] = set()
_FOUND_MAX = 4096


def _is_command(word: str, workspace: Path) -> bool:
    path = os.environ.get("PATH", "")
    # A word with no slash is found the same from every folder while PATH names none relative to it (an empty
    # entry is the current one): a batch's goals, each in its own worktree, ask once.
    anywhere = "/" not in word and all(entry and os.path.isabs(entry) for entry in path.split(os.pathsep))
    key = (word, "" if anywhere else str(workspace), path)
    if key in _FOUND:
        return True
    # bash's own lookup, so builtins, keywords and ./relative scripts count exactly as they will at run time.
    found = subprocess.run(["/bin/bash", "-c", 'type -t -- "$1"', "bash", word], cwd=workspace,
                           capture_output=True, check=False)
    if found.returncode == 0:
        if len(_FOUND) >= _FOUND_MAX:  # a server sets goals for ever: what was found is only a head start
            _FOUND.clear()
        _FOUND.add(key)
    return found.returncode == 0
