"""What each slash command, a chat prompt and an approval prompt do in the TUI.

Each handler parses its arguments, calls one library function (blocking ones in a thread, so the window
stays live and an in-process runner keeps going) and leaves the showing to the store poller, or shows
the answer in the transcript or a modal screen. The runner this window starts lives here too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from rich.table import Table
from textual.worker import Worker

from goalkeeper.config.load import load_config
from goalkeeper.config.resolve import settings_from_config
from goalkeeper.errors import GoalkeeperError, GoalNotFoundError
from goalkeeper.goals import control, service
from goalkeeper.goals.batch import find_batch, latest_batch_of
from goalkeeper.goals.fork import fork as fork_thread
from goalkeeper.goals.report import build_report, render_markdown
from goalkeeper.goals.views import summarize
from goalkeeper.models.factory import open_model
from goalkeeper.run.engine import drive_goal
from goalkeeper.sessions.chat import ChatSession
from goalkeeper.sessions.planning import make_plan
from goalkeeper.sessions.restate import restate_goal
from goalkeeper.sessions.session import ToolUse
from goalkeeper.sessions.side import ask_side_question
from goalkeeper.tools.registry import Approval
from goalkeeper.tui import commands, goals
from goalkeeper.tui.batch import BatchScreen
from goalkeeper.tui.screens import ApprovalScreen, ConfirmScreen, PagerScreen, RestateScreen, SideOverlay
from goalkeeper.tui.status import status_text
from goalkeeper.tui.transcript import summary_renderable

if TYPE_CHECKING:
    from goalkeeper.sandbox.rules import CommandDecision
    from goalkeeper.store import Goal
    from goalkeeper.tui.app import GoalkeeperApp

KEYS = (("Ctrl-C", "pause the goal after its current step; again: quit"), ("Ctrl-Q", "quit"),
        ("Ctrl-O", "open or close every tool call's output"), ("Tab / →", "complete a slash command"),
        ("F1", "this help"), ("Esc", "close an overlay (the goal keeps running)"),
        ("← → ↑ ↓", "in a prompt: move between its buttons"))


class Handlers:
    """The app's commands. `app` gives the store, the workspace, the transcript and the modal screens."""

    def __init__(self, app: GoalkeeperApp) -> None:
        self.app = app
        self.runner: Worker[None] | None = None
        self.chat_session: ChatSession | None = None
        self.table: dict[str, Callable[[str], Awaitable[None]]] = {
            "goal": self.goal, "budget": self.budget, "side": self.side, "plan": self.plan, "fork": self.fork,
            "status": self.status, "diff": self.diff, "report": self.report, "batch": self.batch, "help": self.help,
            "quit": self.quit,
        }

    async def dispatch(self, command: commands.SlashCommand) -> None:
        """Run one slash command."""
        handler = self.table.get(command.name)
        if handler is None:
            self.app.transcript.note(f"unknown command /{command.name} — /help lists the commands", "error")
            return
        await handler(command.args)

    def require_goal(self) -> Goal:
        goal = self.app.goal()
        if goal is None:
            raise GoalNotFoundError(f"no goal in {self.app.workspace}", "set one with /goal <objective>")
        return goal

    @property
    def driving(self) -> bool:
        """True while this window runs a goal."""
        return self.runner is not None and self.runner.is_running

    # ---- /goal

    async def goal(self, args: str) -> None:
        """`/goal` shows the summary; `/goal pause|resume|clear` controls; `/goal <objective>` sets."""
        if not args:
            await self.status("")
        elif args.lower() in commands.GOAL_ACTIONS:
            await self.control(args.lower())
        elif args.split(maxsplit=1)[0].lower() == "resume":  # `/goal resume <note>`: the person's feedback
            await self.control("resume", note=args.split(maxsplit=1)[1])
        else:
            await self.set_goal(commands.parse_goal(args))

    async def set_goal(self, request: commands.GoalRequest) -> None:
        """Set the goal (confirming a replacement), let the model restate it, then run it here."""
        existing = self.app.goal()
        if existing is not None:
            replace = await self.app.ask(ConfirmScreen(
                "This workspace already has a goal. Replace it?",
                f"now:  {existing.contract.outcome} ({existing.state.status})\n"
                f"new:  {request.objective}", yes="Replace it", no="Keep it"))
            if not replace:
                self.app.transcript.note("kept the existing goal")
                return
        goal = await asyncio.to_thread(goals.set_goal, self.app.store, self.app.workspace, self.app.thread_id,
                                       request, existing is not None)
        self.app.poll()
        if load_config(self.app.workspace).restate_before_start and not await self.restate(goal, request):
            return
        self.start_runner(goal)

    async def restate(self, goal: Goal, request: commands.GoalRequest) -> bool:
        """The model restates the new goal; True when the person confirms it. Edit and cancel clear it."""
        settings = goal.settings.model
        assert settings is not None  # set_goal stored the model
        self.app.starting = "the model restates it before it starts…"
        self.app.refresh_status()
        try:
            async with open_model(settings) as model:
                restatement = await restate_goal(self.app.store, goal, model, on_text=self.app.on_model_text)
            self.app.starting = "waiting for you to confirm the restatement"
            self.app.poll()
            choice = await self.app.ask(RestateScreen(request.objective, restatement.text))
        finally:
            self.app.starting = None
        if choice == "confirm":
            return True
        await asyncio.to_thread(service.clear, self.app.store, goal)
        self.app.poll()  # the status bar shows the withdrawn goal now, not on its next tick
        if choice == "edit":
            checks = "".join(f" --check {check}" for check in request.checks)
            self.app.put_in_input(f"/goal {request.objective}{checks}")
            self.app.transcript.note("goal not started: edit the objective and press Enter")
        else:
            self.app.transcript.note("goal cancelled before it started; nothing ran")
        return False

    async def control(self, action: str, note: str | None = None) -> None:
        """Pause, resume or clear through the shared control path; a resumed goal nobody runs is run here."""
        goal = self.require_goal()
        elsewhere = service.runner_elsewhere(self.app.store, goal)
        if action == "resume" and goal.state.status == "pursuing":
            self.resume_here(goal, elsewhere)
            return
        if action == "pause":
            self.app.pausing = True
        if action == "pause":
            result = await asyncio.to_thread(service.pause, self.app.store, goal)
        elif action == "clear":
            result = await asyncio.to_thread(service.clear, self.app.store, goal)
        else:
            result = await asyncio.to_thread(service.resume, self.app.store, goal, goals.reopens(goal), note=note)
        where = {"here": "", "runner": " (by its runner)", "queued": " (queued: after the current step)"}
        self.app.transcript.note(f"{action}: goal is now {result.status or 'cleared'}{where[result.applied_by]}")
        self.app.poll()
        if action == "resume" and result.status == "pursuing":
            self.resume_here(self.require_goal(), elsewhere)

    def resume_here(self, goal: Goal, elsewhere: str | None) -> None:
        if elsewhere is not None:
            self.app.transcript.note(f"the goal is run by {elsewhere}; it continues there")
        elif not self.driving:
            self.start_runner(goal)

    def start_runner(self, goal: Goal) -> None:
        """Run `goal` in this window until it stops (a pause, the end, or the window closing)."""
        if self.driving:
            return
        self.app.quit_armed = False
        self.app.starting = "starting…"
        self.runner = self.app.run_worker(self.drive(goal.goal_id), name="runner", group="runner")

    async def drive(self, goal_id: str) -> None:
        """The runner, on the app's event loop; it starts from the goal as stored now (a restatement, a
        budget raise or a resume changed its version since the command read it)."""
        try:
            result = await drive_goal(self.app.store, self.app.store.get_goal_by_id(goal_id), self.app.workspace,
                                      on_event=self.app.on_runner_event, on_text=self.app.on_model_text,
                                      approver=self.approve, handle_signals=False)
            if result.status is None:
                self.app.transcript.note(f"the run stopped: {result.reason}")
        except GoalkeeperError as error:
            self.app.show_error(error)
        finally:
            self.app.poll()

    async def approve(self, command: str, decision: CommandDecision, scope: str = "this goal") -> Approval:
        """An approval prompt: approve once, always approve the prefix in this goal, or deny with a reason."""
        answer = await self.app.ask(ApprovalScreen(command, decision, service.approval_prefix(command), scope))
        return answer if answer is not None else Approval(approved=False, reason="no answer")

    async def approve_in_chat(self, command: str, decision: CommandDecision) -> Approval:
        """The chat's approval prompt: a remembered prefix holds for the chat."""
        return await self.approve(command, decision, "this chat")

    # ---- /budget

    async def budget(self, args: str) -> None:
        """Raise the budget; a goal its budget stopped resumes (run here when nobody else runs it)."""
        goal = self.require_goal()
        raise_by = control.parse_budget_raise(args)
        result = await asyncio.to_thread(service.raise_budget, self.app.store, goal, raise_by)
        self.app.transcript.note(f"budget raised ({args.strip()}): goal is now {result.status}")
        self.app.poll()
        if result.status == "pursuing" and result.before == "budget_limited":
            self.resume_here(self.require_goal(), service.runner_elsewhere(self.app.store, goal))

    # ---- reading

    async def status(self, _args: str) -> None:
        """`/status` (and `/goal`): the summary."""
        summary = summarize(self.app.store, self.require_goal())
        self.app.transcript.show(summary_renderable(summary, status_text(summary)))

    async def diff(self, _args: str) -> None:
        goal = self.require_goal()
        text = (await asyncio.to_thread(service.goal_diff, self.app.store, goal)).text
        await self.app.push_screen(PagerScreen("diff of the goal branch", text or "(no changes yet)", "diff"))

    async def report(self, _args: str) -> None:
        data = build_report(self.app.store, self.require_goal())
        await self.app.push_screen(PagerScreen("report", render_markdown(data), "markdown"))

    async def batch(self, args: str) -> None:
        """`/batch [ID]`: the batch view; Enter on a goal switches this window to that goal's thread."""
        batch_id = args.strip() or self.app.batch_id
        if batch_id:
            batch = await asyncio.to_thread(find_batch, self.app.store, batch_id,
                                            "/batch with no id shows this repository's latest batch")
        else:
            batch = await asyncio.to_thread(latest_batch_of, self.app.store, self.app.workspace)
        self.app.batch_id = batch.batch_id
        goal_id = await self.app.ask(BatchScreen(self.app.store, batch.batch_id))
        if goal_id is None:
            return
        if self.driving:
            self.app.transcript.note("this window runs a goal: /goal pause it before opening another", "error")
            return
        await self.close()  # the chat belongs to the workspace this window leaves
        self.chat_session = None
        self.app.show_thread(self.app.store.get_goal_by_id(goal_id).thread_id)

    async def help(self, _args: str) -> None:
        table = Table(box=None, padding=(0, 2), show_header=False, title="commands", title_justify="left",
                      title_style="bold")
        table.add_column(style="bold")
        table.add_column()
        for usage, text in commands.help_lines():
            table.add_row(usage, text)
        table.add_row("", "")
        for key, text in KEYS:
            table.add_row(key, text)
        table.add_row("other text", "a chat turn with the model (same tools and sandbox, no goal)")
        self.app.transcript.show(table, "summary")

    async def quit(self, _args: str) -> None:
        self.app.exit()

    # ---- /fork

    async def fork(self, args: str) -> None:
        """A new thread, worktree and branch from this thread's checkpoint, with its own goal when one is given;
        this window stays on its thread (the fork opens with `gk tui --cwd <worktree>`)."""
        def make() -> str:
            made = fork_thread(self.app.store, self.app.workspace, self.app.thread_id)
            if args.strip():
                goals.set_goal(self.app.store, made.workspace, made.thread.thread_id, commands.parse_goal(args),
                               replace=False)
            return (f"forked into {made.thread.thread_id}: branch {made.branch} at {made.commit[:12]}, worktree "
                    f"{made.workspace}; open it with gk tui --cwd {made.workspace}")
        try:
            self.app.transcript.note(await asyncio.to_thread(make))
        except GoalkeeperError as error:
            self.app.transcript.note(f"{error.message}" + (f"\nfix: {error.hint}" if error.hint else ""), "error")

    # ---- the model, read-only: /side and /plan

    async def side(self, question: str) -> None:
        """A side question in an overlay; the goal keeps running underneath and never sees it."""
        if not question:
            self.app.transcript.note("/side needs a question, e.g. /side why did the last check fail?", "error")
            return
        overlay = SideOverlay(question)
        await self.app.push_screen(overlay)

        def ask() -> None:
            try:
                answer = ask_side_question(self.app.store, self.app.workspace, question,
                                           thread_id=self.app.thread_id,
                                           on_text=lambda delta: self.app.call_from_thread(overlay.append, delta))
            except GoalkeeperError as error:
                self.app.call_from_thread(overlay.fail, f"{error.message}\n{error.hint or ''}")
                return
            footer = f"{answer.cost.line()} · not charged to the goal · Esc closes"
            self.app.call_from_thread(overlay.finish, answer.answer, footer)

        await self.app.run_worker(ask, thread=True, group="side").wait()

    async def plan(self, objective: str) -> None:
        """One read-only planning turn; the plan appears in the transcript (from the store)."""
        if not objective:
            self.app.transcript.note("/plan needs an objective, e.g. /plan make the tests pass", "error")
            return
        self.app.transcript.note(f"planning: {objective} (read-only: nothing is changed)…", "dim")

        def tool(use: ToolUse) -> None:
            self.app.call_from_thread(self.app.transcript.note, f"  → {use.name} {use.arguments[:100]}", "dim")

        made = await asyncio.to_thread(make_plan, self.app.store, self.app.workspace, objective,
                                       thread_id=self.app.thread_id, on_tool=tool)
        self.app.poll()
        checks = "".join(f" --check {check.name}={check.run}" for check in made.plan.checks)
        self.app.transcript.note(f"adopt it with: /goal {made.plan.objective}{checks}")

    async def close(self) -> None:
        """Release the chat's model (and the local server, if it started one)."""
        if self.chat_session is not None:
            await self.chat_session.aclose()

    # ---- chat

    async def chat(self, prompt: str) -> None:
        """A chat turn: no goal, the same tools and sandbox; its events come back through the store."""
        goal = self.app.goal()
        if goal is not None and goal.state.status == "pursuing" and (
                self.driving or service.runner_elsewhere(self.app.store, goal)):
            self.app.transcript.note("a goal is running in this workspace: /side asks about it without "
                                     "disturbing it; /goal pause first to chat", "error")
            return
        if self.chat_session is None:
            settings = settings_from_config(load_config(self.app.workspace), stream=True)
            self.chat_session = ChatSession(self.app.store, self.app.workspace, settings,
                                            approver=self.approve_in_chat)
        await self.chat_session.send(prompt, on_text=self.app.on_model_text,
                                     on_tool=lambda _use: self.app.poll())
        self.app.poll()
