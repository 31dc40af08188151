"""One goal's workflow: run the step the last one named, on the worker that holds the workspace, until it stops.

Deterministic and free of I/O: every decision about the goal is the runner's, in the activities
(activities.py); the workflow only routes. The first step, `claim`, runs on the shared queue and names the
queue of the worker that made the workspace; every later step runs there. When a step on that queue times
out (no heartbeat, or no worker picks it up: the worker died), the goal is claimed again on the shared queue
and another worker re-creates the workspace from the last checkpoint pushed to the remote.

A paused goal's workflow waits for a `wake` signal (faces send it after writing a control request to the
store, goals/service.py) and then asks its worker where the goal stands. `status` is a query. Every
`continue_every` steps the workflow continues as new, so its history stays bounded.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from goalkeeper.run.temporal.shapes import GoalArgs, StepOutput

#: The activity that performs each effect the runner names.
ACTIVITY = {"model": "model_request", "tool": "tool_call", "checks": "run_checks", "checkpoint": "checkpoint"}

#: Statuses that end the workflow (a paused goal waits for `wake`).
ENDED = ("achieved", "unmet", "budget_limited")

#: Errors after which the goal is claimed again on the shared queue.
NOT_HERE = "NotHere"


@workflow.defn(name="GoalWorkflow")
class GoalWorkflow:
    """Drives one goal's steps; see the module's docstring."""

    def __init__(self) -> None:
        self.last: StepOutput | None = None
        self.wakes = 0
        self.steps = 0

    @workflow.run
    async def run(self, args: GoalArgs) -> StepOutput:
        """Step until the goal stops, is cleared, or the workflow continues as new."""
        queue, following = args.worker_queue, args.next
        while True:
            if self.steps >= args.continue_every:
                workflow.continue_as_new(replace(args, worker_queue=queue, next=following, runs=args.runs + 1))
            self.steps += 1
            out = await self._step(args, queue, following)
            if out is None:  # the worker is gone, or never held the workspace
                queue, following = None, None
                continue
            self.last, queue, following = out, out.task_queue or queue, out.next
            if out.status is None or out.status in ENDED:
                return out
            if out.next is None and out.status == "paused":
                await self._woken()
            # Paused then woken, or pursuing with no next effect (another runner had it): ask where it stands.

    async def _woken(self) -> None:
        seen = self.wakes
        await workflow.wait_condition(lambda: self.wakes > seen)

    async def _step(self, args: GoalArgs, queue: str | None, following: str | None) -> StepOutput | None:
        """Run one activity: `claim` on the shared queue with no worker, else the next effect (or a `claim`
        that finds where the goal stands) on the worker's queue. None when that worker cannot be reached."""
        if queue is None:
            claimed: StepOutput = await workflow.execute_activity(
                "claim", args.goal_id, task_queue=args.shared_queue, result_type=StepOutput,
                start_to_close_timeout=timedelta(seconds=args.step_timeout_s),
                heartbeat_timeout=timedelta(seconds=args.takeover_s),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=0.5), backoff_coefficient=1.5,
                                         maximum_interval=timedelta(seconds=5)))
            return claimed
        name = ACTIVITY.get(following or "", "claim")
        try:
            out: StepOutput = await workflow.execute_activity(
                name, args.goal_id, task_queue=queue, result_type=StepOutput,
                schedule_to_start_timeout=timedelta(seconds=args.takeover_s),
                start_to_close_timeout=timedelta(seconds=args.step_timeout_s),
                heartbeat_timeout=timedelta(seconds=args.takeover_s),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=0.5), maximum_attempts=3,
                                         non_retryable_error_types=[NOT_HERE]))
            return out
        except ActivityError as error:
            cause = error.cause
            if isinstance(cause, TimeoutError) or (isinstance(cause, ApplicationError) and cause.type == NOT_HERE):
                return None
            raise

    @workflow.signal
    def wake(self) -> None:
        """A control request was written to the store (pause, resume, clear, budget): look again."""
        self.wakes += 1

    @workflow.query
    def status(self) -> dict[str, object]:
        """Where the goal stands as the workflow last heard: status, reason, next effect, worker queue, steps."""
        last = self.last
        return {"status": last.status if last else "pursuing", "reason": last.reason if last else "",
                "next": last.next if last else "claim", "task_queue": last.task_queue if last else "",
                "turns": last.turns if last else 0, "steps": self.steps}
