"""Lifecycle hooks: the `[[hooks]]` commands of config.toml, run at the seams of a goal's run.

A hook is a bash command line run the way a check is: in the workspace, under the goal's sandbox, with a
timeout that kills its process group, and its output capped. It reads its event as one line of JSON on stdin.
Exit 2 of a `pre_tool` hook vetoes the call (the model reads the hook's reason as the tool's error); exit 2 of a
`completion` hook refuses the completion as a failing check does (its reason is the failing evidence, and the
next turn is the audit feedback). Any other exit, a timeout, or a hook that cannot start is recorded and the run
goes on, as Claude Code does with a non-blocking error. Every run of a hook is a `hook_ran` event.

Hooks come from the user's config.toml and from a project's only once it is trusted (config/trust.py): the model
can never add one. They run in this process's order of events, one at a time, never in the background.
"""

from __future__ import annotations

import fnmatch
import json
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from goalkeeper.config.schema import HookEvent, HookTable
from goalkeeper.errors import SandboxError
from goalkeeper.events import Evidence, HookRanEvent, StatusChangedEvent, TurnEndedEvent, payload_of
from goalkeeper.models.base import ToolCall
from goalkeeper.run.calls import call_tool
from goalkeeper.run.goal_run import GoalRun
from goalkeeper.sandbox.bwrap import run_confined
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.tools.base import ToolResult
from goalkeeper.tools.registry import ToolRegistry

VETO_EXIT = 2
"""The exit status that vetoes (Claude Code's): a pre_tool hook's call is refused, a completion is refused."""

VETOING: frozenset[str] = frozenset({"pre_tool", "completion"})
"""The events whose exit 2 stops what they guard. A post_tool hook's exit 2 only adds its reason to the result."""

OUTPUT_BYTES = 64 * 1024
"""Output kept from one hook run (head and tail); a hook is a short verdict, not a log."""

STDERR_BYTES = 16 * 1024
"""The end of the hook's stderr kept: less than half of OUTPUT_BYTES, so it always survives in the kept tail."""

TAIL_CHARS = 2000
"""What the `hook_ran` event keeps of the output, and the most of a reason the model reads."""

FIELD_CHARS = 16_000
"""A longer string in the event JSON (a patch's text, a tool's output) is cut to its head and tail."""


@dataclass(frozen=True)
class HookRun:
    """One hook run to its end, killed at its timeout, or unable to start."""

    hook: HookTable
    exit_code: int
    """The command's exit status; 124 on timeout; -1 when it could not start."""
    duration_s: float
    stdout: str
    stderr: str
    timed_out: bool = False
    finished: bool = True
    """The wrapper script ran the command to its end and reported its status: False for a timeout, a kill or a
    syntax error in the command (bash's own exit 2, which must not read as a veto)."""

    @property
    def exited_2(self) -> bool:
        """The command itself exited 2: a veto where its event allows one."""
        return self.finished and self.exit_code == VETO_EXIT and not self.timed_out

    @property
    def reason(self) -> str:
        """What the hook said: its stderr, else its stdout, cut to its end; a stock line when it said nothing."""
        said = self.stderr.strip() or self.stdout.strip()
        return said[-TAIL_CHARS:] if said else f"the hook `{self.hook.command}` exited {self.exit_code}"

    def event(self, call: ToolCall | None) -> HookRanEvent:
        """The `hook_ran` event of this run."""
        output = "\n".join(part for part in (self.stdout.rstrip(), self.stderr.rstrip()) if part)
        return HookRanEvent(event=self.hook.event, command=self.hook.command, exit_code=self.exit_code,
                            duration_s=round(self.duration_s, 3), output_tail=output[-TAIL_CHARS:],
                            timed_out=self.timed_out, vetoed=self.exited_2 and self.hook.event in VETOING,
                            tool=call.name if call else None, call_id=call.id if call else None)

    def evidence(self) -> Evidence:
        """A completion hook's veto as the failing evidence `decide` counts and the audit feedback shows."""
        first = self.hook.command.strip().splitlines()[0]
        return Evidence(name=first if len(first) <= 60 else first[:59] + "…", kind="hook", command=self.hook.command,
                        exit_code=self.exit_code, duration_s=round(self.duration_s, 3), output_tail=self.reason,
                        passed=False, room="workspace")


# ---------------------------------------------------------------- running one hook


def matches(hook: HookTable, tool: str | None) -> bool:
    """Whether `hook` runs for a call of `tool` (None: an event about no tool, where every hook runs)."""
    return tool is None or any(fnmatch.fnmatchcase(tool, glob.strip()) for glob in hook.matcher.split("|"))


def hook_script(command: str, event_line: str, marker: str) -> str:
    """The bash script a hook runs as: the event on stdin, the command in a subshell with its stderr kept apart,
    then the marker, the end of that stderr, and the command's own exit status.

    The event is a quoted here-document, so nothing in it is expanded; it is one line of JSON, which starts with
    `{`, so no line of it can end the here-document early.
    """
    end = f"GOALKEEPER_EVENT_{secrets.token_hex(4)}"
    return (f"exec 0<<'{end}'\n{event_line}\n{end}\n"
            "__gk_stderr=$(mktemp) || exit 125\n"
            f"(\n{command}\n) 2>\"$__gk_stderr\"\n"
            "__gk_status=$?\n"
            f"printf '\\n%s\\n' '{marker}'\n"
            f"tail -c {STDERR_BYTES} \"$__gk_stderr\"; rm -f \"$__gk_stderr\"\n"
            "exit \"$__gk_status\"\n")


async def run_hook(hook: HookTable, event: Mapping[str, Any], sandbox: SandboxPolicy, workspace: Path,
                   env: dict[str, str]) -> HookRun:
    """Run `hook` with `event` on its stdin, confined like the goal's shell tool, bounded by its timeout."""
    marker = f"--- goalkeeper hook stderr {secrets.token_hex(8)} ---"  # unguessable: output cannot forge it
    script = hook_script(hook.command, json.dumps(_cut(event), ensure_ascii=True), marker)
    started = time.monotonic()
    try:
        result = await run_confined(replace(sandbox, max_output_bytes=OUTPUT_BYTES), script, workspace,
                                    hook.timeout_s, env=env)
    except SandboxError as error:
        return HookRun(hook, -1, time.monotonic() - started, "", f"the hook could not start: {error.message}",
                       finished=False)
    stdout, found, stderr = result.output.partition(f"\n{marker}\n")
    return HookRun(hook, result.exit_code, result.duration_s, stdout, stderr, result.timed_out, bool(found))


def _cut(value: Any) -> Any:
    """`value` with every string longer than FIELD_CHARS cut to its head and tail."""
    if isinstance(value, str) and len(value) > FIELD_CHARS:
        half = FIELD_CHARS // 2
        return f"{value[:half]}\n[... {len(value) - FIELD_CHARS} characters cut ...]\n{value[-half:]}"
    if isinstance(value, Mapping):
        return {str(key): _cut(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_cut(item) for item in value]
    return value


# ---------------------------------------------------------------- the seams of a run


def hooks_for(hooks: tuple[HookTable, ...], event: HookEvent, tool: str | None = None) -> Iterator[HookTable]:
    """The hooks of `event` that apply (to a call of `tool`), in config order."""
    return (hook for hook in hooks if hook.event == event and matches(hook, tool))


async def run_hooks(run: GoalRun, event: HookEvent, fields: Mapping[str, Any],
                    call: ToolCall | None = None) -> HookRun | None:
    """Run the hooks of `event` one by one, each recorded (written with the run's next commit). For pre_tool,
    post_tool and completion the first hook that exits 2 stops the rest and is returned."""
    payload: dict[str, Any] = {"event": event, "goal_id": run.goal.goal_id, "thread_id": run.goal.thread_id,
                               "workspace": str(run.workspace), "turn": run.state.spent.turns,
                               "status": run.state.status, **fields}
    for hook in hooks_for(run.hooks, event, call.name if call else None):
        ran = await run_hook(hook, payload, run.sandbox, run.workspace, run.env)
        run.record([ran.event(call)], hold=True)
        if ran.exited_2 and event in (*VETOING, "post_tool"):
            return ran
    return None


async def hooked_call(run: GoalRun, call: ToolCall, tools: ToolRegistry) -> ToolResult:
    """One tool call between its pre_tool and post_tool hooks: a pre_tool veto means the call never runs, and
    the model reads the hook's reason as the tool's error."""
    if not run.hooks:
        return await call_tool(run, call, tools)
    tool = {"name": call.name, "call_id": call.id, "arguments": _arguments(call)}
    veto = await run_hooks(run, "pre_tool", {"tool": tool}, call)
    if veto is not None:
        return ToolResult(f"refused by a pre_tool hook, so the call did not run: {veto.reason}", ok=False,
                          facts={"vetoed_by": veto.hook.command})
    result = await call_tool(run, call, tools)
    if result.interrupted is not None:
        return result  # cut short by a pause or a clear: the run stops here
    said = await run_hooks(run, "post_tool", {"tool": tool, "result": {"ok": result.ok, "output": result.output}},
                           call)
    return result if said is None else replace(result, output=f"{result.output}\n\npost_tool hook: {said.reason}")


def _arguments(call: ToolCall) -> Any:
    """The call's arguments as JSON values; the raw text when the model sent something that is not JSON."""
    try:
        return json.loads(call.arguments)
    except (json.JSONDecodeError, RecursionError):
        return call.arguments


async def completion_refusal(run: GoalRun, evidence: list[Evidence], trigger: str) -> list[Evidence]:
    """The completion hooks, run on a check run that would achieve the goal: a veto comes back as one failing
    piece of evidence (so `decide` refuses the completion and counts an attempt, like a failing check)."""
    if not any(hook.event == "completion" for hook in run.hooks) or not all(item.passed for item in evidence):
        return []
    if trigger != "completion" and not run.state.verified:
        return []  # this check run cannot achieve the goal: there is nothing to refuse
    checks = [item for item in evidence if item.is_check]
    signal = run.facts.turn.signal or {}
    fields = {"trigger": trigger, "claim": signal.get("summary"),
              "summary": f"{sum(item.passed for item in checks)}/{len(checks)} checks pass",
              "evidence": [item.model_dump(include={"name", "kind", "passed", "exit_code", "metric", "target", "room"})
                           for item in evidence]}
    veto = await run_hooks(run, "completion", fields)
    return [] if veto is None else [veto.evidence()]


async def run_queued_hooks(run: GoalRun) -> None:
    """The post_turn and status_change hooks of the turn ends and status changes committed since the last call."""
    queued, run.hook_queue = run.hook_queue, []
    for event in queued:
        match event:
            case TurnEndedEvent() if any(hooks_for(run.hooks, "post_turn")):
                await run_hooks(run, "post_turn", {"turn_ended": payload_of(event)})
            case StatusChangedEvent() if any(hooks_for(run.hooks, "status_change")):
                await run_hooks(run, "status_change", {"status_changed": {**payload_of(event), "actor": event.actor}})
