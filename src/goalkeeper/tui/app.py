"""The TUI application: layout, key bindings, the store poller and the dispatch of what the person types.

Everything shown comes from the store (polled), so a goal run here and one run by `gk exec` in another
terminal look alike; everything done goes through the library's own paths (control, engines, chat,
side questions, planning), as the CLI's commands do. What each command does is in `handlers.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.suggester import Suggester
from textual.widgets import Footer, Input, Static

from goalkeeper.errors import GoalkeeperError
from goalkeeper.goals import service
from goalkeeper.goals.views import GoalSummary, summarize
from goalkeeper.tui import commands
from goalkeeper.tui.handlers import Handlers
from goalkeeper.tui.status import status_style, status_text
from goalkeeper.tui.transcript import Transcript

if TYPE_CHECKING:
    from goalkeeper.store import Goal, Store

T = TypeVar("T")

#: How often the store is read for new events (seconds).
POLL_S = 0.2

#: Events of an existing thread shown when the window opens (older ones stay in the store).
HISTORY_EVENTS = 300


class CommandSuggester(Suggester):
    """Completes slash commands (and `/goal`'s actions) as ghost text; Tab or → accepts."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        return commands.suggestion(value)


class CommandInput(Input):
    """The input box: Tab completes a slash command."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("tab", "complete", "Complete", show=False)]

    def action_complete(self) -> None:
        candidates = commands.completions(self.value)
        if not candidates:
            return
        common = candidates[0] if len(candidates) == 1 else _common_prefix(candidates)
        if len(common) > len(self.value):
            self.value = common
            self.cursor_position = len(common)


def _common_prefix(words: list[str]) -> str:
    first, last = min(words), max(words)
    size = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), min(len(first), len(last)))
    return first[:size]


class GoalkeeperApp(App[None]):
    """goalkeeper's terminal UI on one workspace's thread."""

    TITLE = "goalkeeper"
    CSS = """
    #hints { height: auto; max-height: 8; padding: 0 1; color: $text-muted; display: none; }
    #hints.shown { display: block; }
    #prompt { margin: 0 0; }
    #status { height: 1; padding: 0 1; background: $boost; text-style: bold; }
    #status.pursuing { color: $accent; }
    #status.paused { color: $warning; }
    #status.achieved { color: $success; }
    #status.unmet { color: $error; }
    #status.budget_limited { color: $secondary; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+c", "interrupt", "Pause goal / quit", priority=True),
        Binding("ctrl+q", "quit", "Quit"),
        Binding("ctrl+o", "toggle_tools", "Tool output"),
        Binding("f1", "help", "Help"),
    ]

    def __init__(self, workspace: Path, *, store: Store | None = None, thread_id: str | None = None,
                 poll_s: float = POLL_S) -> None:
        super().__init__()
        self.workspace = workspace
        self.store = store if store is not None else service.open_store()
        self._owns_store = store is None
        self.thread_id = thread_id
        self.poll_s = poll_s
        self.last_seq = 0
        self.summary: GoalSummary | None = None
        self.pausing = False
        """A pause was asked for here and the goal has not stopped yet."""
        self.starting: str | None = None
        """What happens before this window's runner takes a new goal (shown instead of "not running")."""
        self.quit_armed = False
        """Ctrl-C was pressed once: the next press quits."""
        self.tools_open = False
        self.batch_id: str | None = None
        """The batch `/batch` showed last: `/batch` with no id shows it again."""
        self._summarized_at = 0.0
        # Kept, not queried: while a modal screen is up, queries go to it, and the poller must not stop.
        self.transcript = Transcript(id="transcript")
        self.hints = Static(id="hints")
        self.prompt = CommandInput(placeholder="Chat with the model, or /goal <objective> · /help lists the commands",
                                   suggester=CommandSuggester(), id="prompt")
        self.status_line = Static(id="status")
        self.handlers = Handlers(self)

    # ---- layout

    def compose(self) -> ComposeResult:
        yield self.transcript
        yield self.hints
        yield self.prompt
        yield self.status_line
        yield Footer()

    def on_mount(self) -> None:
        self.transcript.note(f"goalkeeper · {self.workspace} · /help lists the commands", "summary")
        self._show_history()
        self.poll()
        self.set_interval(self.poll_s, self.poll)
        self.prompt.focus()

    async def on_unmount(self) -> None:
        await self.handlers.close()
        if self._owns_store:
            self.store.close()

    # ---- the store: the one path everything live arrives by

    def current_thread_id(self) -> str | None:
        """The thread this window shows: the one named, or the workspace's current one once it exists (a
        chat, a plan or a goal set here or in another terminal makes it)."""
        if self.thread_id is None:
            found = self.store.current_thread(self.workspace)
            self.thread_id = found.thread_id if found else None
        return self.thread_id

    def goal(self) -> Goal | None:
        """The thread's goal as the store has it now."""
        thread_id = self.current_thread_id()
        return self.store.get_goal(thread_id) if thread_id else None

    def _show_history(self) -> None:
        thread_id = self.current_thread_id()
        if thread_id is None:
            return
        records = self.store.events(thread_id)
        if len(records) > HISTORY_EVENTS:
            self.transcript.note(f"({len(records) - HISTORY_EVENTS} earlier events are in the store: gk log)", "dim")
        for record in records[-HISTORY_EVENTS:]:
            self.transcript.add_record(record)
        self.last_seq = records[-1].seq if records else 0

    def show_thread(self, thread_id: str) -> None:
        """Switch this window to another thread (a batch goal's): its workspace, its history, its status."""
        thread = self.store.get_thread(thread_id)
        self.thread_id, self.workspace = thread_id, Path(thread.workspace)
        self.transcript.clear()
        self.last_seq, self.summary, self.pausing, self.starting = 0, None, False, None
        self.transcript.note(f"thread {thread_id} · {self.workspace}", "summary")
        self._show_history()
        self.refresh_status()

    def poll(self) -> None:
        """Render every new event once, then refresh the status line."""
        thread_id = self.current_thread_id()
        if thread_id is None:
            self.refresh_status(force=False)
            return
        records = self.store.events(thread_id, after_seq=self.last_seq)
        for record in records:
            self.transcript.add_record(record)
            self.last_seq = record.seq
        self.refresh_status(force=bool(records))

    def refresh_status(self, force: bool = True) -> None:
        """Re-read the goal's summary (on news, or once a second for the runner's liveness) and show it."""
        now = asyncio.get_running_loop().time()
        if force or now - self._summarized_at >= 1.0:
            goal = self.goal()
            self.summary = summarize(self.store, goal) if goal is not None else None
            self._summarized_at = now
            if self.summary is None or self.summary.status != "pursuing":
                self.pausing = False
            if self.summary is None or self.summary.status != "pursuing" or self.summary.runner is not None:
                self.starting = None
        self.status_line.update(Text(status_text(self.summary, pausing=self.pausing, starting=self.starting)))
        self.status_line.set_classes(status_style(self.summary))

    def on_runner_event(self, _record: object) -> None:
        """The in-process runner committed events: render them now, before its next model request streams."""
        self.poll()

    def on_model_text(self, delta: str) -> None:
        """Model text as it streams (the committed response replaces it)."""
        self.transcript.stream_text(delta)

    # ---- input

    @on(Input.Changed, "#prompt")
    def show_hints(self, event: Input.Changed) -> None:
        specs = commands.matching_specs(event.value) if event.value.startswith("/") else []
        lines = [Text.assemble((spec.usage, "bold"), "  ", spec.help) for spec in specs]
        self.hints.update(Text("\n").join(lines))
        self.hints.set_class(bool(lines), "shown")

    @on(Input.Submitted, "#prompt")
    def submitted(self, event: Input.Submitted) -> None:
        line = event.value
        event.input.clear()
        if not line.strip():
            return
        self.quit_armed = False
        command = commands.parse(line)
        if command is None:
            self.run_worker(self.guarded(self.handlers.chat(commands.prompt_text(line))), group="chat")
        else:
            self.run_worker(self.guarded(self.handlers.dispatch(command)), group="commands")

    async def guarded(self, work: Awaitable[None]) -> None:
        """Run a command; a library error is shown once, as the CLI shows it: what happened, then the fix."""
        try:
            await work
        except GoalkeeperError as error:
            self.show_error(error)

    def show_error(self, error: GoalkeeperError) -> None:
        self.transcript.note(f"error: {error.message}" + (f"\n  fix: {error.hint}" if error.hint else ""), "error")

    async def ask(self, screen: Screen[T]) -> T | None:
        """Show a modal screen and wait for its answer (usable from any coroutine on the app's loop)."""
        answered: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()

        def done(result: T | None) -> None:
            if not answered.done():
                answered.set_result(result)

        self.push_screen(screen, callback=done)
        return await answered

    def put_in_input(self, text: str) -> None:
        """Put `text` in the input box for the person to change and submit."""
        self.prompt.value = text
        self.prompt.cursor_position = len(text)
        self.prompt.focus()

    # ---- keys

    def action_interrupt(self) -> None:
        """Ctrl-C: pause the goal after its current step; a second Ctrl-C quits."""
        if self.quit_armed:
            self.exit()
            return
        self.quit_armed = True
        goal = self.goal()
        if goal is not None and goal.state.status == "pursuing":
            self.pausing = True
            self.transcript.note("Pausing after the current step — Ctrl-C again to quit")
            self.run_worker(self.guarded(self.handlers.control("pause")), group="commands")
        else:
            self.transcript.note("Ctrl-C again to quit (or /quit)")
        self.refresh_status(force=False)

    def action_toggle_tools(self) -> None:
        self.tools_open = not self.tools_open
        self.transcript.set_tools_collapsed(not self.tools_open)

    def action_help(self) -> None:
        self.run_worker(self.guarded(self.handlers.help("")), group="commands")
