"""Drives one goal: baseline, then turns and check runs as `decide` directs, until the goal stops.

The runner is where effects happen (model requests, tool runs, store writes); `decide` chooses them.
Every decision's events and the new state are committed in one transaction before acting on them
(run/goal_run.py). What comes before the first turn is run/prepare.py, a turn run/turn.py, a check run
run/checking.py. The runner holds the goal's lease, keeps its heartbeat and routes Ctrl-C and SIGTERM.

With a gate (goal_run.Gate) a run is one step: it ends before the effect after the allowed ones, held events
flushed and the lease released, and says which effect comes next (the Temporal engine, run/temporal/).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from goalkeeper.core.decide import begin
from goalkeeper.core.lifecycle import Status
from goalkeeper.core.outcomes import Action, RunChecks, StartTurn, Stop
from goalkeeper.errors import GoalkeeperError, LeaseHeldError
from goalkeeper.models.base import Model
from goalkeeper.run.checking import verify
from goalkeeper.run.goal_run import Effect, GoalGone, GoalRun, StepDone
from goalkeeper.run.hooks import run_queued_hooks
from goalkeeper.run.prepare import baseline, prepare, start_mcp, stop_mcp
from goalkeeper.run.turn import run_turn
from goalkeeper.store import EventRecord, Goal, Store
from goalkeeper.tools.registry import Approver


@dataclass(frozen=True)
class RunResult:
    """How a run ended. `status` is None when the goal was cleared while running."""

    goal_id: str
    status: Status | None
    reason: str
    next: Effect | None = None
    """The effect a gated run stopped before (the goal goes on); None when the goal stopped."""


class Runner:
    """One goal, one process, one lease.

    `on_event` sees every committed event; `on_text` the model's text as it streams. With an `approver` a
    person answers the commands the rules ask about (else they are denied: the run is headless).
    `handle_signals=False` leaves Ctrl-C and SIGTERM to the caller (a TUI owns its keys).
    """

    def __init__(self, store: Store, goal: Goal, model: Model, workspace: Path,
                 on_event: Callable[[EventRecord], None] | None = None, *,
                 on_text: Callable[[str], None] | None = None, approver: Approver | None = None,
                 handle_signals: bool = True) -> None:
        self.goal_run = GoalRun.open(store, goal, model, workspace, on_event=on_event, on_text=on_text,
                                     approver=approver)
        self.handle_signals = handle_signals

    @classmethod
    def around(cls, goal_run: GoalRun) -> Runner:
        """A runner for a run already open (kept between the Temporal engine's steps); signals are the caller's."""
        runner = cls.__new__(cls)
        runner.goal_run, runner.handle_signals = goal_run, False
        return runner

    @property
    def on_event(self) -> Callable[[EventRecord], None] | None:
        """Sees every committed event (a UI may set it after the runner is made)."""
        return self.goal_run.on_event

    @on_event.setter
    def on_event(self, on_event: Callable[[EventRecord], None] | None) -> None:
        self.goal_run.on_event = on_event

    async def run(self) -> RunResult:
        """Drive the goal until it stops; Ctrl-C / SIGTERM pause it at the next boundary."""
        run = self.goal_run
        run.store.acquire_lease(run.goal.goal_id)
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            with _signals_call(self.interrupt) if self.handle_signals else contextlib.nullcontext():
                action = await self._start()
                await run_queued_hooks(run)  # post_turn and status_change hooks, between the steps
                while isinstance(action, StartTurn | RunChecks):
                    if isinstance(action, RunChecks):
                        action = await verify(run)
                    else:
                        await start_mcp(run)  # before the turn's first request, which offers their tools
                        action = await run_turn(run)
                    await run_queued_hooks(run)
            return RunResult(run.goal.goal_id, run.state.status, run.state.reason.value)
        except StepDone as step:
            return RunResult(run.goal.goal_id, run.state.status, run.state.reason.value, step.effect)
        except GoalGone as gone:
            return RunResult(run.goal.goal_id, None, gone.message)
        finally:
            if not run.lease_lost:  # the goal is another runner's now: it marks what we left unfinished
                with contextlib.suppress(GoalkeeperError):
                    run.flush()  # however the run ends (a UI cancelling it, say), what it did stays in the store
            heartbeat.cancel()
            await stop_mcp(run)
            with contextlib.suppress(GoalkeeperError):
                run.store.release_lease(run.goal.goal_id)
            await run.model.aclose()

    async def _start(self) -> Action:
        """Apply queued controls, prepare the run once, then pick up wherever the store says we were."""
        run = self.goal_run
        if isinstance(control := run.poll_controls(), Stop):
            return control  # a cap's wrap-up turn is open in the facts: it is picked up below, after prepare
        if run.state.status != "pursuing":
            return Stop(run.state.status, run.state.reason)
        if not run.prepared:
            await prepare(run)
        elif run.facts.keep_green is None:
            await baseline(run)  # prepared by an earlier step that the gate stopped before the baseline's run
        turn = run.facts.turn
        if turn.pending_checks:
            return RunChecks(turn.pending_checks)
        if not turn.ended:
            return StartTurn(turn.kind)
        return run.commit(begin(run.state)).action

    async def _heartbeat(self) -> None:
        run = self.goal_run
        while True:
            await asyncio.sleep(run.settings.run.heartbeat_s)
            try:
                run.store.heartbeat(run.goal.goal_id)
            except LeaseHeldError:
                run.lease_lost = True  # acted on at the next boundary
                return

    def interrupt(self) -> None:
        """Pause (what Ctrl-C does): a running tool call is cut short; safe to call from the runner's event loop."""
        self.goal_run.interrupted = True  # honoured within calls.WATCH_S while a tool runs, else at the next boundary


@contextlib.contextmanager
def _signals_call(handler: Callable[[], None]) -> Iterator[None]:
    """Route Ctrl-C and SIGTERM to `handler` while the block runs (only possible in the main thread)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, handler)
    try:
        yield
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
