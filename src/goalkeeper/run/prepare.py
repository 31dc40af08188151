"""Everything a run does before its first turn: the sandbox said out loud, the goal branch, the baseline
mirror, the pinned verification surface, config.toml and the project instructions (AGENTS.md) at the goal's
base, and the baseline check run, which
also answers the lint gate's run questions for a goal set to run at once (`lint_at_baseline`). The model's
SDK loads while the baseline's checks run (`_build_model`), off the path to the first request, and so is the
base checkout the clean rooms start from made (`_make_base_cache`). The MCP
servers config.toml names start before a run's first turn (`start_mcp`) and stop when the run ends.

Each step is done once per goal and found again (from the replayed facts) on later runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from goalkeeper.config.load import Config, goalkeeper_home, load_config
from goalkeeper.context.instructions import load_instructions
from goalkeeper.context.render import read_first_block
from goalkeeper.context.tokens import ESTIMATE_CHARS_PER_TOKEN
from goalkeeper.contract.lint import GoalLintError
from goalkeeper.core.decide import decide, with_baseline
from goalkeeper.core.outcomes import CheckResult, Decision, GoalCleared, Wait
from goalkeeper.errors import ContractError, WorkspaceError
from goalkeeper.events import (
    BaselineEvent,
    BaselineMirrorEvent,
    Evidence,
    InstructionsLoadedEvent,
    McpServersEvent,
    SandboxEvent,
    VerificationPinsEvent,
    VerificationSurfaceEvent,
)
from goalkeeper.models.factory import BuildingModel
from goalkeeper.models.retry import GatedModel
from goalkeeper.run.goal_run import GoalRun, key_env
from goalkeeper.run.head_start import HeadStart, claim
from goalkeeper.run.policy import command_env, configured
from goalkeeper.sandbox import limits as process_limits
from goalkeeper.sandbox.bwrap import require_sandbox, warm_layout
from goalkeeper.spec.contract import Contract
from goalkeeper.tools.mcp import start_servers
from goalkeeper.verify.checks import cannot_start, run_checks
from goalkeeper.verify.cleanroom import keep_baseline, make_base_cache
from goalkeeper.verify.envsnap import EarlyBase
from goalkeeper.verify.lint import baseline_refusal
from goalkeeper.verify.observed import surface_summary, traced_surface
from goalkeeper.verify.pins import Pins, pin_verification_surface
from goalkeeper.verify.trace import Tracer, tracer_problem
from goalkeeper.workspace.git import keep_untracked
from goalkeeper.workspace.goal import leave_goal_branch, open_branch
from goalkeeper.workspace.read_first import read_first_files

READ_FIRST_SHARE = 0.25
"""The part of the compaction limit the `read_first` files may fill: the goal's own work needs the rest."""


async def prepare(run: GoalRun) -> None:
    """Confine the run, find or make its branch, mirror and pins, and read its config; then the baseline runs
    once, unless it has (`baseline`, which a gated run may reach in a later step without preparing again)."""
    require_sandbox(run.sandbox)  # refuses to start rather than run unconfined
    # Said out loud on every run: how the commands are confined, including what could not be bounded.
    limit = process_limits.describe() if run.sandbox.mode != "danger-full-access" else "unconfined"
    run.record([SandboxEvent(mode=run.sandbox.mode, network=run.sandbox.network, processes=limit)])
    first = run.facts.keep_green is None  # the baseline has not run
    # `gk exec` may have started the checks already (head_start.py): then no self-test or scan is needed here.
    head = claim(run.workspace) if first and run.facts.branch is None else None
    # The baseline's tracer self-test depends only on the sandbox's mode: it runs while the branch and the
    # mirror are made.
    probe = asyncio.ensure_future(asyncio.to_thread(tracer_problem, run.sandbox)) \
        if first and head is None else None
    # So does the sandbox's first layout scan, kept for the baseline's command unless config.toml's secrets or
    # the pins change its globs.
    layout = asyncio.ensure_future(asyncio.to_thread(warm_layout, run.sandbox, _home(run))) \
        if probe is not None else None
    cache: asyncio.Future[None] | None = None
    try:
        await _open_branch(run)
        if head is not None:
            fits = await _from_head_commit(run, head)
            head.release_tree()  # the branch is made: from now on a change is a change
            if not fits:
                await head.stop()  # gone before anything else runs in the workspace
                head = None
        config = await _at_base(run, head.early if head is not None else None)
        cache = _make_base_cache(run)
        if layout is not None:
            with contextlib.suppress(Exception):  # only a head start: the command's own scan says what failed
                await layout
        run.mcp_tables = config.mcp_servers
        run.tools = run.tools.with_approvals(rules=config.rules, approval_policy=config.approval_policy,
                                             goal_branch=run.facts.branch.name if run.facts.branch else None)
        run.prepared = True  # a step that stops before the baseline's run does not prepare again
        if first:
            await baseline(run, probe, cache, head)
        _build_model(run)  # a resumed goal's: its first request comes next
    finally:
        for started in (probe, layout):
            if started is not None:
                started.cancel()  # the run failed before its baseline: nobody waits for them
        if cache is not None and not cache.done():
            with contextlib.suppress(Exception):  # what stopped the run is the news; a clean room makes it again
                await asyncio.shield(cache)  # its thread writes the goal's folder until it ends


async def start_mcp(run: GoalRun) -> None:
    """Start config.toml's MCP servers for this run unless they run (a resumed goal, or a gated step, starts
    them again) and add their tools to the registry, in the same order every time."""
    if run.mcp is None and any(table.enabled for table in run.mcp_tables.values()):
        run.mcp = await start_servers(run.mcp_tables, run.sandbox, run.env)
        run.tools = run.tools.adding(run.mcp.tools)
        added = {connection.name: 0 for connection in run.mcp.connections}
        for tool in run.mcp.tools:
            added[tool.connection.name] += 1
        run.record([McpServersEvent(servers=added)], hold=True)  # written with the turn's first commit


async def stop_mcp(run: GoalRun) -> None:
    """Stop the run's MCP servers (their process groups are killed if they linger)."""
    servers, run.mcp = run.mcp, None
    if servers is not None:
        await servers.aclose()


async def _from_head_commit(run: GoalRun, head: HeadStart) -> bool:
    """Whether the head start's checks run on the goal's base: they started, on the commit the goal branch
    was made from, with no snapshot of a dirty tree on top."""
    branch = run.facts.branch
    return (await head.running() and branch is not None and branch.snapshot_commit is None
            and branch.base_commit == head.commit)


async def _at_base(run: GoalRun, early: EarlyBase | None = None) -> Config:
    """What the baseline's run needs once the branch is there: the mirror and environment snapshot, the pinned
    surface, config.toml and the project instructions at the goal's base, and the `read_first` files. None
    writes the workspace, so they are made side by side, and recorded in this order."""
    branch = run.facts.branch
    base = (branch.snapshot_commit or branch.base_commit) if branch else "HEAD"
    kept, pins, (config, instructions), read_first = await asyncio.gather(
        _keep_baseline(run, early), _pin_surface(run), asyncio.to_thread(_config_and_instructions, run, base),
        asyncio.to_thread(_read_first, run, base) if run.contract.read_first and run.state.spent.turns == 0
        else asyncio.sleep(0, ""))
    if kept is not None:
        run.record([kept])
    verify = run.contract.verify
    if pins is not None:
        run.record([VerificationPinsEvent(pins=pins.to_json(), edits=verify.edits, files=sorted(pins.paths))])
    if verify.edits == "deny" and run.facts.pins is not None:
        # In deny mode the pinned files are read-only, the baseline's run included.
        run.sandbox = replace(run.sandbox, protect=(*run.sandbox.protect, *sorted(run.facts.pins.paths)))
    # Its secrets join the sandbox and the environment filter, its hooks the run.
    run.sandbox = configured(run.sandbox, config)
    run.env = command_env(config, key_env(run.settings))
    run.hooks = config.hooks
    if instructions is not None:
        run.record([instructions])
    run.read_first = read_first or run.read_first
    return config


def _config_and_instructions(run: GoalRun, base: str) -> tuple[Config, InstructionsLoadedEvent | None]:
    """config.toml as committed at the goal's base (its snapshot with --allow-dirty), never the goal branch,
    which the model writes; and the project instructions read once, before the goal's first request, from the
    same commit: the event keeps their text, so a file changed since (by the goal, or by anyone) never changes
    the prefix of a goal already under way. A goal whose baseline ran without them (set before they were
    read) goes on without them."""
    config = load_config(run.workspace, commit=base)
    if run.facts.instructions is not None or run.facts.keep_green is not None or run.facts.branch is None:
        return config, None
    return config, load_instructions(run.workspace, base, run.settings.workdir, goalkeeper_home(),
                                     config.project_doc_max_bytes)


def _read_first(run: GoalRun, base: str) -> str:
    """The `read_first` files at the goal's start, within READ_FIRST_SHARE of the compaction limit."""
    budget = int(run.compact_limit * READ_FIRST_SHARE * ESTIMATE_CHARS_PER_TOKEN)
    return read_first_block(*read_first_files(run.workspace, base, run.contract.read_first, budget))


def _home(run: GoalRun) -> Path:
    """The $HOME the run's commands see (the tracer's sandbox binds it as `sandbox_argv` lays it out)."""
    return Path(run.env.get("HOME") or Path.home())


def _make_base_cache(run: GoalRun) -> asyncio.Future[None] | None:
    """Start making the base checkout the clean rooms start from, on a goal's first run: from the mirror alone,
    so while the baseline's checks run (the baseline waits for it before it is recorded)."""
    mirror = run.facts.mirror
    if mirror is None or mirror.resumed:
        return None
    return asyncio.ensure_future(asyncio.to_thread(make_base_cache, run.workspace, mirror, run.goal.goal_id))


def _build_model(run: GoalRun) -> None:
    """Start building the run's model (`BuildingModel`) unless it started: not earlier, since the import
    would compete for the interpreter with the git work that has to finish before the baseline."""
    model = run.model.model if isinstance(run.model, GatedModel) else run.model  # a batch goal's is behind its gate
    if isinstance(model, BuildingModel):
        model.start()


async def _open_branch(run: GoalRun) -> None:
    """Create the goal branch on the first run; later, check it out and commit what a crash left."""
    turn = run.facts.turn
    interrupted = turn.number if turn.number and not turn.ended else None
    boundaries = run.contract.boundaries
    await asyncio.to_thread(keep_untracked, run.workspace, run.settings.own_files)  # the goal file: never a change
    opened = await asyncio.to_thread(open_branch, run.workspace, run.goal.goal_id, run.contract.outcome,
                                     run.facts.branch, run.settings.allow_dirty, interrupted,
                                     list(run.sandbox.protect), list(boundaries.paths), boundaries.max_file_bytes)
    if opened is not None:
        run.record([opened])


async def _keep_baseline(run: GoalRun, early: EarlyBase | None) -> BaselineMirrorEvent | None:
    """Before anything of the model's runs: the baseline mirror and environment snapshot (`early`: the one the
    head start took before its checks ran); found again later."""
    branch = run.facts.branch
    if branch is None:
        return None
    commit = branch.snapshot_commit or branch.base_commit
    return await asyncio.to_thread(keep_baseline, run.workspace, run.goal.goal_id, commit, run.facts.mirror, early)


async def _pin_surface(run: GoalRun) -> Pins | None:
    """Pin the verification surface once, before the baseline (None when it is pinned already)."""
    if run.facts.pins is not None:
        return None
    return await asyncio.to_thread(pin_verification_surface, run.workspace, run.contract, run.contract.verify.pins)


async def baseline(run: GoalRun, probe: Awaitable[str | None] | None = None,
                   alongside: Awaitable[None] | None = None, head: HeadStart | None = None) -> None:
    """Run every check and keep_green command once before the first turn, under the tracer unless its self-test
    (`probe`, started by `prepare`; else run here) says why it cannot work here; that one run is also the
    observation of the verification surface. Red constraints are dropped. `alongside` (the base checkout,
    made while the checks run) is waited for before the baseline is recorded. With `head`, the run `gk exec`
    started early stands for it if it ran exactly this (head_start.py); else it is killed first."""
    run.before("checks")
    _build_model(run)  # its SDK loads while the checks run, off the path to the first request
    evidence = await _head_evidence(run, head) if head is not None else None
    if evidence is not None and head is not None:
        problem, tracer = head.problem, head.tracer
    else:
        problem = await (probe if probe is not None else asyncio.to_thread(tracer_problem, run.sandbox))
        tracer = Tracer() if problem is None else None
    try:
        if evidence is None:
            evidence = await run_checks(run.contract, run.workspace, sandbox=run.sandbox, env=run.env,
                                        tracer=tracer)
        # Both only read the tree the checks left: the trace's parse and the tree's hash run side by side.
        surface, tree, _ = await asyncio.gather(
            asyncio.to_thread(traced_surface, tracer, problem, run.workspace, run.facts.pins or Pins((), ())),
            run.tree_hash(), alongside if alongside is not None else asyncio.sleep(0))
    finally:
        if tracer is not None:
            tracer.close()
    if run.settings.lint_at_baseline and (refused := baseline_refusal(run.contract, evidence)) is not None:
        await _refuse(run, refused)
    # Only what bash could not start: a program that ran and exited 127 is a failing check like any other.
    missing = [(e.name, problem) for e in evidence
               if e.is_check and not e.timed_out and (problem := cannot_start(e.exit_code, e.output_tail))]
    if missing:
        raise ContractError(f"check `{missing[0][0]}` cannot run: {missing[0][1]}",
                            "fix its `run` command (or install the tool), then `gk goal ... --replace`")
    active = [e.name for e in evidence if not e.is_check and e.passed]
    dropped = [e.name for e in evidence if not e.is_check and not e.passed]
    state = with_baseline(run.state, results(evidence, run.contract), tree)
    kept = BaselineEvent(evidence=evidence, keep_green_active=active, keep_green_dropped=dropped, tree_hash=tree)
    observed = VerificationSurfaceEvent(surface=surface.to_json(), summary=surface_summary(surface))
    run.commit(Decision(state, Wait()), [kept, observed])


async def _head_evidence(run: GoalRun, head: HeadStart) -> list[Evidence] | None:
    """The head start's evidence when it ran what the baseline would run now; else it is killed, and None."""
    branch = run.facts.branch
    if branch is not None and head.fits(run.contract, run.workspace, run.sandbox, run.env, branch.base_commit):
        evidence = await head.evidence()
        if evidence is not None:
            return evidence
    await head.stop()
    return None


async def _refuse(run: GoalRun, refused: GoalLintError) -> NoReturn:
    """The lint gate's refusal, found by the baseline of a goal set to run at once: it ends as the gate's
    refusal did, before any model request. The goal is cleared, HEAD goes back to the branch it was set
    from (leave_goal_branch), and the refusal is raised for the face to show."""
    cleared = decide(run.state, GoalCleared("harness", "the baseline run found lint errors: " + refused.message))
    run.store.delete_goal(run.goal.goal_id, list(cleared.events))
    branch = run.facts.branch
    if branch is not None:
        with contextlib.suppress(WorkspaceError):  # a branch git would not delete stays; the refusal is the news
            await asyncio.to_thread(leave_goal_branch, run.workspace, branch)
    raise refused


def results(evidence: list[Evidence], contract: Contract) -> tuple[CheckResult, ...]:
    """The evidence as `decide` judges it: each check's pass, metric and the metric's direction."""
    direction = {check.name: check.metric.lower_is_better for check in contract.checks if check.metric}
    return tuple(CheckResult(e.name, e.kind, e.passed, e.metric, direction.get(e.name)) for e in evidence)
