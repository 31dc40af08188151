"""Batches of goals for every face: read the goal files, start a batch, carry one on, and its rows.

`batch_rows` is the one read model of a batch (the CLI's live table, and the TUI's and the dashboard's batch
views): one row per goal, read from the store. Starting and resuming check every input first (the files, the
names, `--parallel`, the batch id, the engine: its server reached), so bad input starts nothing; then the fleet
(run/batch.py) runs the goals. With the Temporal engine the fleet's start submits each goal to the workers
(goals/fleet.py) and follows it in the store until it ends; stopping the batch then only detaches from them.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from goalkeeper.config.temporal import TemporalConnection, TlsFlags, connection
from goalkeeper.contract.toml import load_contract
from goalkeeper.core.lifecycle import exit_code
from goalkeeper.errors import ConfigError
from goalkeeper.events import GoalBranchEvent
from goalkeeper.goals import service
from goalkeeper.goals.views import summarize
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import GoalSettings, ModelSettings, RunSettings
from goalkeeper.store import EventRecord, Goal, Store, new_id
from goalkeeper.store.batches import Batch as Batch  # the faces read a batch through here
from goalkeeper.store.batches import (
    BatchGoal,
    NewGoal,
    batch_goals,
    batch_progress,
    get_batch,
    latest_batch,
    list_batches,
    put_batch,
    set_crashed,
    set_goal_id,
)
from goalkeeper.store.batches import BatchNotFoundError as BatchNotFoundError
from goalkeeper.store.batches import Caps as Caps  # the faces build a batch's caps here
from goalkeeper.store.batches import Target as Target  # where a Temporal batch submits its goals
from goalkeeper.workspace import remote
from goalkeeper.workspace.goal import branch_of
from goalkeeper.workspace.worktrees import ensure_worktree, start_commit, worktree_path

if TYPE_CHECKING:
    from goalkeeper.run.batch import Fleet, Slot, Start
    from goalkeeper.run.runner import RunResult

#: How long a batch waits for its provider's import before it forks its worker processes (they inherit it).
IMPORT_WAIT_S = 30.0

#: A goal's exit code when its runner crashed: the worst, above every status's (0-3).
CRASHED_EXIT = 4

WAITING, CRASHED, NOT_STARTED = "waiting", "crashed", "not_started"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

ENGINES = ("local", "temporal")


@dataclass(frozen=True)
class Engine:
    """The engine a new batch asks for: `local`, or `temporal` with the server, its queue and namespace, the
    repository and ref the workers clone (None: the batch's own repository, and its start commit), and the TLS
    flags (laid over the user's `[temporal]` table; never stored with the batch)."""

    name: str = "local"
    address: str = "127.0.0.1:7233"
    task_queue: str = "goalkeeper"
    namespace: str = "default"
    repo: str | None = None
    ref: str | None = None
    tls: TlsFlags | None = None


@dataclass(frozen=True)
class GoalFile:
    """One goal of a batch as given: its name (the file's stem), its file and its contract."""

    name: str
    file: Path
    contract: Contract


class BatchRow(BaseModel):
    """One goal of a batch, as every face shows it."""

    model_config = ConfigDict(frozen=True)

    name: str
    file: str
    worktree: str
    goal_id: str | None
    status: str
    """The goal's status; `waiting` before it starts, `crashed` when its runner raised."""
    reason: str | None = None
    error: str | None = None
    """What crashed the goal's runner."""
    verified: bool = True
    checks_passing: int = 0
    checks_total: int = 0
    tokens: int = 0
    usd: float = 0.0
    elapsed_s: float = 0.0
    turns: int = 0
    running: bool = False
    """A live runner holds the goal now."""

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class BatchEnd:
    """How a run of a batch ended: its rows (`not_started` for goals left unstarted) and its exit code."""

    batch: Batch
    rows: list[BatchRow]
    exit_code: int
    capped: str | None
    """The budget of the batch's global cap that was reached, if one was."""
    detached: bool = False
    """The batch was stopped while Temporal workers ran its goals: they go on there."""


@dataclass(frozen=True)
class Hooks:
    """What a face watches: each goal's events (with the batch's id and the goal's name, from the goal's own
    thread), and a tick at ~2 Hz on the batch's thread (with the batch, its running time as stored)."""

    on_event: Callable[[str, str, EventRecord], None] | None = None
    on_tick: Callable[[Batch], None] | None = None


def read_goal_files(paths: Sequence[Path]) -> list[GoalFile]:
    """The goals in `paths`: each FILE a goal.toml, each DIR every `*.toml` in it, sorted. One ContractError or
    ConfigError names the first file that does not parse, or two goals with one name."""
    if not paths:
        raise ConfigError("no goal files given", "gk batch goals/ or gk batch a.toml b.toml")
    files: list[Path] = []
    for path in paths:
        path = path.expanduser()
        if path.is_dir():
            found = sorted(path.glob("*.toml"))
            if not found:
                raise ConfigError(f"{path} holds no *.toml goal file", "write goal files there (gk init)")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"no goal file or folder {path}", "pass goal.toml files or a folder of them")
    goals = [GoalFile(file.stem, file.resolve(), load_contract(file)) for file in files]
    seen: dict[str, Path] = {}
    for goal in goals:
        if not _NAME.fullmatch(goal.name):
            raise ConfigError(f"{goal.file}: a goal is named after its file, and {goal.name!r} cannot name a "
                              "worktree folder", "rename the file: letters, digits, `.`, `_` and `-`")
        if not goal.contract.verified:
            raise ConfigError(f"the goal in {goal.file} has no checks, so nothing the harness runs can tell when "
                              "it is done", "add [[checks]] to it: a batch runs verified goals only")
        if goal.name in seen:
            raise ConfigError(f"two goals are named {goal.name!r}: {seen[goal.name]} and {goal.file}",
                              "a goal is named after its file: rename one of them")
        seen[goal.name] = goal.file
    return goals


def check_goals(repository: Path, goals: Sequence[GoalFile]) -> None:
    """Lint every goal as `gk exec` does before it runs one (its commands read, not run): the first lint error
    is one ConfigError naming its file, so a batch never starts with a goal the gate would refuse."""
    from goalkeeper.verify.lint import static_errors  # it loads the checks and the sandbox: only a new batch needs it

    for goal in goals:
        errors = static_errors(goal.contract, repository)
        if errors:
            raise ConfigError(f"{goal.file}: {errors[0].message}", f"{errors[0].fix} (`gk lint {goal.file}`)")


def check_caps(tokens: int | None, usd: float | None, time_s: float | None) -> Caps:
    """The batch's global caps; one that is given must be positive."""
    for (flag, example), value in zip(_CAP_EXAMPLES.items(), (tokens, usd, time_s), strict=True):
        if value is not None and not value > 0:  # `not >` also refuses NaN
            raise ConfigError(f"{flag} must be positive, not {value}", f"e.g. {flag} {example}")
    return Caps(tokens, usd, time_s)


_CAP_EXAMPLES = {"--cap-tokens": "2000000", "--cap-usd": "20", "--cap-time": "2h"}


def check_parallel(parallel: int) -> int:
    """`--parallel` as given, or a ConfigError when it is below 1."""
    if parallel < 1:
        raise ConfigError(f"--parallel must be 1 or more, not {parallel}", "e.g. --parallel 4")
    return parallel


def check_engine(engine: Engine) -> Engine:
    """`engine` when it names an engine (and, for Temporal, a server as HOST:PORT), else one ConfigError."""
    if engine.name not in ENGINES:
        raise ConfigError(f"--engine {engine.name!r} is not an engine",
                          "pass --engine local (goals run here) or --engine temporal (workers run them)")
    if engine.name == "temporal":
        from goalkeeper.run.temporal.client import check_address

        check_address(engine.address)
    return engine


def temporal_target(cwd: Path, engine: Engine) -> Target | None:
    """Where a Temporal batch of the repository of `cwd` submits its goals (None for a local batch), once its
    server has answered and its repository has the ref: one clear error before anything starts."""
    if check_engine(engine).name == "local":
        return None
    repository = service.repository_of(cwd)
    target = Target(engine.address, engine.task_queue, engine.namespace, engine.repo or str(repository),
                    engine.ref or start_commit(repository))
    check_target(target, engine.tls)
    return target


def check_target(target: Target, tls: TlsFlags | None = None) -> TemporalConnection:
    """The connection to the target's server (`tls` over the user's `[temporal]` table), once the server has
    answered (within the client's connect timeout) and the workers can clone the repository at the ref; else
    one ConfigError or WorkspaceError with the fix."""
    import asyncio

    from goalkeeper.run.temporal.client import connect

    server = connection(target.address, target.namespace, tls)
    asyncio.run(connect(server))
    remote.remote_has(target.repo, target.ref)
    return server


def start_batch(store: Store, cwd: Path, goals: Sequence[GoalFile], parallel: int, caps: Caps,
                model: ModelSettings | None, run_knobs: RunSettings, hooks: Hooks,
                target: Target | None = None, tls: TlsFlags | None = None) -> BatchEnd:
    """Record a new batch of `goals` in the repository of `cwd` and run it: at most `parallel` at once, each in
    a worktree of its own made from the repository's HEAD when it starts (with a `target`, each submitted to
    the Temporal workers there, connected as `tls` says; `temporal_target` makes it)."""
    repository = service.repository_of(cwd)
    check_parallel(parallel)
    importing = _import_provider_soon(model) if target is None else None
    check_goals(repository, goals)
    commit = start_commit(repository)
    batch_id = new_id("batch")  # the worktrees' paths name the batch
    batch = put_batch(store, str(repository), commit, [str(goal.file) for goal in goals], parallel, caps, model,
                      [NewGoal(goal.name, str(goal.file), goal.contract, str(worktree_path(batch_id, goal.name)))
                       for goal in goals], batch_id, target)
    server = connection(target.address, target.namespace, tls) if target is not None else None
    return _run(store, batch, run_knobs, hooks, server, importing)


def resume_batch(store: Store, cwd: Path, batch_id: str | None, run_knobs: RunSettings, hooks: Hooks,
                 tls: TlsFlags | None = None) -> BatchEnd:
    """Carry a batch on (the repository's latest by default): goals that stopped stay; paused or interrupted
    ones continue in their worktree (re-made from the goal branch if it is gone); unstarted ones start. A
    Temporal batch connects as `tls` says, over the user's `[temporal]` table."""
    repository = service.repository_of(cwd)
    batch = get_batch(store, batch_id) if batch_id else latest_batch(store, str(repository))
    server = check_target(batch.target, tls) if batch.target is not None else None
    importing = _import_provider_soon(batch.model) if server is None else None
    for entry in batch_goals(store, batch.batch_id):
        if entry.crashed is not None:
            set_crashed(store, batch.batch_id, entry.name, None)  # a crash is not a stop: it runs again
    return _run(store, batch, run_knobs, hooks, server, importing)


def _import_provider_soon(model: ModelSettings | None) -> threading.Thread | None:
    from goalkeeper.models.factory import import_provider_soon  # the goals of this process will call the model

    return import_provider_soon(model)


def _run(store: Store, batch: Batch, run_knobs: RunSettings, hooks: Hooks,
         server: TemporalConnection | None, importing: threading.Thread | None) -> BatchEnd:
    """Run the goals of `batch` that have not stopped, and read how each ended (`importing`: the import of
    their provider, under way)."""
    # The runner loads only when a batch runs: `gk serve` reads batches through this module and idles without it.
    from goalkeeper.run.batch import Fleet, Slot, start_local

    entries = [entry for entry in batch_goals(store, batch.batch_id) if not _stopped(store, entry)]
    repository, model = Path(batch.repository), batch.model

    def prepare(goal_store: Store, entry: BatchGoal) -> tuple[Goal, Path]:
        return _prepare(goal_store, repository, entry, batch.commit, model, run_knobs)

    on_event, on_tick = hooks.on_event, hooks.on_tick
    start = start_local if batch.target is None or server is None else \
        _temporal_start(batch.target, server, model, run_knobs)
    fleet = Fleet(batch, [Slot(entry, entry.goal_id) for entry in entries], lambda: service.open_store(store.location),
                  prepare, model,
                  on_event=(lambda name, record: on_event(batch.batch_id, name, record)) if on_event else None,
                  start=start)
    slots = _run_fleet(fleet, (lambda: on_tick(get_batch(store, batch.batch_id))) if on_tick is not None else None,
                       batch.target is None or server is None, importing)
    unstarted = {slot.entry.name for slot in slots if slot.state == "not_started"}
    rows = [row.model_copy(update={"status": NOT_STARTED}) if row.name in unstarted else row
            for row in batch_rows(store, batch.batch_id)]
    detached = fleet.stopping and batch.target is not None and any(row.status == "pursuing" for row in rows)
    return BatchEnd(get_batch(store, batch.batch_id), rows, batch_exit_code(rows), fleet.capped, detached)


def _run_fleet(fleet: Fleet, on_tick: Callable[[], None] | None, local: bool,
               importing: threading.Thread | None) -> list[Slot]:
    """Run the fleet; a local batch's goals in worker processes, one a core, when it can fork them (else, as on
    one core, in threads here). The workers are forked once the provider is imported: each inherits it."""
    from goalkeeper.run.batch import run_fleet
    from goalkeeper.run.workers import fork_pool

    if importing is not None:
        importing.join(timeout=IMPORT_WAIT_S)  # one still importing keeps the goals in this process's threads
    pool = fork_pool(fleet) if local else None
    if pool is None:
        return run_fleet(fleet, on_tick)
    fleet.start, fleet.on_stop = pool.start, pool.stop
    try:
        return run_fleet(fleet, on_tick)
    finally:
        pool.close()


def _temporal_start(target: Target, server: TemporalConnection, model: ModelSettings | None,
                    run_knobs: RunSettings) -> Start:
    """The fleet's start for the Temporal engine: submit the goal (unless a resume finds it submitted), then
    follow it in the store until it is no longer pursuing, or the fleet stops (the goal goes on elsewhere)."""
    from goalkeeper.run.batch import cap_goal

    def start(fleet: Fleet, slot: Slot, store: Store) -> RunResult:
        if slot.goal_id is None:
            goal_id, seen = _submit(fleet, slot, store, target, server, GoalSettings(model=model, run=run_knobs)), 0
        else:
            goal_id, seen = slot.goal_id, _reattach(store, slot.goal_id)
        cap_goal(fleet, slot, store)  # the cap came while the goal was being submitted: it wraps up at once
        return _follow(fleet, slot.entry.name, store, goal_id, seen)

    return start


def _submit(fleet: Fleet, slot: Slot, store: Store, target: Target, server: TemporalConnection,
            settings: GoalSettings) -> str:
    """Submit the slot's goal to the workers (goals/fleet.py) and record its id; the goal's id."""
    import asyncio

    from goalkeeper.goals import fleet as engines

    goal, _ = asyncio.run(engines.submit(store, slot.entry.contract, lambda _staged: settings, repo=target.repo,
                                         ref=target.ref, server=server, task_queue=target.task_queue))
    with fleet.lock:
        slot.goal_id = goal.goal_id
    set_goal_id(store, fleet.batch.batch_id, slot.entry.name, goal.goal_id)
    return goal.goal_id


def _reattach(store: Store, goal_id: str) -> int:
    """A resumed batch's Temporal goal: a paused one is resumed (its workflow woken, or started again), as a
    local batch resumes its paused goals; the seq its events are followed from."""
    goal = store.get_goal_by_id(goal_id)
    seen = store.last_seq(goal.thread_id)
    if goal.state.status == "paused":
        service.resume(store, goal)
    return seen


def _follow(fleet: Fleet, name: str, store: Store, goal_id: str, seen: int) -> RunResult:
    """Watch the goal in the store at the fleet's pace, passing its new events on, until it is no longer
    pursuing (or was cleared), or the fleet stops: then detach and leave it to the workers."""
    from goalkeeper.run.batch import TICK_S
    from goalkeeper.run.runner import RunResult

    while True:
        goal = store.get_goal_by_id(goal_id)  # before its events: they hold everything up to this status
        for record in store.events(goal.thread_id, after_seq=seen, goal_id=goal_id):
            seen = record.seq
            if fleet.on_event is not None:
                fleet.on_event(name, record)
        if goal.standing != "current":
            return RunResult(goal_id, None, "cleared")
        if goal.state.status != "pursuing":
            return RunResult(goal_id, goal.state.status, str(goal.state.reason))
        if fleet.stopping:
            return RunResult(goal_id, "pursuing", "detached: the goal goes on on the Temporal workers")
        time.sleep(TICK_S)


def _stopped(store: Store, entry: BatchGoal) -> bool:
    if entry.goal_id is None or entry.crashed is not None:
        return False
    return store.get_goal_by_id(entry.goal_id).state.status in ("achieved", "unmet", "budget_limited")


def _prepare(store: Store, repository: Path, entry: BatchGoal, commit: str, model: ModelSettings | None,
             run_knobs: RunSettings) -> tuple[Goal, Path]:
    """The goal of `entry` ready to run in its worktree: made and set at its first start; on a resume its
    worktree is re-made if it is gone, and a paused goal is resumed (the person asked, by resuming the batch)."""
    path = Path(entry.worktree)
    if entry.goal_id is None:
        workspace = ensure_worktree(repository, path, None, commit)  # one made before a crash is used again
        if (set_before := _set_here(store, workspace, entry)) is not None:
            return set_before, workspace  # a run killed between setting it and recording it in the batch
        settings = GoalSettings(model=model, run=run_knobs)
        made = service.set_goal(store, workspace, entry.contract, settings, lint="linted")  # check_goals read them
        return made.goal, workspace
    goal = store.get_goal_by_id(entry.goal_id)
    branch = branch_of(store.events(goal.thread_id, goal_id=goal.goal_id, kinds=[GoalBranchEvent]))
    workspace = ensure_worktree(repository, path, branch.name if branch else None, commit)
    if goal.state.status == "paused":
        service.resume(store, goal)
        goal = store.get_goal_by_id(goal.goal_id)
    return goal, workspace


def _set_here(store: Store, workspace: Path, entry: BatchGoal) -> Goal | None:
    """The goal of `entry` already set in its worktree (the worktree is the entry's alone), if any."""
    thread = store.current_thread(workspace)
    goal = store.get_goal(thread.thread_id) if thread is not None else None
    return goal if goal is not None and goal.contract == entry.contract else None


EndedRows = dict[str, tuple[tuple[str | None, int | None, str | None], BatchRow]]
"""A face's rows of the goals that had ended when it last read them, by name, each with what it was read at: the
goal id, the goal's version (any change of its state, a resume included, moves it) and the batch's crash note."""


def batch_rows(store: Store, batch_id: str, ended: EndedRows | None = None) -> list[BatchRow]:
    """One row per goal of the batch, in the order given: the one read model of a batch for every face. With
    `ended` (kept by the face between calls), the row of a goal that had ended is summarized again only once its
    goal changed: a table redrawn twice a second summarizes the goals still going."""
    entries = batch_goals(store, batch_id)
    versions = store.goal_versions([entry.goal_id for entry in entries if entry.goal_id]) if ended is not None \
        else {}
    rows = []
    for entry in entries:
        key = (entry.goal_id, versions.get(entry.goal_id) if entry.goal_id else None, entry.crashed)
        kept = ended.get(entry.name) if ended is not None else None
        row = kept[1] if kept is not None and kept[0] == key else _row(store, entry)
        if ended is not None and row.status not in UNENDED:
            ended[entry.name] = (key, row)
        elif ended is not None:
            ended.pop(entry.name, None)  # going again (resumed)
        rows.append(row)
    return rows


def batch_statuses(store: Store, batch_id: str) -> list[tuple[str, str]]:
    """Each goal's name and its status line (`status_text`), in the order given, from the goals' states alone:
    what a batch's progress lines poll twice a second, for a fraction of `batch_rows`' cost."""
    entries = batch_progress(store, batch_id)
    states = store.goal_states([goal_id for _, goal_id, _ in entries if goal_id is not None])
    shown = []
    for name, goal_id, crashed in entries:
        state = states.get(goal_id) if goal_id is not None else None
        status = CRASHED if crashed is not None else state.status if state is not None else WAITING
        shown.append((name, status_text(status, state.reason.value if state else None, crashed)))
    return shown


def status_text(status: str, reason: str | None, error: str | None) -> str:
    """A batch goal's status as its row and its progress line show it: the error of a crash, the reason of an
    end other than achieved."""
    if error:
        return f"{status}: {error}"
    return status if reason is None or status in ("pursuing", "achieved") else f"{status} ({reason})"


def _row(store: Store, entry: BatchGoal) -> BatchRow:
    base = {"name": entry.name, "file": entry.file, "worktree": entry.worktree, "goal_id": entry.goal_id}
    if entry.goal_id is None:
        status = CRASHED if entry.crashed is not None else WAITING
        return BatchRow(**base, status=status, error=entry.crashed, checks_total=len(entry.contract.checks),
                        verified=entry.contract.verified)
    summary = summarize(store, store.get_goal_by_id(entry.goal_id))
    return BatchRow(**base, status=CRASHED if entry.crashed is not None else summary.status,
                    reason=summary.reason, error=entry.crashed, verified=summary.verified,
                    checks_passing=summary.checks_passing, checks_total=summary.checks_total,
                    tokens=summary.tokens_used, usd=summary.usd_used, elapsed_s=summary.elapsed_s,
                    turns=summary.turns, running=summary.runner is not None)


def batch_exit_code(rows: Sequence[BatchRow]) -> int:
    """The worst outcome over the goals, as `gk exec` maps each (0 achieved, 1 unmet, 2 budget_limited,
    3 paused); a goal still pursuing or not started counts as paused (it needs a resume), a crashed one 4."""
    return max((CRASHED_EXIT if row.status == CRASHED else _EXIT_CODES.get(row.status, exit_code("paused"))
                for row in rows), default=0)


_EXIT_CODES = {status: exit_code(status) for status in ("achieved", "unmet", "budget_limited", "paused")}


# ---------------------------------------------------------------- the batch views (TUI, dashboard)

#: Statuses of a goal that has not stopped: it runs, or waits for a slot.
UNENDED = frozenset({WAITING, "pursuing"})


@dataclass(frozen=True)
class BatchTotals:
    """A batch's rows summed up, as its views show them against the caps: the goals by status, how many
    ended, the tokens and dollars over every goal, and the batch's running time (what the time cap reads)."""

    goals: int
    ended: int
    tokens: int
    usd: float
    elapsed_s: float
    counts: dict[str, int] = field(default_factory=dict)


def batch_totals(batch: Batch, rows: Sequence[BatchRow]) -> BatchTotals:
    return BatchTotals(len(rows), sum(row.status not in UNENDED for row in rows), sum(row.tokens for row in rows),
                       sum(row.usd for row in rows), batch.elapsed_s, dict(Counter(row.status for row in rows)))


def all_batches(store: Store) -> list[Batch]:
    """Every batch in the store, newest first."""
    return list_batches(store)


def find_batch(store: Store, batch_id: str, hint: str | None = None) -> Batch:
    """The batch `batch_id`, or BatchNotFoundError (with the face's own `hint`, when given)."""
    try:
        return get_batch(store, batch_id)
    except BatchNotFoundError as error:
        raise BatchNotFoundError(error.message, hint or error.hint) from None


def latest_batch_of(store: Store, cwd: Path) -> Batch:
    """The newest batch of the repository of `cwd`, or BatchNotFoundError."""
    repository = service.repository_of(cwd)
    try:
        return latest_batch(store, str(repository))
    except BatchNotFoundError:
        raise BatchNotFoundError(f"the repository {repository} has no batch yet",
                                 "start one with gk batch FILE...|DIR, or name a batch by its id") from None
