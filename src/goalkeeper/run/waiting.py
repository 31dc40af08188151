"""A `wait` call as the runner makes it: `until` probed every interval until it exits 0 or the deadline passes,
with no model request meanwhile, and durable: `wait_started` is committed before the first probe and
`wait_ended` with the result, so a run that restarts after a crash carries on the same wait, deadline and all.

The probes are not events (a wait of hours would flood the log): only the start, the end, its reason and the
probe count are. A pause, a clear, Ctrl-C or the time budget cut the wait short like any tool call (calls.watch).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

from goalkeeper.core.decide import time_deadline
from goalkeeper.events import WaitEnd, WaitEndedEvent, WaitStartedEvent
from goalkeeper.models.base import ToolCall
from goalkeeper.run.calls import CUT_WHY, INTERRUPTED, Cut, settle, tool_context, watch
from goalkeeper.run.goal_run import GoalRun
from goalkeeper.tools.base import CommandApproval, Tool, ToolResult
from goalkeeper.tools.registry import ToolRegistry
from goalkeeper.tools.replies import refusal
from goalkeeper.tools.wait import WaitArgs, plan_wait, probe_timeout, wait_result

ENDED_BY: dict[Cut, WaitEnd] = {"signal": "interrupted", "time": "time_budget", "pause": "paused",
                                "clear": "cleared"}
"""The end a cut gives a wait (a lost lease gives none: the runner that took over carries the wait on)."""


@dataclass
class _Probing:
    """What the probes found so far: read when the wait is cut short as much as when it ends."""

    probes: int = 0
    """Probes that ran to their end."""
    approval: CommandApproval | None = None
    """How the approval rules judged `until` at the first probe of this run; later probes are not judged again
    (a person asked once is not asked every interval)."""
    last: ToolResult | None = None


CANCEL_GRACE_S = 10.0
"""How long a cancelled probe may take to unwind (its process group is killed at once)."""


async def wait_call(run: GoalRun, call: ToolCall, tools: ToolRegistry,
                    started: WaitStartedEvent | None = None) -> ToolResult:
    """Carry out a `wait` call: a new one (its intent committed), or `started`, the one a crash left open."""
    parsed = tools.parse(call)
    if isinstance(parsed, ToolResult):
        return parsed
    tool, args = parsed
    assert isinstance(args, WaitArgs)
    if not args.until.strip():
        return refusal("argument 'until' is empty; give a bash command that exits 0 when the wait is over")
    if started is None:
        deadline = time_deadline(run.state)
        started = plan_wait(args, call.id, now=time.time(),
                            time_left_s=None if deadline is None else max(deadline - run.elapsed(), 0.0),
                            min_interval_s=run.settings.run.wait_min_interval_s)
        run.record([started])  # committed before the first probe: a restart resumes this wait, not the model
    probing = _Probing()
    task = asyncio.create_task(_probe_until(run, tools, tool, args, started, probing))
    try:
        cut = await watch(run, task)
    finally:
        if not task.done():  # cut short, or this run itself was cancelled: the probe's process group is killed
            task.cancel()
            # Bounded: a probe that does not unwind in time is left cancelled rather than hanging the goal.
            await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
    if cut == "lease":
        why = CUT_WHY[cut]
        return ToolResult(f"{INTERRUPTED}: {why} during the wait", ok=False, interrupted=why)
    reason = task.result() if cut is None else ENDED_BY[cut]
    last = probing.last
    ended = WaitEndedEvent(call_id=call.id, reason=reason, probes=probing.probes,
                           exit_code=_exit_code(last) if reason != "refused" else None,
                           waited_s=max(time.time() - started.started_at, 0.0))
    run.record([ended], hold=True)  # written with the result
    return settle(run, call, replace(wait_result(started, ended, last), approval=probing.approval))


async def _probe_until(run: GoalRun, tools: ToolRegistry, tool: Tool[WaitArgs], args: WaitArgs,
                       started: WaitStartedEvent, probing: _Probing) -> WaitEnd:
    """Probe until `until` exits 0 or the deadline passes; the first probe is judged by the approval rules."""
    while True:
        context = tool_context(run)
        context = replace(context, default_timeout_s=probe_timeout(context.default_timeout_s, started.deadline,
                                                                   time.time()))
        if probing.approval is None:
            result = await tools.run(tool, args, context)
            probing.approval = result.approval
        else:
            result = await tool.run(args, context)
        probing.last = result
        if _refused(result):
            return "refused"
        probing.probes += 1
        if result.ok:
            return "done"
        left = started.deadline - time.time()
        if left <= 0:
            return "timeout"
        await asyncio.sleep(min(started.interval_s, left))


def _refused(result: ToolResult) -> bool:
    """The probe never ran: the approval rules denied `until`, or the sandbox could not start."""
    denied = result.approval is not None and result.approval.action == "deny"
    return denied or result.facts.get("sandbox_error") is True


def _exit_code(result: ToolResult | None) -> int | None:
    code = result.facts.get("exit_code") if result is not None else None
    return code if isinstance(code, int) else None
