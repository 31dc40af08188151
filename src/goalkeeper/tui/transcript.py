"""The TUI's transcript: store events as widgets, model text streamed as it arrives, and local notices.

Every event is rendered once, from the store, whoever wrote it (this window's runner or chat, or a
`gk exec` in another terminal). Model text is the model's own: it is shown as plain text, never as markup.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Collapsible, Static

from goalkeeper import events as ev
from goalkeeper.core.safe_text import markup_literal, neutralise
from goalkeeper.events import ChatResponseEvent, CheckpointEvent, Evidence, SideEvent
from goalkeeper.goals.views import GoalSummary
from goalkeeper.render.instructions import instruction_lines
from goalkeeper.render.review import review_lines
from goalkeeper.render.terminal import Inert, event_line
from goalkeeper.sessions.planning import Plan, plan_markdown
from goalkeeper.tools.shell_call import command_of

if TYPE_CHECKING:
    from goalkeeper.store import EventRecord

#: Characters of a tool's output kept in its collapsible (the store keeps all of it).
TOOL_OUTPUT_CHARS = 6_000

#: Widgets kept in the transcript; older ones are removed so a long goal stays responsive.
MAX_ENTRIES = 600

CUT_NOTE = "\n[… cut here; the store keeps all of it]"


class ModelText(Static):
    """Text the model wrote (committed, or still streaming)."""

    DEFAULT_CSS = """
    ModelText { padding: 0 1; margin: 1 0 0 0; }
    ModelText.streaming { color: $text-muted; }
    """

    def __init__(self, text: str = "", *, streaming: bool = False, who: str = "model") -> None:
        super().__init__(classes="streaming" if streaming else "")
        self.text = text
        self.who = who
        self.update(self._render_text())

    def append(self, delta: str) -> None:
        """Add streamed text."""
        self.text += delta
        self.update(self._render_text())

    def _render_text(self) -> Text:
        return Text.assemble((f"{self.who}: ", "bold cyan"), neutralise(self.text.strip()))


class UserText(Static):
    """What the person typed into the chat."""

    DEFAULT_CSS = "UserText { padding: 0 1; margin: 1 0 0 0; background: $boost; }"

    def __init__(self, text: str) -> None:
        super().__init__(Text.assemble(("you: ", "bold"), neutralise(text)))


class ToolCallView(Collapsible):
    """One tool call: its command as the title, its output inside (collapsed until opened)."""

    DEFAULT_CSS = """
    ToolCallView { border: none; padding: 0; margin: 0 0 0 2; background: transparent; }
    ToolCallView > Contents { padding: 0 0 0 3; height: auto; }
    ToolCallView.failed CollapsibleTitle { color: $error; }
    """

    def __init__(self, call_id: str, name: str, arguments: str) -> None:
        self.call_id = call_id
        self.tool_name = name
        self.call_title = _call_title(name, arguments)
        self.output = Static(Text("running…", style="dim"), classes="tool-output")
        super().__init__(self.output, title=markup_literal(self.call_title), collapsed=True)

    def finish(self, output: str, ok: bool) -> None:
        """Show the call's result; a failure is marked ✗ in the title."""
        shown = output if len(output) <= TOOL_OUTPUT_CHARS else output[:TOOL_OUTPUT_CHARS] + CUT_NOTE
        self.output.update(Text(neutralise(shown) or "(no output)"))
        mark = "✓" if ok else "✗"
        self.title = markup_literal(f"{self.call_title}  {mark}")
        self.set_class(not ok, "failed")


_PATCH_FILE = re.compile(r"^\*\*\* (?:Add|Update|Delete) File: (.+)$", re.MULTILINE)


def _call_title(name: str, arguments: str) -> str:
    """A call as one line: `$ command` for the shell, else the tool and its arguments, short."""
    if name == "shell":
        return f"$ {_clip(command_of(arguments), 140)}"
    try:
        parsed = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return f"→ {name} {_clip(arguments, 100)}"
    if not isinstance(parsed, dict):
        return f"→ {name} {_clip(arguments, 100)}"
    if name == "apply_patch" and isinstance(parsed.get("patch"), str):
        return f"→ apply_patch {', '.join(_PATCH_FILE.findall(parsed['patch'])) or '(no file)'}"
    words = [f"{key}={_clip(value if isinstance(value, str) else json.dumps(value), 40)}"
             for key, value in parsed.items()]
    return f"→ {name} {_clip(' '.join(words), 120)}"


def _clip(text: str, size: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[:size - 1] + "…"


def evidence_table(title: str, evidence: list[Evidence]) -> Table:
    """Check results as a table: check, kind, result, metric (target), exit, time."""
    table = Table(title=title, title_justify="left", title_style="bold", box=None, padding=(0, 2),
                  header_style="bold", show_edge=False)
    for column in ("check", "kind", "result", "metric", "exit", "time"):
        table.add_column(column)
    for item in evidence:
        result = Text("PASS", style="green") if item.passed else Text("FAIL", style="red")
        metric = f"{item.metric} ({item.target})" if item.target else ""
        # Text cells: a str cell would be read as markup.
        table.add_row(Text(item.name), Text(item.kind), result, Text(metric), str(item.exit_code),
                      f"{item.duration_s:.1f}s")
    if not evidence:
        table.add_row("(no checks)", "", "", "", "", "")
    return table


class Entry(Static):
    """A line or block in the transcript (evidence, checkpoints, status changes, notices)."""

    DEFAULT_CSS = """
    Entry { padding: 0 1; }
    Entry.evidence, Entry.summary, Entry.side, Entry.plan { margin: 1 0 0 0; }
    Entry.status, Entry.turn { margin: 1 0 0 0; }
    Entry.status { text-style: bold; }
    Entry.error { color: $error; }
    Entry.notice { color: $warning; }
    """

    def __init__(self, renderable: RenderableType, *, classes: str | None = None) -> None:
        # Whatever an entry shows came from the store (the model, tools, the objective): drawn inert.
        super().__init__(Inert(renderable), classes=classes)


def _checkpoint_text(checkpoint: CheckpointEvent) -> RenderableType:
    note = checkpoint.note
    text = Text.assemble(("✔ checkpoint ", "bold green"), (f"turn {checkpoint.turn}: ", "green"),
                         str(note.get("done") or f"{checkpoint.turn_kind} turn"))
    details = []
    if note.get("next"):
        details.append(f"next: {note['next']}")
    if checkpoint.files_touched:
        details.append("files: " + ", ".join(checkpoint.files_touched[:6]))
    if checkpoint.commit:
        details.append(f"commit {checkpoint.commit[:10]}")
    if details:
        return Group(text, Padding(Text(" · ".join(details), style="dim"), (0, 0, 0, 4)))
    return text


def _side_text(side: SideEvent) -> Group:
    return Group(Text.assemble(("side question: ", "bold magenta"), side.question),
                 Text(side.answer.strip() or "(no answer)"),
                 Text("not charged to the goal; the goal never sees it", style="dim"))


def summary_renderable(summary: GoalSummary, status_line: str) -> Group:
    """`/goal` and `/status`: the objective, the status line, the newest evidence and the last checkpoint."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column()
    fields.add_row("objective", Text(summary.objective))  # Text, not str: the objective is never markup
    fields.add_row("status", Text(status_line))
    for item in summary.checklist:
        fields.add_row("", Text(f"[{'x' if item['done'] else ' '}] {item['number']}. {item['item']}"))
    for number, line in enumerate(instruction_lines(summary.instructions)):
        fields.add_row("" if number else "instructions", Text(line))
    for number, line in enumerate(review_lines(summary.review_point, "/goal resume <note>")):
        fields.add_row("" if number else "review", Text(line.removeprefix("review:").strip()))
    if summary.runner:
        fields.add_row("runner", Text(summary.runner))
    for child in summary.children:
        fields.add_row("child", Text(child.line()))
    label = "" if summary.verified else "  (unverified: no checks)"
    parts: list[RenderableType] = [Text.assemble(("Goal ", "bold"), summary.goal_id, (label, "yellow")),
                                   Padding(fields, (0, 0, 0, 2))]
    if summary.evidence:
        parts.append(evidence_table("evidence", summary.evidence))
    if summary.last_checkpoint:
        parts.append(_checkpoint_text(summary.last_checkpoint))
    return Group(*parts)


class Transcript(VerticalScroll):
    """The scrolling record of the session: store events, streamed text and notices, oldest first."""

    DEFAULT_CSS = "Transcript { height: 1fr; padding: 0 0 1 0; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.calls: dict[str, ToolCallView] = {}
        self.stream: ModelText | None = None

    # ---- what the app calls

    def add_record(self, record: EventRecord) -> None:
        """Render one store event (those not worth showing are skipped)."""
        widget = self._widget_for(record)
        if widget is not None:
            self._mount(widget)
        if isinstance(record.event, ChatResponseEvent):  # a chat stores no intents: its calls open with the response
            for call in record.event.tool_calls:
                self._mount(self._call_view(call.id, call.name, call.arguments))

    def stream_text(self, delta: str, who: str = "model") -> None:
        """Show model text as it arrives; the committed response replaces it."""
        if not delta:
            return
        if self.stream is None:
            self.stream = ModelText(streaming=True, who=who)
            self._mount(self.stream)
        self.stream.append(delta)

    def note(self, text: str, kind: str = "notice") -> None:
        """A line from this window itself (a notice or an error), not from the store."""
        self._mount(Entry(Text(text), classes=kind))

    def show(self, renderable: RenderableType, kind: str = "summary") -> None:
        """A block from this window itself, e.g. `/status` or `/help`."""
        self._mount(Entry(renderable, classes=kind))

    def clear(self) -> None:
        """Remove every entry (the window switches to another thread)."""
        self.remove_children()
        self.calls.clear()
        self.stream = None

    def set_tools_collapsed(self, collapsed: bool) -> None:
        """Open or close every tool call's output."""
        for view in self.query(ToolCallView):
            view.collapsed = collapsed

    # ---- rendering

    def _widget_for(self, record: EventRecord) -> Widget | None:
        match event := record.event:
            case ev.ModelResponseEvent(content=content) | ev.ChatResponseEvent(content=content):
                return self._committed_text(content)
            case ev.ChatMessageEvent(content=content):
                return UserText(content)
            case ev.ToolIntentEvent(call_id=call_id, name=name, arguments=arguments):
                return self._call_view(call_id, name, arguments)
            case ev.ToolResultEvent(call_id=call_id, name=name, output=output, ok=ok):
                return self._finish_call(call_id, name, output, ok)
            case ev.ChatToolResultEvent(call_id=call_id, name=name, output=output, ok=ok):
                return self._finish_call(str(call_id), str(name), output, ok)
            case ev.BaselineEvent(evidence=evidence):
                return Entry(evidence_table("baseline", evidence), classes="evidence")
            case ev.EvidenceEvent(evidence=evidence, trigger=trigger):
                return Entry(evidence_table(f"evidence ({trigger})", evidence), classes="evidence")
            case ev.CheckpointEvent():
                return Entry(_checkpoint_text(event), classes="checkpoint")
            case ev.GoalSetEvent(outcome=outcome):
                return Entry(Text.assemble(("◆ goal set: ", "bold"), outcome), classes="status")
            case ev.TurnStartedEvent(turn=turn, turn_kind=kind):
                return Entry(Text(f"── turn {turn} ({kind})", style="bold dim"), classes="turn")
            case ev.GoalClearedEvent():
                return Entry(Text("◆ goal cleared", style="bold"), classes="status")
            case ev.StatusChangedEvent(from_status=before, to=to, reason=reason, actor=actor):
                return Entry(Text(f"● {before or 'new'} → {to} ({reason}, by {actor})"), classes=f"status {to}")
            case ev.SideEvent():
                return Entry(_side_text(event), classes="side")
            case ev.PlanEvent():
                return Entry(Text(plan_markdown(Plan.of(event))), classes="plan")
            case ev.RestatedEvent(text=text):
                return self._committed_text(text, who="restatement")
            case ev.ApprovalRuleEvent(match=match):
                scope = "this goal" if record.goal_id else "this chat"
                return Entry(Text(f"  always approving `{match}` in {scope}", style="dim"))
            case ev.ApprovalEvent(asked=True, action=action, command=command, reason=reason):
                return Entry(Text(f"  approval: {action} `{command}` ({reason})", style="dim"))
        line = event_line(record)
        return Entry(Text(line, style="dim")) if line else None

    def _committed_text(self, content: str, who: str = "model") -> Widget | None:
        """The committed response: it replaces the streamed text where that stood."""
        streamed, self.stream = self.stream, None
        if not content.strip():
            if streamed is not None:
                streamed.remove()
            return None
        committed = ModelText(content, who=who)
        if streamed is not None:
            self.mount(committed, before=streamed)
            streamed.remove()
            return None
        return committed

    def _call_view(self, call_id: str, name: str, arguments: str) -> ToolCallView:
        view = ToolCallView(call_id, name, arguments)
        self.calls[call_id] = view
        return view

    def _finish_call(self, call_id: str, name: str, output: str, ok: bool) -> Widget | None:
        view = self.calls.pop(call_id, None)
        created = None
        if view is None:  # its intent was not seen (chat results, or history older than the window)
            view = created = self._call_view(call_id, name, "")
        if created is not None:
            created.output.update(Text(neutralise(output)))
            self.calls.pop(call_id, None)
        view.finish(output, ok)
        return created

    def on_mount(self) -> None:
        self.anchor()  # follow new entries at the bottom until the person scrolls up

    def _mount(self, widget: Widget) -> None:
        self.mount(widget)
        if len(self.children) > MAX_ENTRIES:
            self.children[0].remove()
