"""Lint that looks at the workspace: `lint_goal` adds to the contract's own findings what only the machine can tell.

Without running anything it asks bash whether each command parses (`bash -n`) and whether its program
exists (`type -t`). With `run` it runs each check and keep_green command once, under the goal's own sandbox
policy, in a scratch tree of the workspace (its files copied or reflinked; `.git`, virtualenvs and
node_modules bound read-only, never copied), to find checks that cannot run, checks that already pass (the goal would be
achieved at once), metrics that cannot be read, and keep_green commands that are red now. The workspace
itself is never written: the scratch tree is removed whatever happens.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from goalkeeper.config.load import load_config
from goalkeeper.contract.lint import Element, Finding, GoalLintError, LintReport, lint_report
from goalkeeper.core.figures import format_duration
from goalkeeper.errors import SandboxError
from goalkeeper.events import Evidence
from goalkeeper.sandbox.bwrap import require_sandbox
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.sandbox.process import command_script
from goalkeeper.spec.contract import Check, Contract
from goalkeeper.verify.checks import cannot_start, missing_commands, run_check, run_constraint
from goalkeeper.verify.cleanroom import copy_into
from goalkeeper.verify.envsnap import SKIPPED_NAMES
from goalkeeper.verify.observed import Surface, surface_from_pins, surface_summary, traced_surface
from goalkeeper.verify.pins import Pins, pin_verification_surface
from goalkeeper.verify.trace import Tracer, tracer_problem
from goalkeeper.workspace.git import probe

#: Ignored folders a lint run does without: caches are never reused (the clean room's rule).
NEVER_SHARED = SKIPPED_NAMES - {".git"}

#: Seconds each check or keep_green command may run while linting (less when its own timeout is shorter).
LINT_TIMEOUT_S = 120.0

#: The timeout keep_green commands get in a run (verify.run_constraint's default).
KEEP_GREEN_TIMEOUT_S = 600.0

# A Python syntax error in the command line itself (`python -c`, `python - <<EOF`), not in the code under test.
_INLINE_PYTHON = re.compile(r'File "<(?:string|stdin)>", line \d+')
_BASH_PREFIX = re.compile(r"^(?:\S*bash: )?(?:-c: |\S*/command\.sh: )?(?:line \d+: )?")
# Python was asked to run a script that is not there (exit 2): the goal may be to write it, or the path is wrong.
_NO_SCRIPT = re.compile(r"can't open file '([^']+)': \[Errno 2\]")
_SCRATCH = re.compile(r"^.*?/gk-lint-[^/]+/[^/]+/")  # the scratch copy's root, in paths the commands print
_PYTHON_SYNTAX = re.compile(r"^(?:SyntaxError|IndentationError|TabError): .*$", re.MULTILINE)


def lint_goal(contract: Contract, workspace: Path, *, run: bool = True, timeout_s: float = LINT_TIMEOUT_S,
              key_env: str | None = None, not_run: str = "the checks were not run (--no-run)") -> LintReport:
    """Lint `contract` for `workspace`: the contract's own findings, the commands' syntax and programs, and
    (with `run`) what running each check and keep_green command once shows. `key_env`, the variable the
    goal's model reads its key from, is kept from the commands; `not_run` says why they were not run.
    Call from synchronous code; `lint_goal_async` is the same for a running event loop."""
    if not run:  # nothing to wait on, so no event loop
        return _not_run_report(contract, *_static_part(contract, workspace), not_run)
    return asyncio.run(lint_goal_async(contract, workspace, run=run, timeout_s=timeout_s, key_env=key_env,
                                       not_run=not_run))


async def lint_goal_async(contract: Contract, workspace: Path, *, run: bool = True,
                          timeout_s: float = LINT_TIMEOUT_S, key_env: str | None = None,
                          not_run: str = "the checks were not run (--no-run)") -> LintReport:
    """`lint_goal` for async callers."""
    static, pins = await asyncio.to_thread(_static_part, contract, workspace)
    if not run:
        return _not_run_report(contract, static, pins, not_run)
    findings = [finding for _, finding in static]
    ran, notes, surface = await _run_findings(contract, workspace, {name for name, _ in static}, timeout_s,
                                              key_env, pins)
    return lint_report(contract, [*findings, *ran], ran=True, notes=notes, pinned=sorted(pins.paths),
                       surface=surface_summary(surface))


def static_errors(contract: Contract, workspace: Path) -> list[Finding]:
    """The errors `lint_goal(run=False)` would report, without pinning the surface (which only informs): what
    a batch checks of every goal before it starts one."""
    return lint_report(contract, [finding for _, finding in _static_findings(contract, workspace)]).errors


def _static_part(contract: Contract, workspace: Path) -> tuple[list[tuple[str, Finding]], Pins]:
    """What the lint learns without running anything: the commands' findings and the pinned surface."""
    return _static_findings(contract, workspace), pin_verification_surface(workspace, contract, contract.verify.pins)


def _not_run_report(contract: Contract, static: list[tuple[str, Finding]], pins: Pins, not_run: str) -> LintReport:
    return lint_report(contract, [finding for _, finding in static], ran=False, pinned=sorted(pins.paths),
                       surface=surface_summary(surface_from_pins(pins, not_run)))


def baseline_refusal(contract: Contract, evidence: list[Evidence]) -> GoalLintError | None:
    """The gate's refusal that the baseline run shows, or None: the findings `lint_goal` would have made from
    running each command, judged on the baseline's evidence (which ran them with their own timeouts), for a
    goal whose gate did only its static part before it was set (`lint_at_baseline`)."""
    own = {check.name: check.timeout_s for check in contract.checks}
    runs = [(item, limit, limit) for item in evidence
            for limit in [own.get(item.name, KEEP_GREEN_TIMEOUT_S) if item.is_check else KEEP_GREEN_TIMEOUT_S]]
    findings, notes = _judge(runs, len(contract.checks))
    report = lint_report(contract, findings, ran=True, notes=notes)
    # Only what the run found: the contract's own findings were shown when the goal was set.
    return GoalLintError(dataclasses.replace(report, findings=tuple(findings))) if report.errors else None


# ---------------------------------------------------------------- without running anything


def _commands(contract: Contract) -> list[tuple[Element, str, str]]:
    """(element, name, command) for every check, then every keep_green command (named by itself)."""
    return [*(("verification", check.name, check.run) for check in contract.checks),
            *(("constraints", command, command) for command in contract.constraints.keep_green)]


def _static_findings(contract: Contract, workspace: Path) -> list[tuple[str, Finding]]:
    """(name, finding) for each command that bash cannot parse or whose program does not exist here."""
    found = []
    for element, name, command in _commands(contract):
        problem = _shell_syntax_error(command)
        if problem is not None:
            found.append((name, _syntax_finding(element, name, problem)))
    unparsed = {name for name, _ in found}
    check_names = {check.name for check in contract.checks}
    for name, word in missing_commands(contract, workspace):
        if name in unparsed:
            continue
        kind: Element = "verification" if name in check_names else "constraints"
        found.append((name, Finding(
            "error", kind, "cannot-run", f"{_what(kind, name)} runs `{word}`, which is not a command here",
            f"fix the program name in {_where(kind, name)}, or install `{word}` (it must be on PATH)")))
    return found


@functools.lru_cache(maxsize=256)
def _shell_syntax_error(command: str) -> str | None:
    """bash's complaint about `command`'s syntax (parsed with `bash -n`, which runs nothing), or None. The text
    alone decides it, so a batch's goals that share their checks parse them once."""
    with command_script(command) as script:  # a file, not argv: a command of any size parses
        parsed = subprocess.run(["/bin/bash", "-n", str(script)], capture_output=True, text=True, check=False)
    if parsed.returncode == 0:
        return None
    lines = [_BASH_PREFIX.sub("", line) for line in parsed.stderr.strip().splitlines()]
    return lines[0] if lines else f"bash -n exited {parsed.returncode}"


def _syntax_finding(element: Element, name: str, problem: str) -> Finding:
    return Finding("error", element, "syntax-error", f"{_what(element, name)} has a syntax error: {problem}",
                   f"fix the quoting or syntax in {_where(element, name)}; try it by hand with bash -c '...'")


def _what(element: Element, name: str) -> str:
    return f"check `{name}`" if element == "verification" else f"keep_green command `{name}`"


def _where(element: Element, name: str) -> str:
    return f'the `run` of [[checks]] name = "{name}"' if element == "verification" else "[constraints] keep_green"


# ---------------------------------------------------------------- running each command once


async def _run_findings(contract: Contract, workspace: Path, broken: set[str], timeout_s: float,
                        key_env: str | None, pins: Pins) -> tuple[list[Finding], list[str], Surface]:
    """Findings from running each runnable check and keep_green command once (traced, as the baseline will
    be), notes on what was not judged, and the verification surface that run observed."""
    if not contract.checks and not contract.constraints.keep_green:
        return [], [], surface_from_pins(pins, "there are no checks to run")
    boundaries = contract.boundaries
    confined = boundaries.sandbox != "danger-full-access"
    with _scratch_tree(workspace, confined) as (scratch, binds), _tracing() as tracer:
        config = load_config(workspace)  # for its secrets: HEAD's committed version, as before a goal exists
        sandbox = SandboxPolicy(boundaries.sandbox, scratch.resolve(), tuple(boundaries.protect),
                                tuple(boundaries.paths), network=boundaries.network, secrets=config.secrets,
                                secret_env=config.secret_env, secret_files=config.secret_files, ro_binds=binds)
        try:
            await asyncio.to_thread(require_sandbox, sandbox)
        except SandboxError as error:
            return [Finding("error", "boundaries", "sandbox-unavailable",
                            f"the checks cannot run under sandbox {boundaries.sandbox!r}: {error.message}",
                            error.hint or 'install bubblewrap, or set sandbox = "danger-full-access" in [boundaries]'
                            )], [], surface_from_pins(pins, "the checks could not run")
        problem = await asyncio.to_thread(tracer_problem, sandbox)
        traced = tracer if problem is None else None
        env = config.command_env(os.environ, key_env)
        runs: list[tuple[Evidence, float, float]] = []  # evidence, the limit it ran under, its own timeout
        for check in contract.checks:
            if check.name not in broken:
                capped = _capped(check, timeout_s)
                runs.append((await run_check(capped, scratch, env, sandbox, tracer=traced), capped.timeout_s,
                             check.timeout_s))
        limit = min(KEEP_GREEN_TIMEOUT_S, timeout_s)
        for command in contract.constraints.keep_green:
            if command not in broken:
                evidence = await run_constraint(command, scratch, limit, env, sandbox, traced)
                runs.append((evidence, limit, KEEP_GREEN_TIMEOUT_S))
        # The scratch copy's paths are the workspace's: the surface reads the same.
        surface = await asyncio.to_thread(traced_surface, traced, problem, scratch, pins)
    return (*_judge(runs, len(contract.checks)), surface)


@contextmanager
def _tracing() -> Iterator[Tracer]:
    tracer = Tracer()
    try:
        yield tracer
    finally:
        tracer.close()


def _judge(runs: list[tuple[Evidence, float, float]], total_checks: int) -> tuple[list[Finding], list[str]]:
    """Findings and notes from one run of each command."""
    findings: list[Finding] = []
    notes: list[str] = []
    judged: list[Evidence] = []
    for item, limit, own in runs:
        problem = _cannot_run(item) or _timed_out(item, limit, own, notes)
        if problem is not None:
            findings.append(problem)
        elif not item.timed_out:
            judged.append(item)
    checks = [item for item in judged if item.is_check]
    findings += _already_passing(checks, total_checks)
    findings += [_metric_unread(item) for item in checks if item.target and item.metric is None and item.exit_code == 0]
    findings += [_no_script(item, match.group(1)) for item in judged if not item.passed
                 and (match := _NO_SCRIPT.search(item.output_tail)) is not None]
    findings += [_red_keep_green(item) for item in judged if not item.is_check and not item.passed]
    return findings, notes


@contextmanager
def _scratch_tree(workspace: Path, confined: bool) -> Iterator[tuple[Path, tuple[tuple[Path, Path], ...]]]:
    """Where the checks run, and the read-only binds it needs; removed afterwards.

    Never a full copy of the workspace: its files (tracked, untracked and ignored) are copied as new files,
    reflinked where the file system can (the clean room's `copy_into`); under a sandbox `.git` and the
    environments (virtualenvs, `node_modules`) are not copied but bound read-only, as the clean room binds
    its environment snapshot. Other ignored folders (`build/`, `target/`) are copied, since checks write
    there; without a sandbox (danger-full-access) everything is, so a check still cannot write the
    workspace's own.
    """
    root = Path(tempfile.mkdtemp(prefix="gk-lint-"))
    try:
        scratch = root / workspace.name
        binds = _fill(workspace, scratch, confined)
        yield scratch, binds
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _fill(workspace: Path, scratch: Path, confined: bool) -> tuple[tuple[Path, Path], ...]:
    """Put the workspace's files into `scratch` (see _scratch_tree); the binds its folders need."""
    listed = probe(workspace, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if listed.returncode != 0:  # not a git repository: no folder is known to be an environment
        shutil.copytree(workspace, scratch, symlinks=True)
        return ()
    scratch.mkdir()
    ignored = probe(workspace, "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory")
    entries = ignored.stdout.split("\0")
    folders = [".git", *(entry.rstrip("/") for entry in entries if entry.endswith("/"))]
    files = [*listed.stdout.split("\0"), *(entry for entry in entries if entry and not entry.endswith("/"))]
    for path in dict.fromkeys(path for path in files if path):
        source = workspace / path
        if source.is_dir() and not source.is_symlink():
            shutil.copytree(source, scratch / path, symlinks=True)  # a submodule or a nested repository
        elif source.is_symlink() or source.is_file():
            copy_into(workspace, scratch, path)
    return tuple(bind for folder in folders if (bind := _place(workspace, scratch, folder, confined)))


def _place(workspace: Path, scratch: Path, folder: str, confined: bool) -> tuple[Path, Path] | None:
    """Put one folder of `.git` and the ignored environment into `scratch`; the read-only bind it needs."""
    source = workspace / folder
    if not os.path.lexists(source) or NEVER_SHARED.intersection(folder.split("/")):
        return None
    if source.is_symlink() or not source.is_dir():
        copy_into(workspace, scratch, folder)  # a link stays a link (`.venv -> /opt/venvs/app`), a file a file
        return None
    target = scratch / folder
    if not confined or not (folder == ".git" or _environment(source)):
        shutil.copytree(source, target, symlinks=True)  # a folder checks may write (build/, target/)
        return None
    if folder == ".git":
        # The sandbox binds every `.git` in the workspace read-only over itself, which would hide a bind
        # made there: the scratch's `.git` is a link to the real one, bound read-only at its own path.
        target.symlink_to(source.resolve())
        return source.resolve(), source.resolve()
    target.mkdir(parents=True, exist_ok=True)  # the mount point of its read-only bind
    return source, target


def _environment(folder: Path) -> bool:
    """A virtualenv or node_modules: large, installed once, read by the checks, not written."""
    return folder.name == "node_modules" or (folder / "pyvenv.cfg").is_file()


def _capped(check: Check, timeout_s: float) -> Check:
    return check.model_copy(update={"timeout_s": min(check.timeout_s, timeout_s)})


def _element_of(item: Evidence) -> Element:
    return "verification" if item.is_check else "constraints"


def _cannot_run(item: Evidence) -> Finding | None:
    """A program bash could not find or execute (not a program that chose exit code 126/127), or a Python
    syntax error in the command line."""
    element = _element_of(item)
    problem = None if item.timed_out else cannot_start(item.exit_code, item.output_tail)
    if problem is not None:
        return Finding("error", element, "cannot-run", f"{_what(element, item.name)} cannot run: {problem}",
                       f"fix {_where(element, item.name)}, or install the program it needs")
    syntax = _PYTHON_SYNTAX.search(item.output_tail)
    if syntax is not None and _INLINE_PYTHON.search(item.output_tail):
        return _syntax_finding(element, item.name, f"Python says {syntax.group(0).strip()}")
    return None


def _timed_out(item: Evidence, limit: float, own: float, notes: list[str]) -> Finding | None:
    """A warning when the command hit its own timeout; a note when it only hit lint's shorter one."""
    if not item.timed_out:
        return None
    element = _element_of(item)
    if limit < own:
        notes.append(f"{_what(element, item.name)} did not finish within lint's {format_duration(limit)}, so it was "
                     "not judged")
        return None
    return Finding("warning", element, "times-out",
                   f"{_what(element, item.name)} timed out after {format_duration(limit)}: every verification would",
                   f'raise it: timeout = "{format_duration(2 * limit)}" in {_where(element, item.name)}, '
                   "or make the command faster")


def _already_passing(checks: list[Evidence], total: int) -> list[Finding]:
    """An error when every check passes now (achieved at once); else a warning per check that passes."""
    passing = [item for item in checks if item.passed]
    if not passing:
        return []
    if len(passing) == total:
        shown = "; ".join(f"`{item.name}`" + (f" reads {_reading(item)}" if item.target else "") for item in passing)
        return [Finding("error", "verification", "passes-at-baseline",
                        f"every check passes already ({shown}): the goal would be achieved before the first turn",
                        "make the checks test what is not done yet (a new failing test, a metric target not met "
                        "now), or the goal is already achieved")]
    return [Finding("warning", "verification", "check-passes-at-baseline",
                    f"check `{item.name}` passes already" + (f" (it reads {_reading(item)})" if item.target else "")
                    + ": it proves nothing about this goal",
                    f'move it to [constraints] keep_green = ["{item.command}"] if it guards against regressions, '
                    "or make it test what is not done yet")
            for item in passing]


def _reading(item: Evidence) -> str:
    return f"{item.metric:g}, target {item.target}"


def _metric_unread(item: Evidence) -> Finding:
    return Finding("warning", "verification", "metric-not-read",
                   f"check `{item.name}` exits 0 but its metric could not be read: {item.error}",
                   f'print the metric (JSON on the last line works), or fix the metric of [[checks]] name = '
                   f'"{item.name}"')


def _no_script(item: Evidence, script: str) -> Finding:
    element = _element_of(item)
    return Finding("warning", element, "missing-file",
                   f"{_what(element, item.name)} runs {_SCRATCH.sub('', script)!r}, which does not exist: fine if "
                   "the goal is to write it, otherwise the check can never pass",
                   f"fix the path in {_where(element, item.name)} (it runs in the workspace root)")


def _red_keep_green(item: Evidence) -> Finding:
    lines = item.output_tail.strip().splitlines()
    said = f": {lines[-1][:120]}" if lines else ""
    return Finding("warning", "constraints", "keep-green-red",
                   f"keep_green command `{item.name}` is red now (exit {item.exit_code}{said}): the baseline drops "
                   "it, so it guards nothing",
                   "make it green first, or remove it from [constraints] keep_green")

