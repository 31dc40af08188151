"""One tool call as the runner makes it: in the goal's tool context, watched for anything that must cut it
short (a pause, Ctrl-C, SIGTERM, a clear, a lost lease, the time limit), its approvals and full output stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from typing import Literal, TypeVar

from goalkeeper.context.replay import goal_view
from goalkeeper.core.decide import time_deadline
from goalkeeper.models.base import ToolCall
from goalkeeper.run.goal_run import GoalRun
from goalkeeper.tools.base import ToolContext, ToolResult
from goalkeeper.tools.registry import ToolRegistry

T = TypeVar("T")

#: How often a running tool call looks at signals and the clock, and how often at the store's control requests.
WATCH_S, STORE_POLL_S = 0.1, 0.5

#: How a tool result says its call was cut short; the same word a crash's unfinished intent gets.
INTERRUPTED = "interrupted"

Cut = Literal["signal", "lease", "time", "pause", "clear"]
"""What cut a running call short: Ctrl-C or SIGTERM, a lost lease, the time budget, a person's pause or clear."""

CUT_WHY: dict[Cut, str] = {
    "signal": "Ctrl-C or SIGTERM reached the harness",
    "lease": "another runner took over the goal",
    "time": "the goal's time budget ran out",
    "pause": "a person paused the goal",
    "clear": "a person cleared the goal",
}
"""Each cut in the words a tool result gives it."""


async def call_tool(run: GoalRun, call: ToolCall, tools: ToolRegistry) -> ToolResult:
    """Run one tool call of `tools` in the workspace, cut short by a pause, Ctrl-C, SIGTERM, a clear or the
    time limit; when its output was cut, the full text goes to the store under the id the cut's marker
    names (`blob_id_of`), so `read_output` can page through it."""
    task = asyncio.create_task(tools.execute(call, tool_context(run)))
    cut = await watch(run, task)
    if cut is not None:
        task.cancel()  # run_command kills the call's whole process group when cancelled
        with contextlib.suppress(asyncio.CancelledError):
            await task
        why = CUT_WHY[cut]
        return ToolResult(f"{INTERRUPTED}: {why} while this call ran, so it was stopped and its processes "
                          "killed; it may have partly run. Inspect the workspace before repeating it.",
                          ok=False, interrupted=why)
    return settle(run, call, task.result())


def settle(run: GoalRun, call: ToolCall, result: ToolResult) -> ToolResult:
    """A finished call's result as the turn records it: its approval's events held for the result's commit, its
    uncut output in the store (the result keeps the blob's id)."""
    if result.approval is not None:
        run.record(result.approval.events(call.id, run.goal.goal_id), hold=True)  # written with the result
    if result.full_output is not None:
        blob = run.store.put_blob(result.full_output)
        result = replace(result, full_output=None, blob_id=blob)
    return result


def tool_context(run: GoalRun) -> ToolContext:
    """Where and how the goal's tools run, with the `get_goal` view as of now."""
    from goalkeeper.run.subagents import spawner_of  # it builds on this module

    settings = run.settings.run
    context = ToolContext(run.workspace, settings.shell_timeout_s, output_token_limit=settings.tool_output_token_limit,
                          counter=run.conversation.counter, read_blob=run.store.get_blob, env=run.env,
                          goal_view=goal_view(run.contract, run.state, run.facts), sandbox=run.sandbox,
                          headless=run.approver is None)
    return replace(context, spawn=spawner_of(run, context, 0, list(run.tools.tools)))


async def watch(run: GoalRun, task: asyncio.Task[T]) -> Cut | None:
    """Wait for `task`; say what must cut it short if something asks for that first. Signals and the
    clock are looked at every WATCH_S, the store's control requests every STORE_POLL_S."""
    next_poll = time.monotonic() + STORE_POLL_S
    while True:
        done, _ = await asyncio.wait({task}, timeout=WATCH_S)
        if done:
            return None
        if run.interrupted:
            return "signal"
        if run.lease_lost:
            return "lease"
        deadline = time_deadline(run.state)
        if deadline is not None and run.elapsed() >= deadline:
            return "time"
        if time.monotonic() >= next_poll:
            next_poll = time.monotonic() + STORE_POLL_S
            if (asked := _stop_requested(run)) is not None:
                return asked


def _stop_requested(run: GoalRun) -> Cut | None:
    """A pause or clear waiting in the store, a clear first (a budget raise or a resume never cuts a call short)."""
    actions = {request.action for _, request in run.controls()}
    return "clear" if "clear" in actions else "pause" if "pause" in actions else None
