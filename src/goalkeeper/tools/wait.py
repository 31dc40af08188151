"""The `wait` tool: its arguments, one probe of its `until` command, the wait's plan and the words of its result.

A call of `wait` is carried out whole by the runner (run/waiting.py): it probes `until` every `interval_s` until
the command exits 0 or the deadline passes, with no model request meanwhile. Here is only what needs no runner:
one probe runs exactly like a `shell` call (the same sandbox, timeout and process-group kill, and the registry
judges `until` by the approval rules as it judges a shell command), and the pure arithmetic of the bounds.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from goalkeeper.core.figures import format_duration
from goalkeeper.events import WaitEnd, WaitEndedEvent, WaitStartedEvent
from goalkeeper.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from goalkeeper.tools.shell import ShellArgs, ShellTool

DEFAULT_INTERVAL_S = 60.0
"""How often `until` is probed when the model names no interval."""
MAX_INTERVAL_S = 3600.0
"""A longer interval is cut to this: a wait should notice within the hour that it is over."""
DEFAULT_TIMEOUT_S = 1800.0
"""How long a wait lasts at most when the model names no timeout."""
MAX_TIMEOUT_S = 86400.0
"""The longest wait, whatever is asked (a goal's remaining time budget cuts it further)."""
MIN_PROBE_TIMEOUT_S = 1.0
"""A probe started just before the deadline still gets this long to answer."""

Seconds = Annotated[float, Field(ge=0)]
"""A duration argument in seconds (a fraction allowed)."""


class WaitArgs(ToolArgs):
    """`wait`'s arguments."""

    until: str
    interval_s: Seconds | None = None
    timeout_s: Seconds | None = None


class WaitTool(Tool[WaitArgs]):
    """Waits for `until` to exit 0; `run` is one probe, the runner repeats it (run/waiting.py)."""

    name = "wait"
    description = ("Wait, spending no tokens, until `until` (a bash command, sandboxed like shell) exits 0: CI "
                   "done, a deploy up. Probed every interval_s (default 60) for at most timeout_s (default 1800, "
                   "cut to the time budget left). Use instead of sleep loops.")
    Args = WaitArgs

    async def run(self, args: WaitArgs, context: ToolContext) -> ToolResult:
        """One probe of `until`, run as `shell` runs a command (its timeout is the context's default)."""
        return await ShellTool().run(ShellArgs(command=args.until), context)


def plan_wait(args: WaitArgs, call_id: str, *, now: float, time_left_s: float | None,
              min_interval_s: float) -> WaitStartedEvent:
    """The wait a call asks for, within the bounds: its interval between `min_interval_s` and MAX_INTERVAL_S, its
    timeout at most MAX_TIMEOUT_S and the goal's remaining time (`time_left_s`, None: no time budget)."""
    notes: list[str] = []
    asked = DEFAULT_INTERVAL_S if args.interval_s is None else args.interval_s
    interval = min(max(asked, min_interval_s), MAX_INTERVAL_S)
    if interval != asked:
        notes.append(f"interval_s {asked:g} was {'raised' if interval > asked else 'cut'} to {interval:g}")
    timeout = DEFAULT_TIMEOUT_S if args.timeout_s is None else args.timeout_s
    if timeout > MAX_TIMEOUT_S:
        notes.append(f"timeout_s {timeout:g} was cut to the maximum, {format_duration(MAX_TIMEOUT_S)}")
        timeout = MAX_TIMEOUT_S
    if time_left_s is not None and timeout > time_left_s:
        notes.append(f"timeout_s {timeout:g} was cut to the goal's remaining time, {format_duration(time_left_s)}")
        timeout = time_left_s
    return WaitStartedEvent(call_id=call_id, until=args.until, interval_s=interval, timeout_s=timeout,
                            started_at=now, deadline=now + timeout, note="; ".join(notes))


def probe_timeout(default_timeout_s: float, deadline: float, now: float) -> float:
    """One probe's timeout: the shell's default, cut so the probe ends about when the wait must."""
    return min(default_timeout_s, max(deadline - now, MIN_PROBE_TIMEOUT_S))


REASONS: dict[WaitEnd, str] = {
    "paused": "a person paused the goal",
    "cleared": "a person cleared the goal",
    "interrupted": "Ctrl-C or SIGTERM reached the harness",
    "time_budget": "the goal's time budget ran out",
}
"""Why a wait was cut short, in words (the other ends have their own sentence)."""


def wait_result(started: WaitStartedEvent, ended: WaitEndedEvent, last: ToolResult | None) -> ToolResult:
    """What the model is told when the wait ends: how, after how long, and the last probe's output."""
    if ended.reason == "refused" and last is not None:
        return last  # the approval's refusal, or the sandbox's, already says what to do instead
    waited = f"{format_duration(ended.waited_s)}, {ended.probes} probe{'s' if ended.probes != 1 else ''}"
    command = f"`{started.until}`"
    if ended.reason == "done":
        head = f"the wait is over: {command} exited 0 (after {waited})"
    elif ended.reason == "timeout":
        head = f"the wait timed out (after {waited}): {command} never exited 0"
    else:
        head = (f"interrupted: {REASONS[ended.reason]} during the wait (after {waited}); {command} had not exited "
                "0. Decide again whether to wait")
    if started.note:
        head += f" ({started.note})"
    shown = f"{head}\nlast probe: {last.output}" if last is not None else f"{head}\nno probe finished"
    cut = REASONS.get(ended.reason)
    facts = {"reason": ended.reason, "probes": ended.probes, "exit_code": ended.exit_code,
             "waited_s": round(ended.waited_s, 3)}
    return ToolResult(shown, ok=ended.reason == "done", full_output=last.full_output if last else None,
                      interrupted=cut, facts=facts)
