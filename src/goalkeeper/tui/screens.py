"""The TUI's modal screens: confirm a replacement, approve a command, confirm a restatement, the side
overlay, and a pager for `/diff` and `/report`.

Each screen only asks and returns the answer; the app decides what the answer does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal, TypeVar

from rich.console import RenderableType
from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Markdown, Static

from goalkeeper.core.safe_text import markup_literal, neutralise
from goalkeeper.tools.registry import Approval

if TYPE_CHECKING:
    from goalkeeper.sandbox.rules import CommandDecision

RestateChoice = Literal["confirm", "edit", "cancel"]

_Answer = TypeVar("_Answer")

_DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 90; max-width: 95%; height: auto; max-height: 90%;
    border: thick $accent; background: $panel; padding: 1 2;
}}
{name} .title {{ text-style: bold; margin: 0 0 1 0; }}
{name} .body {{ height: auto; max-height: 24; margin: 0 0 1 0; }}
{name} Horizontal {{ height: auto; }}
{name} Button {{ margin: 0 1 0 0; }}
"""


class _Prompt(ModalScreen[_Answer]):
    """A dialog with a row of buttons: the arrow keys move the focus along the row."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("left,up", "move_focus(-1)", "Previous", show=False),
                                             Binding("right,down", "move_focus(1)", "Next", show=False)]

    def action_move_focus(self, step: int) -> None:
        """Focus the button `step` away from the focused one, stopping at either end; a text box keeps
        its focus (its own arrow keys move the cursor)."""
        buttons = list(self.query(Button))
        if self.focused not in buttons:
            return
        at = buttons.index(self.focused) + step
        buttons[max(0, min(at, len(buttons) - 1))].focus()


class ConfirmScreen(_Prompt[bool]):
    """A yes/no question; Esc or `n` means no."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="ConfirmScreen")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,n", "answer(False)", "No"),
                                             Binding("y", "answer(True)", "Yes")]

    def __init__(self, question: str, detail: str = "", yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question, self.detail, self.yes, self.no = question, detail, yes, no

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(markup_literal(self.question), classes="title")
            if self.detail:
                yield Static(Text(neutralise(self.detail)), classes="body")
            with Horizontal():
                yield Button(self.yes, id="yes", variant="warning")
                yield Button(self.no, id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ApprovalScreen(_Prompt[Approval]):
    """A command the approval policy asks about: approve once, always approve its prefix in this goal,
    or deny with a reason (which the model reads)."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="ApprovalScreen") + "ApprovalScreen #reason { display: none; }"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "deny", "Deny")]

    def __init__(self, command: str, decision: CommandDecision, prefix: str, scope: str = "this goal") -> None:
        super().__init__()
        self.command, self.decision, self.prefix, self.scope = command, decision, prefix, scope

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("The model wants to run a command that needs your approval", classes="title")
            yield Static(Text.assemble(("$ ", "bold"), neutralise(self.command)), classes="body command")
            yield Static(Text(neutralise(f"why it asks: {self.decision.reason}"), style="dim"), classes="body")
            with Horizontal():
                yield Button("Approve once", id="once", variant="success")
                yield Button(markup_literal(f"Always approve `{self.prefix}` in {self.scope}"), id="always",
                             variant="primary")
                yield Button("Deny…", id="deny", variant="error")
            yield Input(placeholder="Why not? (the model reads this) — Enter to deny", id="reason")

    def on_mount(self) -> None:
        self.query_one("#once", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "once":
            self.dismiss(Approval(approved=True))
        elif event.button.id == "always":
            self.dismiss(Approval(approved=True, remember=True))
        else:
            self.action_deny()

    def action_deny(self) -> None:
        """Show the reason box (a second Esc denies without a reason)."""
        reason = self.query_one("#reason", Input)
        if reason.display:
            self.dismiss(Approval(approved=False, reason=reason.value.strip()))
            return
        reason.display = True
        reason.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(Approval(approved=False, reason=event.value.strip()))


class RestateScreen(_Prompt[RestateChoice]):
    """The model's restatement of a new goal: start it, edit the objective, or cancel."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="RestateScreen") + "RestateScreen .body { max-height: 30; }"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "choose('cancel')", "Cancel"),
                                             Binding("e", "choose('edit')", "Edit"),
                                             Binding("y", "choose('confirm')", "Start")]

    def __init__(self, objective: str, restatement: str) -> None:
        super().__init__()
        self.objective, self.restatement = objective, restatement

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Before it starts, the model restates the goal in its own words", classes="title")
            with VerticalScroll(classes="body"):
                yield Static(Text(neutralise(self.restatement) or "(the model said nothing)"))
            yield Static(Text("Is this what you mean? Nothing has run yet.", style="dim"), classes="body")
            with Horizontal():
                yield Button("Start the goal", id="confirm", variant="success")
                yield Button("Edit the objective", id="edit", variant="primary")
                yield Button("Cancel", id="cancel", variant="error")

    def on_mount(self) -> None:
        self.query_one("#confirm", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_choose(str(event.button.id))

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice if choice in ("confirm", "edit") else "cancel")  # type: ignore[arg-type]


class SideOverlay(ModalScreen[None]):
    """A side question and its answer as it streams; Esc closes it and the goal keeps running underneath."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="SideOverlay") + """
    SideOverlay > Vertical { border: thick $secondary; }
    SideOverlay #answer { height: auto; max-height: 30; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close (the goal keeps running)")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question
        self.answer = ""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text.assemble(("side question: ", "bold magenta"), self.question), classes="title")
            with VerticalScroll(id="answer"):
                yield Static(Text("thinking…", style="dim"), id="answer-text")
            yield Static(Text("Esc closes · the goal keeps running and never sees this", style="dim"),
                         id="side-footer")

    def append(self, delta: str) -> None:
        """Streamed answer text."""
        self.answer += delta
        self._show(Text(neutralise(self.answer)))

    def finish(self, answer: str, footer: str) -> None:
        """The whole answer, and what it cost."""
        self.answer = answer
        self._show(Text(neutralise(answer.strip()) or "(no answer)"))
        self.query_one("#side-footer", Static).update(Text(footer, style="dim"))

    def fail(self, message: str) -> None:
        self._show(Text(neutralise(message), style="red"))

    def _show(self, text: Text) -> None:
        if self.is_attached:
            self.query_one("#answer-text", Static).update(text)

    def action_close(self) -> None:
        self.dismiss(None)


class PagerScreen(ModalScreen[None]):
    """Long text (`/diff`, `/report`) to read and close with Esc or q."""

    DEFAULT_CSS = """
    PagerScreen { align: center middle; }
    PagerScreen > Vertical { width: 95%; height: 90%; border: thick $accent; background: $panel; padding: 0 1; }
    PagerScreen .title { text-style: bold; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "close", "Close")]

    def __init__(self, title: str, body: str, kind: Literal["markdown", "diff", "text"] = "text") -> None:
        super().__init__()
        self.page_title, self.body, self.kind = title, body, kind

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text.assemble((self.page_title, "bold"), ("   Esc closes", "dim")), classes="title")
            with VerticalScroll(id="page"):
                if self.kind == "markdown":
                    yield Markdown(neutralise(self.body))
                else:
                    yield Static(self._renderable())

    def _renderable(self) -> RenderableType:
        if self.kind == "diff" and self.body.strip():
            return Syntax(neutralise(self.body), "diff", theme="ansi_dark", word_wrap=True)
        return Text(neutralise(self.body) or "(empty)")

    def on_mount(self) -> None:
        self.query_one("#page", VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)
