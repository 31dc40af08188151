"""The terminal faces' shared rendering: `Inert` draws any renderable with its control characters shown, not
obeyed, and `event_line` is a stored event's one-line form (the CLI's event printer and `gk log`, the TUI's
transcript).
"""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.text import Text

from goalkeeper import events as ev
from goalkeeper.core.safe_text import neutralise
from goalkeeper.store import EventRecord
from goalkeeper.tools.shell_call import command_of


class Inert:
    """A renderable drawn with every control character in its text shown, not obeyed. Rich's own control
    segments (cursor moves of the live status line) pass; they carry no text from anyone else. A str is taken
    as plain text, never as markup. The CLI's consoles draw everything through it; the TUI wraps its transcript
    entries in it."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = Text(renderable) if isinstance(renderable, str) else renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for segment in console.render(self.renderable, options):
            yield segment if segment.control else Segment(neutralise(segment.text), segment.style)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.renderable)


def event_line(record: EventRecord) -> str | None:
    """A short human line for an event, or None for events not worth a line."""
    match record.event:
        case ev.TurnStartedEvent(turn=turn, turn_kind=kind):
            return f"── turn {turn} ({kind})"
        case ev.ModelResponseEvent(content=content, tool_calls=calls):
            text = content.strip().splitlines()
            names = ", ".join(call.name for call in calls)
            return "  model: " + (text[0][:100] if text else "") + (f" → {names}" if names else "")
        case ev.ToolIntentEvent(name="shell", arguments=arguments):
            return f"  $ {command_of(arguments)[:120]}"
        case ev.ToolIntentEvent(name=name, arguments=arguments) if "__" in name:  # an MCP server's NAME__tool
            return f"  ⇄ {name} {arguments[:100]}"
        case ev.ToolResultEvent(ok=False, name=name, output=output):
            return f"  ✗ {name}: {output.splitlines()[0][:120] if output else ''}"
        case ev.BaselineEvent(evidence=evidence) | ev.EvidenceEvent(evidence=evidence):
            verdicts = ", ".join(f"{e.name} {'PASS' if e.passed else 'FAIL'}" for e in evidence)
            return f"  {record.event.kind}: {verdicts or '(no checks)'}"
        case ev.StatusChangedEvent(from_status=before, to=to, reason=reason, actor=actor):
            return f"● {before or 'new'} → {to} ({reason}, by {actor})"
        case ev.AttemptCountedEvent(failing=failing, attempts=attempts):
            counts = ", ".join(f"{name} {count}" for name, count in attempts.items())
            return f"  completion refused: failing {', '.join(failing)} (attempts: {counts})"
        case ev.SandboxEvent(mode=mode, network=network, processes=processes):
            return f"  sandbox: {mode}, network {'on' if network else 'off'}, {processes}"
        case ev.InstructionsLoadedEvent(files=files):
            shown = ", ".join(f"{item.path}{' (cut)' if item.cut else ' (not read)' if item.skipped else ''}"
                              for item in files)
            return f"  instructions: {shown}"
        case ev.McpServersEvent(servers=servers):
            return "  MCP servers: " + ", ".join(f"{name} ({count} tools)" for name, count in servers.items())
        case ev.NudgeEvent(why=why):
            return f"  nudge: {why}"
        case ev.BudgetExhaustedEvent(reason=reason):
            return f"  budget used up ({reason}): wrap-up turn"
        case ev.BudgetCappedEvent(reason=reason):
            return f"  the batch's cap was reached ({reason}): wrap-up turn"
        case ev.EngineStartedEvent(engine=engine, address=address, workflow_id=workflow_id, remote=remote):
            return f"  submitted to {engine} at {address}: workflow {workflow_id}, repository {remote}"
        case ev.ReportPushedEvent(remote=remote, ref=ref):
            return f"  report pushed to {remote} ({ref})"
        case ev.ForkedEvent(parent_thread_id=parent, branch=branch, commit=commit):
            return f"  forked from {parent} at {commit[:12]} (branch {branch})"
        case ev.ProviderRetryEvent(attempt=attempt, delay_s=delay_s, error=error):
            return f"  provider retry {attempt} in {delay_s}s: {error}"
        case ev.WaitStartedEvent(until=until, interval_s=interval_s, timeout_s=timeout_s):
            return f"  wait: until `{until[:100]}` exits 0, every {interval_s:g}s for at most {timeout_s:g}s"
        case ev.WaitEndedEvent(reason=reason, probes=probes, waited_s=waited_s):
            return f"  wait ended ({reason}) after {waited_s:.1f}s, {probes} probe{'s' if probes != 1 else ''}"
        case ev.SideEvent(question=question, answer=answer):
            return f"  side question: {question[:80]} → {answer.strip()[:80]}"
        case ev.HookRanEvent() as hook:
            return hook_line(hook)
        case ev.SubagentStartedEvent(child_thread_id=child, task=task, paths=paths):
            return f"  child {child} started: {task.strip()[:80]} (writes {', '.join(paths)})"
        case ev.SubagentEndedEvent(child_thread_id=child, status=status, summary=summary, files_changed=files):
            return f"  child {child} {status}, {len(files)} file(s) changed: {summary.strip()[:80]}"
    return None


def hook_line(hook: ev.HookRanEvent) -> str:
    """A hook run in one line: its event, command, exit (or timeout), duration, and whether it vetoed."""
    ended = f"exit {hook.exit_code}, {hook.duration_s:g}s"
    if hook.timed_out:
        ended = f"timed out after {hook.duration_s:g}s, process group killed"
    tool = f" on {hook.tool}" if hook.tool else ""
    veto = " — VETOED" if hook.vetoed else ""
    said = hook.output_tail.strip().splitlines()[-1][:80] if hook.output_tail.strip() else ""
    command = hook.command.strip().splitlines()[0][:60] if hook.command.strip() else ""
    return f"  hook {hook.event}{tool} `{command}`: {ended}{veto}" + (f": {said}" if said else "")
