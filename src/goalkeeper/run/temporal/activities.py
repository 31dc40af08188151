"""The Temporal engine's activities: one effect of a goal's runner each, on the worker that holds its workspace.

Every activity opens the goal from the store and runs the same runner as `gk run`, with a gate that lets one
effect happen (a model request, a tool call, a check run, a checkpoint commit) and ends the run before the
next, held events flushed and the lease released (run/goal_run.Gate). It answers with the next effect's kind,
or the stop. `claim` runs on the shared queue: it clones the goal's remote into this worker's folder (or takes
the goal over from the last checkpoint pushed there) and prepares the run, and it names this worker's own
queue, where every later step of the goal runs. A step that ran but never reported back left an intent in the
store; the next runner answers it as interrupted (run/turn.py), so nothing is applied twice.

A worker keeps each goal's run open between steps while the store has nothing newer than it wrote (else it
opens the goal again), so a step does not replay the whole goal. After each step the goal branch is pushed
when its head moved; when the goal stops, its report is pushed too (workspace/remote.py).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from goalkeeper.errors import GoalNotFoundError
from goalkeeper.events import EngineStartedEvent, GoalBranchEvent, ReportPushedEvent
from goalkeeper.models.base import Model
from goalkeeper.models.factory import open_model
from goalkeeper.run.engine import settle_model
from goalkeeper.run.goal_run import Gate, GoalRun
from goalkeeper.run.runner import Runner, RunResult
from goalkeeper.run.temporal.shapes import StepOutput
from goalkeeper.store import Goal, Store
from goalkeeper.workspace import remote
from goalkeeper.workspace.git import GoalBranch
from goalkeeper.workspace.goal import branch_of

#: How often a running step tells Temporal it is alive (its heartbeat timeout is a few of these).
HEARTBEAT_S = 1.0

#: Why a step cannot run here: the workflow claims the goal again on the shared queue.
NOT_HERE = "NotHere"
#: This worker holds `--max-goals` goals already: the claim is retried, here or on another worker.
FULL = "WorkerFull"

ReportFiles = Callable[[Store, Goal], dict[str, str]]
"""The report of a stopped goal as files (name → text), rendered by the faces' report (goals/report.py)."""


@dataclass
class _Held:
    run: GoalRun
    seq: int
    """The store's last seq for the goal's thread after the step: anything newer means open it again."""
    pushed: str | None
    """The goal branch's head as last pushed."""


@dataclass
class Steps:
    """The activities of one worker process, and the goals it holds open between steps."""

    store: Store
    workspaces: Path
    own_queue: str
    max_goals: int
    report_files: ReportFiles
    held: dict[str, _Held] = field(default_factory=dict)
    claimed: set[str] = field(default_factory=set)
    """Goals whose workspace this worker holds and that have not stopped: `--max-goals` bounds them."""

    def activities(self) -> list[Callable[..., Awaitable[StepOutput]]]:
        """The activities to register: `claim` on both queues, the effects on this worker's own."""
        return [self.claim, self.model_request, self.tool_call, self.run_checks, self.checkpoint]

    @activity.defn(name="claim")
    async def claim(self, goal_id: str) -> StepOutput:
        """Make (or find) the goal's workspace here and prepare its run; stops before its first effect."""
        # Only a goal new to this worker counts against --max-goals: one it holds goes on here.
        new = activity.info().task_queue != self.own_queue and goal_id not in self.claimed
        if new and len(self.claimed) >= self.max_goals:
            raise ApplicationError(f"this worker holds {self.max_goals} goals already", type=FULL)
        goal = self._goal(goal_id)
        if goal is None:
            return StepOutput(None, None, "the goal was cleared")
        workspace = await asyncio.to_thread(self._workspace, goal)
        self.claimed.add(goal_id)
        return await self._step(goal, workspace, allowed=0)

    @activity.defn(name="model_request")
    async def model_request(self, goal_id: str) -> StepOutput:
        """One model request (and whatever the runner decides before the next effect)."""
        return await self._effect(goal_id)

    @activity.defn(name="tool_call")
    async def tool_call(self, goal_id: str) -> StepOutput:
        """One tool call."""
        return await self._effect(goal_id)

    @activity.defn(name="run_checks")
    async def run_checks(self, goal_id: str) -> StepOutput:
        """One run of the checks (the baseline, or a completion's)."""
        return await self._effect(goal_id)

    @activity.defn(name="checkpoint")
    async def checkpoint(self, goal_id: str) -> StepOutput:
        """One turn's checkpoint commit (pushed to the remote after it)."""
        return await self._effect(goal_id)

    async def _effect(self, goal_id: str) -> StepOutput:
        goal = self._goal(goal_id)
        if goal is None:
            return StepOutput(None, None, "the goal was cleared")
        workspace = self.workspaces / goal_id
        if not workspace.exists():
            raise ApplicationError(f"goal {goal_id} has no workspace on this worker", type=NOT_HERE,
                                   non_retryable=True)
        self.claimed.add(goal_id)  # a resumed goal goes on where its workspace is
        return await self._step(goal, workspace, allowed=1)

    def _goal(self, goal_id: str) -> Goal | None:
        try:
            goal = self.store.get_goal_by_id(goal_id)
        except GoalNotFoundError:
            return None
        return goal if goal.standing == "current" else None

    def _workspace(self, goal: Goal) -> Path:
        """The goal's workspace here: kept when this worker's copy is as far as the remote's goal branch (it may
        hold an interrupted turn's edits), cloned afresh when there is none or another worker has gone further."""
        workspace = self.workspaces / goal.goal_id
        branch = branch_of(self.store.events(goal.thread_id, goal_id=goal.goal_id, kinds=[GoalBranchEvent]))
        if workspace.exists() and goal.goal_id not in self.held and branch is not None:
            pushed = remote.pushed_head(engine_of(self.store, goal).remote, branch.name)
            if pushed is not None and pushed != remote.branch_head(workspace, branch.name):
                shutil.rmtree(workspace)
        if not workspace.exists():
            self._clone(goal, workspace, branch)
        return workspace

    def _clone(self, goal: Goal, workspace: Path, branch: GoalBranch | None) -> None:
        engine = engine_of(self.store, goal)
        partial = workspace.with_name(workspace.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        remote.clone(engine.remote, partial, engine.ref, branch.name if branch else None)
        partial.rename(workspace)  # only a whole clone is ever found again

    async def _step(self, goal: Goal, workspace: Path, allowed: int) -> StepOutput:
        goal, chosen = settle_model(self.store, goal, workspace, None)
        async with open_model(chosen) as built:
            held = self._open(goal, workspace, built)
            run = held.run
            run.model, run.gate = built, Gate(allowed)
            run.clock = (time.monotonic(), run.state.spent.time_s)  # time between steps is not the goal's
            result = await _heartbeating(Runner.around(run).run())
        held.seq = self.store.last_seq(goal.thread_id)
        await asyncio.to_thread(self._push, goal, held)
        if result.next is None:
            self.held.pop(goal.goal_id, None)
            self.claimed.discard(goal.goal_id)
            if result.status in ("achieved", "unmet", "budget_limited"):
                await asyncio.to_thread(self._land_report, goal, held)
        return self._output(goal, result)

    def _open(self, goal: Goal, workspace: Path, model: Model) -> _Held:
        """The goal's run kept from the last step when nothing was written since, else opened again."""
        held = self.held.get(goal.goal_id)
        if held is not None and held.run.version == goal.version and held.seq == self.store.last_seq(goal.thread_id):
            return held
        run = GoalRun.open(self.store, goal, model, workspace)
        pushed = held.pushed if held is not None else _head(run, workspace)
        self.held[goal.goal_id] = held = _Held(run, 0, pushed)
        return held

    def _push(self, goal: Goal, held: _Held) -> None:
        branch = held.run.facts.branch
        head = _head(held.run, held.run.workspace)
        if branch is None or head is None or head == held.pushed:
            return
        remote.push_branch(held.run.workspace, engine_of(self.store, goal).remote, branch.name)
        held.pushed = head

    def _land_report(self, goal: Goal, held: _Held) -> None:
        branch = held.run.facts.branch
        if branch is None:
            return
        stopped = self.store.get_goal_by_id(goal.goal_id)
        engine = engine_of(self.store, goal)
        ref, commit = remote.push_report(held.run.workspace, engine.remote, goal.goal_id, branch.name,
                                         self.report_files(self.store, stopped))
        self.store.append_events(goal.thread_id, [ReportPushedEvent(remote=engine.remote, ref=ref, commit=commit,
                                                                    status=stopped.state.status)],
                                 goal_id=goal.goal_id)

    def _output(self, goal: Goal, result: RunResult) -> StepOutput:
        held = self.held.get(goal.goal_id)
        turns = held.run.state.spent.turns if held is not None else 0
        if result.status is None:
            # Cleared, replaced, or taken by another runner: the store says which.
            current = self._goal(goal.goal_id)
            status = current.state.status if current is not None else None
            return StepOutput(None, status, result.reason, turns, self.own_queue)
        return StepOutput(result.next, result.status, result.reason, turns, self.own_queue)


def engine_of(store: Store, goal: Goal) -> EngineStartedEvent:
    """The goal's engine facts (recorded when it was submitted)."""
    for record in store.events(goal.thread_id, goal_id=goal.goal_id, kinds=[EngineStartedEvent]):
        if isinstance(record.event, EngineStartedEvent):
            return record.event
    raise ApplicationError(f"goal {goal.goal_id} was not submitted to Temporal (no engine_started event)",
                           non_retryable=True)


async def _heartbeating(running: Awaitable[RunResult]) -> RunResult:
    """Await the run, telling Temporal every HEARTBEAT_S that the worker is alive."""
    task = asyncio.ensure_future(running)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_S)
            if done:
                return task.result()
            activity.heartbeat()
    finally:
        if not task.done():  # the activity was cancelled: the runner's own cleanup flushes what it did
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _head(run: GoalRun, workspace: Path) -> str | None:
    branch = run.facts.branch
    return remote.branch_head(workspace, branch.name) if branch is not None else None
