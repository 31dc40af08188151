"""The local fleet: the goals of a batch run in this process, at most `parallel` at once, each in a thread of
its own with its own event loop, its own store connection and its own worktree.

`run_fleet` starts goals as slots free up, watches the batch's global cap (the sum of the goals' spending, and
the batch's running time) and, when it is reached, asks every goal still pursuing to wrap up through a `cap`
control request (decide's BudgetCapped), so each stops `budget_limited` after its wrap-up turn; goals not yet
started then are not started. A goal whose runner raises is marked crashed and the others go on. `stop()`
(Ctrl-C, SIGTERM) pauses every running goal at its next boundary through its runner's `interrupt`.

`Fleet.start` starts (or carries on) one goal and returns when it has ended: `start_local` runs it in the
goal's thread; another engine's start (the Temporal engine's, goals/batch.py) is handed in instead. Either way
the fleet bounds how many are running, watches the cap, and a goal's failure stays its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from goalkeeper.core.state import CapDimension, ControlRequest, request_event
from goalkeeper.errors import GoalkeeperError
from goalkeeper.models.retry import RateGate, RateGates
from goalkeeper.run.engine import drive_goal, settle_model
from goalkeeper.run.runner import Runner, RunResult
from goalkeeper.spec.settings import ModelSettings
from goalkeeper.store import EventRecord, Goal, Store
from goalkeeper.store.batches import Batch, BatchGoal, add_elapsed, set_crashed, set_goal_id

#: How often the fleet adds to the batch's clock, checks its cap and calls the live table's tick; a goal that ends
#: wakes it at once, so the next goal starts in that slot without waiting for the tick.
TICK_S = 0.5
STARTING = max(2, os.cpu_count() or 1)
"""Goals a batch starts at once (see Fleet.starting): one a core, at least two. Measured on 2 cores (100 goals at
--parallel 50): 1 at a time 23.7-24.4 s, 2: 22.2-22.5 s, 3: 20.5-23.8 s, 4: 21.5-24.7 s, 8: 23.7-25.3 s; more
starts at once cost more CPU a goal, not less time."""

#: How long `stop` waits for the running goals to reach a boundary and pause.
STOP_WAIT_S = 60.0

Prepare = Callable[[Store, BatchGoal], tuple[Goal, Path]]
"""Makes a batch goal ready to run: its worktree and its goal (set once, at its first start), in a store
connection of the goal's own thread (the goal service does it: goals/batch.py)."""

OpenStore = Callable[[], Store]

Start = Callable[["Fleet", "Slot", Store], RunResult]
"""Starts (or carries on) one goal of the batch, in the goal's own thread and store connection, and returns
once it has ended (or the fleet was stopped); `start_local` by default."""


@dataclass
class Slot:
    """One goal of the batch as the fleet drives it."""

    entry: BatchGoal
    goal_id: str | None = None
    state: str = "waiting"
    """waiting, running, done (the store holds its status), crashed, or not_started (the cap came first)."""
    error: str | None = None
    runner: Runner | None = None
    loop: asyncio.AbstractEventLoop | None = None
    thread: threading.Thread | None = None
    capped: bool = False
    ended: bool = False
    """Its thread has finished the goal (and is about to exit)."""


@dataclass
class Fleet:
    """A batch being run: its slots, what started them, and the cap it watches."""

    batch: Batch
    slots: list[Slot]
    open_store: OpenStore
    prepare: Prepare
    model: ModelSettings | None
    on_event: Callable[[str, EventRecord], None] | None = None
    """Sees every committed event of every goal, with the goal's name (from the goal's own thread)."""
    gates: RateGates = field(default_factory=RateGates)
    start: Start = field(default_factory=lambda: start_local)
    capped: CapDimension | None = None
    stopping: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)
    """Reentrant: `stop` runs in a signal handler, which may interrupt the main thread while it holds the lock."""
    stopped_at: float | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    """Set when a goal's thread ends: the fleet's loop wakes to start the next goal in its slot at once."""
    starting: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(STARTING))
    """Goals being started (worktree, goal, branch, mirror, baseline run) until their first request: the CPU
    work of a start, so a few at a time; started goals wait on their model meanwhile, and the batch's cores stay
    busy rather than every goal of a wave starting together and then all waiting together."""
    on_goal: Callable[[Slot], None] | None = None
    """Told each slot whose goal was just made (or found) and recorded in the batch: a worker process tells the
    batch's (run/workers.py)."""
    on_stop: Callable[[], None] | None = None
    """Called by `stop`: the worker processes are told to pause their goals."""

    def stop(self) -> None:
        """Pause every running goal at its next boundary (what Ctrl-C and SIGTERM do); start no more. A start
        with no runner here (the Temporal engine's) sees `stopping` and returns: its goal goes on elsewhere."""
        with self.lock:
            self.stopping = True
            self.stopped_at = self.stopped_at or time.monotonic()
            running = [slot for slot in self.slots if slot.runner is not None and slot.loop is not None]
        if self.on_stop is not None:
            self.on_stop()
        for slot in running:
            assert slot.runner is not None and slot.loop is not None
            with contextlib.suppress(RuntimeError):  # its loop has just closed: the goal ended anyway
                slot.loop.call_soon_threadsafe(slot.runner.interrupt)

    def running(self) -> list[Slot]:
        return [slot for slot in self.slots if slot.state == "running"]


def run_fleet(fleet: Fleet, on_tick: Callable[[], None] | None = None) -> list[Slot]:
    """Run the batch until every goal has ended, crashed, or was left unstarted (the cap, or `stop`). A goal that
    ends wakes the loop to start the next in its slot at once; the rest (the batch's clock, its cap, `on_tick`)
    runs every TICK_S, and once more at the end."""
    started_at = time.monotonic()
    counted, next_tick = 0.0, started_at
    with fleet.open_store() as store, _signals_stop(fleet):
        while True:
            _reap(fleet)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK_S
                counted = _tick(fleet, store, started_at, counted, on_tick)
            _start_due(fleet)
            if not fleet.running() and not _due(fleet):
                _tick(fleet, store, started_at, counted, on_tick)  # the last: the time, and every goal's end shown
                break
            if fleet.stopped_at is not None and time.monotonic() - fleet.stopped_at > STOP_WAIT_S:
                break  # a goal that does not reach a boundary: its lease goes stale and a resume takes it over
            fleet.ended.wait(max(0.0, next_tick - time.monotonic()))
            fleet.ended.clear()
    for slot in fleet.slots:
        if slot.state == "waiting":
            slot.state = "not_started"
    return fleet.slots


def _tick(fleet: Fleet, store: Store, started_at: float, counted: float,
          on_tick: Callable[[], None] | None) -> float:
    """Add the time since the last tick to the batch's, apply its cap once reached, and call `on_tick`; returns
    the running time counted so far."""
    elapsed = time.monotonic() - started_at
    add_elapsed(store, fleet.batch.batch_id, elapsed - counted)
    if fleet.capped is None and (dimension := _cap_reached(fleet, store, elapsed)) is not None:
        _apply_cap(fleet, store, dimension)
    if on_tick is not None:
        on_tick()
    return elapsed


@contextlib.contextmanager
def _signals_stop(fleet: Fleet) -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the fleet (its goals pause at their next boundary) while the block runs; only
    the main thread can take signals, so elsewhere (a UI's worker) the caller stops it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, lambda *_: fleet.stop()) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _due(fleet: Fleet) -> list[Slot]:
    """The slots to start next, in order, while nothing holds the batch back."""
    if fleet.capped is not None or fleet.stopping:
        return []
    return [slot for slot in fleet.slots if slot.state == "waiting"]


def _start_due(fleet: Fleet) -> None:
    free = fleet.batch.parallel - len(fleet.running())
    for slot in _due(fleet)[:max(0, free)]:
        slot.state = "running"
        slot.thread = threading.Thread(target=_goal_thread, args=(fleet, slot), name=f"goal-{slot.entry.name}",
                                       daemon=True)
        slot.thread.start()


def _reap(fleet: Fleet) -> None:
    for slot in fleet.running():
        if slot.thread is not None and slot.ended:  # set by its thread's last statement, whatever happened
            slot.thread.join()
            slot.state = "crashed" if slot.error is not None else "done"


def _goal_thread(fleet: Fleet, slot: Slot) -> None:
    """One goal, start to end, in this thread; whatever escapes its runner marks it crashed, and only it."""
    try:
        with fleet.open_store() as store:
            try:
                fleet.start(fleet, slot, store)
            except Exception as error:  # the goal's own failure: the batch and its other goals go on
                slot.error = describe(error)
                set_crashed(store, fleet.batch.batch_id, slot.entry.name, slot.error)
    except Exception as error:  # not even its store opened
        slot.error = describe(error)
    finally:
        slot.ended = True
        fleet.ended.set()


def start_local(fleet: Fleet, slot: Slot, store: Store) -> RunResult:
    """Start (or carry on) one goal of the batch in this thread: its own event loop, signals left to the
    fleet, its provider's shared rate gate. The fleet's default `start`."""
    fleet.starting.acquire()
    started = _Once(fleet.starting.release)
    try:
        return _start_local(fleet, slot, store, started)
    finally:
        started()  # a goal that ended (or failed) before its first request


def _start_local(fleet: Fleet, slot: Slot, store: Store, started: _Once) -> RunResult:
    goal, workspace = fleet.prepare(store, slot.entry)
    with fleet.lock:
        slot.goal_id = goal.goal_id
    set_goal_id(store, fleet.batch.batch_id, slot.entry.name, goal.goal_id)
    if fleet.on_goal is not None:
        fleet.on_goal(slot)
    cap_goal(fleet, slot, store)  # the cap came while the goal was being made: it wraps up at once
    goal, chosen = settle_model(store, goal, workspace, fleet.model)
    name = slot.entry.name

    def on_runner(runner: Runner) -> None:
        with fleet.lock:
            slot.runner, slot.loop = runner, asyncio.get_running_loop()
            stopping = fleet.stopping
        if stopping:
            runner.interrupt()  # stopped while it was starting: it pauses at its first boundary

    def on_event(record: EventRecord) -> None:
        if fleet.on_event is not None:
            fleet.on_event(name, record)

    try:
        return asyncio.run(drive_goal(store, goal, workspace, chosen, on_event=on_event, handle_signals=False,
                                      gate=_Started(fleet.gates.gate_for(chosen), started),
                                      on_runner=on_runner))
    finally:
        with fleet.lock:
            slot.runner, slot.loop = None, None


class _Once:
    """`action`, run on the first call only (from whichever thread calls first)."""

    def __init__(self, action: Callable[[], None]) -> None:
        self._action: Callable[[], None] | None = action
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            action, self._action = self._action, None
        if action is not None:
            action()


class _Started:
    """A goal's provider gate that also ends its start: its first request frees a start for another goal."""

    def __init__(self, gate: RateGate, started: _Once) -> None:
        self.gate = gate
        self.started = started

    async def wait(self) -> None:
        self.started()
        await self.gate.wait()

    def hold(self, seconds: float) -> None:
        self.gate.hold(seconds)


def _cap_reached(fleet: Fleet, store: Store, elapsed: float) -> CapDimension | None:
    """The first of the batch's caps that its goals' spending (or its running time) has reached."""
    caps = fleet.batch.caps
    if caps.tokens is None and caps.usd is None and caps.time_s is None:
        return None
    states = store.goal_states([slot.goal_id for slot in fleet.slots if slot.goal_id is not None])
    spent = [state.spent for state in states.values()]
    if caps.tokens is not None and sum(item.tokens for item in spent) >= caps.tokens:
        return "tokens"
    if caps.usd is not None and sum(item.usd for item in spent) >= caps.usd:
        return "usd"
    if caps.time_s is not None and fleet.batch.elapsed_s + elapsed >= caps.time_s:
        return "time"
    return None


def _apply_cap(fleet: Fleet, store: Store, dimension: CapDimension) -> None:
    """Ask every goal still pursuing to wrap up; goals being started are asked by their own thread once they
    have a goal id (the fleet's `start`): one of the two sees both the cap and the id."""
    with fleet.lock:
        fleet.capped = dimension
    for slot in fleet.slots:
        cap_goal(fleet, slot, store)


def cap_goal(fleet: Fleet, slot: Slot, store: Store) -> None:
    """Once per goal, when the cap is reached and the goal pursues: a `cap` control request, which its runner
    applies at its next boundary (or, with none, the next runner that drives it)."""
    with fleet.lock:
        if fleet.capped is None or slot.goal_id is None or slot.capped:
            return
        slot.capped, dimension, goal_id = True, fleet.capped, slot.goal_id
    goal = store.get_goal_by_id(goal_id)
    if goal.state.status == "pursuing":
        store.append_events(goal.thread_id, [request_event(ControlRequest("cap", cap=dimension))],
                            goal_id=goal.goal_id)


def describe(error: BaseException) -> str:
    """What a goal's crash says: a goalkeeper error's own words, else the exception's type and text."""
    if isinstance(error, GoalkeeperError):
        return str(error)
    return f"{type(error).__name__}: {error}"

