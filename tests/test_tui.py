"""The TUI, driven with Textual's Pilot over a real store, a real git repo and a real Chat Completions server.

The model is a local HTTP server (chat_server.py) whose replies are chosen per request: a goal's steps by
how far its conversation has got, and a restatement, a side question, a plan or a chat by the tools the
request offers. Everything else is real: the runner, the sandbox, the checks, git and SQLite.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.app import App
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Button, Input, Static

from chat_server import ChatServer, Completion, ToolCallReply
from goalkeeper.config.load import load_config
from goalkeeper.config.resolve import settings_from_config
from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.core.lifecycle import Reason, Status
from goalkeeper.events import ChatResponseEvent, payload_of
from goalkeeper.events import Usage as UsageRecord
from goalkeeper.goals import control, service
from goalkeeper.sandbox.rules import CommandDecision
from goalkeeper.spec.settings import GoalSettings
from goalkeeper.store import Store
from goalkeeper.tui import commands
from goalkeeper.tui.app import CommandInput, GoalkeeperApp
from goalkeeper.tui.screens import ApprovalScreen, ConfirmScreen, PagerScreen, RestateScreen, SideOverlay
from goalkeeper.tui.status import compact_count, compact_duration, status_text
from goalkeeper.tui.transcript import ModelText, ToolCallView, Transcript
from scenario import FIX_PATCH, TESTS, event_class, gk, gk_popen, sample_repo

GOAL = f"/goal Fix the discount bug --check tests={TESTS}"
SIZE = (120, 40)
RESTATEMENT = ("Outcome: apply_discount treats 10 as 10%.\nVerification: `python -m unittest -q` passes.\n"
               "Constraints: none.\nBoundaries: the repository; no network.\nUnclear: nothing")
SIDE_ANSWER = "The first test run failed because the percent was used as a fraction."


class FixOverChat:
    """Replies for an honest fix of the sample repo's bug, and for whatever else the TUI asks the model.

    Which kind of request it is shows in the tools it offers: none (a restatement), `submit_plan` (a plan),
    `update_goal` (a goal turn), `shell` without goal tools (a chat), only read-only tools (a side question).
    A goal turn's reply is chosen by how many assistant messages its conversation holds, so a request
    cancelled by a pause and sent again gets the same reply.
    """

    def __init__(self, first_delay_s: float = 0.0, step_delay_s: float = 0.0) -> None:
        self.first_delay_s = first_delay_s
        self.step_delay_s = step_delay_s
        self.goal_requests = 0

    def __call__(self, body: dict[str, Any]) -> Completion:
        tools = {tool["function"]["name"] for tool in body.get("tools") or []}
        if not tools:
            return Completion(text=RESTATEMENT)
        if "submit_plan" in tools:
            return Completion(tool_calls=(ToolCallReply("submit_plan", {
                "objective": "Fix the discount bug", "steps": ["Run the tests", "Divide the percent by 100"],
                "checks": [{"name": "tests", "run": TESTS}]}),))
        if "update_goal" in tools:
            return self.goal_step(sum(m["role"] == "assistant" for m in body["messages"]))
        if "shell" in tools:
            return self.chat_step(body["messages"])
        return Completion(text=SIDE_ANSWER)

    def goal_step(self, answered: int) -> Completion:
        self.goal_requests += 1
        delay = self.first_delay_s if self.goal_requests == 1 else self.step_delay_s
        steps = [
            Completion(text="Run the tests.", tool_calls=(ToolCallReply("shell", {"command": TESTS}),)),
            Completion(text="Percent means 10 for 10%.",
                       tool_calls=(ToolCallReply("apply_patch", {"patch": FIX_PATCH}),)),
            Completion(tool_calls=(ToolCallReply("shell", {"command": TESTS}), ToolCallReply(
                "checkpoint", {"done": "fixed apply_discount", "verified": "unittest passes",
                               "remaining": "nothing", "next": "request completion"}))),
            Completion(tool_calls=(ToolCallReply("update_goal", {"status": "complete",
                                                                 "summary": "apply_discount divides by 100"}),)),
        ]
        chosen = steps[answered] if answered < len(steps) else Completion(text="Done.")
        return replace(chosen, delay_s=delay)

    @staticmethod
    def chat_step(messages: list[dict[str, Any]]) -> Completion:
        if messages[-1]["role"] == "tool":
            return Completion(text="cart.py holds apply_discount.")
        return Completion(text="Let me look.", tool_calls=(ToolCallReply("shell", {"command": "ls"}),))


def write_config(home: Path, server: ChatServer, *, restate: bool = False, extra: str = "") -> None:
    """The user's config.toml: the local server as provider `test`."""
    (home / "config.toml").write_text(
        f'model_provider = "test"\nmodel = "test-model"\nrestate_before_start = {str(restate).lower()}\n'
        f'{extra}\n[model_providers.test]\nbase_url = "{server.base_url}"\nwire_api = "chat"\n')


@pytest.fixture
def replies() -> FixOverChat:
    return FixOverChat()


@pytest.fixture
def server(replies: FixOverChat, goalkeeper_home: Path) -> Iterator[ChatServer]:
    with ChatServer(reply_fn=replies) as running:
        write_config(goalkeeper_home, running)
        yield running


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return sample_repo(tmp_path)


@pytest.fixture
def store() -> Iterator[Store]:
    with Store() as opened:
        yield opened


# ---- helpers


def in_loop(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """An async test run in a fresh event loop (Pilot needs one); its fixtures are passed through."""
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))  # type: ignore[arg-type]

    return run


def status_of(app: GoalkeeperApp) -> str:
    return str(app.query_one("#status", Static).content)


def text_of(app: GoalkeeperApp) -> str:
    """The transcript as plain text: each entry rendered, each tool call's title and output."""
    console = Console(width=160, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    for child in app.query_one(Transcript).children:
        if isinstance(child, ToolCallView):
            console.print(child.title)
            console.print(child.output.content)
        elif isinstance(child, Static):
            console.print(child.content)
    return console.export_text()


async def until(pilot: Pilot[None], condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Wait (letting the app run) until `condition()` holds; fail naming `what` and the status line."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            app = pilot.app
            assert isinstance(app, GoalkeeperApp)
            raise AssertionError(f"timed out waiting for {what}; status line: {status_of(app)!r}\n{text_of(app)}")
        await pilot.pause(0.05)


async def submit(pilot: Pilot[None], line: str) -> None:
    """Type `line` into the input box and press Enter."""
    prompt = pilot.app.query_one(CommandInput)
    prompt.focus()
    prompt.value = line
    await pilot.press("enter")


def screen_is(pilot: Pilot[None], kind: type) -> Callable[[], bool]:
    """True once a `kind` screen is up and mounted with its widgets (it is active before they are)."""
    return lambda: isinstance(pilot.app.screen, kind) and pilot.app.screen.is_mounted and bool(
        pilot.app.screen.children)


def events(store: Store, kind: str) -> list[Any]:
    thread = store.list_threads()[0]
    return store.events(thread.thread_id, kinds=[event_class(kind)])


def app_for(workspace: Path, store: Store) -> GoalkeeperApp:
    return GoalkeeperApp(workspace, store=store, poll_s=0.1)


def arrange_goal(store: Store, workspace: Path, **flags: Any) -> Any:
    """A goal set as `/goal` sets it (the model from config), without running it."""
    contract = contract_from_flags("Fix the discount bug", checks=[f"tests={TESTS}"], **flags)
    config = load_config(workspace)
    settings = GoalSettings(model=settings_from_config(config), run=config.run)
    return control.set_goal(store, workspace, contract, settings)


# ---- pure pieces: commands and the status line's numbers


def test_slash_commands_parse_into_name_and_arguments_and_plain_text_is_a_prompt() -> None:
    assert commands.parse("/goal  pause ") == commands.SlashCommand("goal", "pause")
    assert commands.parse("what does cart.py do?") is None
    assert commands.parse("//etc/passwd is a path") is None
    assert commands.prompt_text("//etc/passwd is a path") == "/etc/passwd is a path"


def test_goal_arguments_split_objective_and_checks_without_quotes() -> None:
    request = commands.parse_goal("Fix the user's bug --check tests=pytest -q --check 'lint=ruff check .'")
    assert request == commands.GoalRequest("Fix the user's bug", ("tests=pytest -q", "lint=ruff check ."))
    assert commands.parse_goal('"Make it fast"') == commands.GoalRequest("Make it fast")


def test_completion_offers_commands_then_goal_actions() -> None:
    assert commands.completions("/g") == ["/goal "]
    assert commands.completions("/goal p") == ["/goal pause"]
    assert commands.completions("/goal ") == ["/goal pause", "/goal resume", "/goal clear"]
    assert "/quit" in commands.completions("/")
    assert commands.completions("hello") == []


def test_tab_on_a_command_name_completes_it_and_suggests_no_action_yet() -> None:
    assert commands.suggestion("/go") == "/goal "
    assert commands.suggestion("/goal ") is None  # three actions, none preferred
    assert commands.suggestion("/goal p") == "/goal pause"


@in_loop
async def test_tab_on_go_leaves_goal_and_a_space_with_no_ghost_action(workspace: Path, store: Store) -> None:
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.query_one(CommandInput)
        prompt.focus()
        await pilot.press("/", "g", "o", "tab")
        await pilot.pause(0.1)
        assert prompt.value == "/goal " and not prompt._suggestion


class PromptApp(App[None]):
    """A bare app that shows one prompt screen, to drive its keys."""

    def __init__(self, prompt: Screen[Any]) -> None:
        super().__init__()
        self.prompt = prompt

    def on_mount(self) -> None:
        self.push_screen(self.prompt)


@pytest.mark.parametrize(("make", "first"), [
    (lambda: ConfirmScreen("Replace the goal?"), "no"),
    (lambda: RestateScreen("Fix it", "Outcome: fixed"), "confirm"),
    (lambda: ApprovalScreen("make", CommandDecision("ask", "not in the rules"), "make"), "once"),
])
@in_loop
async def test_the_arrow_keys_move_between_a_prompts_buttons(make: Callable[[], Screen[Any]], first: str) -> None:
    prompt = make()
    app = PromptApp(prompt)
    async with app.run_test(size=SIZE) as pilot:
        ids = [button.id for button in prompt.query(Button)]

        def focused() -> str | None:
            return app.focused.id if app.focused else None

        assert focused() == first
        start = ids.index(first)
        await pilot.press("right")
        assert focused() == ids[min(start + 1, len(ids) - 1)]
        await pilot.press("left", "left", "left")
        assert focused() == ids[0]  # it stops at the end of the row
        await pilot.press("down")
        assert focused() == ids[1]
        await pilot.press("up")
        assert focused() == ids[0]


def test_status_numbers_are_compact() -> None:
    assert [compact_count(n) for n in (950, 1_234, 40_000, 61_400, 1_500_000)] == ["950", "1.2K", "40K", "61K",
                                                                                  "1.5M"]
    assert [compact_duration(s) for s in (45.7, 720, 3900)] == ["45s", "12m", "1h 05m"]
    assert status_text(None).startswith("No goal")


def test_bare_gk_without_a_terminal_prints_help_instead_of_opening_the_tui(goalkeeper_home: Path) -> None:
    done = gk(home=goalkeeper_home)
    assert done.returncode == 0 and "Usage" in done.stdout and "tui" in done.stdout


def test_tui_options_before_a_command_are_refused(goalkeeper_home: Path, tmp_path: Path) -> None:
    done = gk("--cwd", str(tmp_path), "status", home=goalkeeper_home)
    assert done.returncode == 4 and "put them after the command" in done.stderr


# ---- the status line in every status


STATUS_LINES = [
    ("pursuing", Reason.GOAL_SET, "Pursuing goal · 0/1 checks · 40K/50K tok · $0.00 · 12m"),
    ("paused", Reason.USER_PAUSE, "Goal paused (/goal resume)"),
    ("paused", Reason.STALLED, "Goal paused: stalled (/goal resume)"),
    ("achieved", Reason.CHECKS_PASSED, "Goal achieved · 0/1 checks · 40K tok · 12m"),
    ("unmet", Reason.STUCK, "Goal unmet: stuck (/goal resume)"),
    ("budget_limited", Reason.BUDGET_TOKENS, "Budget reached: tokens · 40K/50K tok · $0.00 · 12m (/budget 50K)"),
]


@pytest.mark.parametrize(("status", "reason", "line"), STATUS_LINES, ids=[f"{s}-{r.value}" for s, r, _ in STATUS_LINES])
@in_loop
async def test_status_line_shows_every_goal_status(server: ChatServer, workspace: Path, store: Store, status: Status,
                                                   reason: Reason, line: str) -> None:
    goal = arrange_goal(store, workspace, budget_tokens=50_000)
    state = goal.state
    arranged = replace(state, status=status, reason=reason, spent=replace(state.spent, tokens=40_000, time_s=725))
    store.commit(goal.goal_id, [], state=arranged)
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: status_of(app).startswith(line), f"the {status} line")
        assert app.query_one("#status").has_class(status)


@in_loop
async def test_status_line_without_a_goal_invites_one(workspace: Path, store: Store) -> None:
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: status_of(app).startswith("No goal"), "the no-goal line")


# ---- /goal and the run it starts


@in_loop
async def test_goal_command_sets_the_goal_and_runs_it_to_achieved(server: ChatServer, workspace: Path,
                                                                   store: Store) -> None:
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, GOAL)
        await until(pilot, lambda: status_of(app).startswith("Goal achieved · 1/1 checks"), "achieved")
        text = text_of(app)
    assert "◆ goal set: Fix the discount bug" in text
    assert "$ python -m unittest -q  ✗" in text and "$ python -m unittest -q  ✓" in text  # tool calls, marked
    assert "baseline" in text and "evidence (completion)" in text and "PASS" in text  # evidence tables
    assert "✔ checkpoint turn 1: fixed apply_discount" in text
    assert "Percent means 10 for 10%." in text  # model text


@in_loop
async def test_tool_calls_are_collapsed_and_open_with_ctrl_o(server: ChatServer, workspace: Path,
                                                             store: Store) -> None:
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, GOAL)
        await until(pilot, lambda: status_of(app).startswith("Goal achieved"), "achieved")
        views = list(app.query(ToolCallView))
        assert views and all(view.collapsed for view in views)
        await pilot.press("ctrl+o")
        assert not any(view.collapsed for view in app.query(ToolCallView))
        failing = next(view for view in views if view.has_class("failed"))
        assert "FAILED" in str(failing.output.content) or "Error" in str(failing.output.content)


@in_loop
async def test_replacing_a_goal_asks_first(server: ChatServer, workspace: Path, store: Store) -> None:
    old = arrange_goal(store, workspace)
    service.pause(store, old)
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "/goal Something else entirely")
        await until(pilot, screen_is(pilot, ConfirmScreen), "the replace confirmation")
        await pilot.press("n")
        await until(pilot, lambda: "kept the existing goal" in text_of(app), "kept")
        assert store.get_goal(old.thread_id).goal_id == old.goal_id  # type: ignore[union-attr]
        await submit(pilot, GOAL)
        await until(pilot, screen_is(pilot, ConfirmScreen), "the replace confirmation")
        await pilot.press("y")
        await until(pilot, lambda: status_of(app).startswith("Goal achieved"), "the new goal achieved")
    assert store.get_goal(old.thread_id).goal_id != old.goal_id  # type: ignore[union-attr]


@in_loop
async def test_goal_without_arguments_and_status_show_the_summary(server: ChatServer, workspace: Path,
                                                                   store: Store) -> None:
    arrange_goal(store, workspace)
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "/goal")
        await until(pilot, lambda: "objective  Fix the discount bug" in text_of(app), "the /goal summary")
        await submit(pilot, "/status")
        await until(pilot, lambda: text_of(app).count("objective  Fix the discount bug") == 2, "the /status summary")


@in_loop
async def test_goal_pause_then_resume_finishes_the_goal(replies: FixOverChat, server: ChatServer, workspace: Path,
                                                        store: Store) -> None:
    replies.first_delay_s = 30.0  # the first model request is still out when the pause lands
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, GOAL)
        await until(pilot, lambda: status_of(app).startswith("Pursuing goal") and len(server.requests) >= 1,
                    "the first model request")
        await submit(pilot, "/goal pause")
        await until(pilot, lambda: status_of(app) == "Goal paused (/goal resume)", "paused", timeout=10)
        await submit(pilot, "/goal resume")
        await until(pilot, lambda: status_of(app).startswith("Goal achieved · 1/1 checks"), "achieved")


@in_loop
async def test_goal_clear_removes_the_goal(server: ChatServer, workspace: Path, store: Store) -> None:
    arrange_goal(store, workspace)
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "/goal clear")
        await until(pilot, lambda: status_of(app).startswith("No goal"), "no goal")
        assert "◆ goal cleared" in text_of(app)


@in_loop
async def test_budget_raises_a_spent_budget_and_the_goal_goes_on(server: ChatServer, workspace: Path,
                                                                 store: Store) -> None:
    goal = arrange_goal(store, workspace, budget_tokens=1_000)
    state = goal.state
    # Written by hand: a budget_limited goal arranged through `decide` has an unanswered wrap-up turn in its
    # history, which this conversation's scripted replies do not expect.
    spent = replace(state, status="budget_limited", reason=Reason.BUDGET_TOKENS,
                    spent=replace(state.spent, tokens=1_000))
    store.commit(goal.goal_id, [], state=spent)
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: status_of(app).startswith("Budget reached: tokens"), "budget reached")
        await submit(pilot, "/budget 50K")
        await until(pilot, lambda: status_of(app).startswith("Goal achieved"), "achieved after the raise")
    assert store.get_goal_by_id(goal.goal_id).state.limits.tokens == 51_000


@in_loop
async def test_budget_with_a_bad_amount_says_what_it_takes(server: ChatServer, workspace: Path,
                                                           store: Store) -> None:
    arrange_goal(store, workspace)
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "/budget lots")
        await until(pilot, lambda: "not a budget amount" in text_of(app), "the error")


# ---- Ctrl-C


@in_loop
async def test_ctrl_c_pauses_the_goal_and_a_second_quits(replies: FixOverChat, server: ChatServer,
                                                         workspace: Path, store: Store) -> None:
    replies.first_delay_s = 30.0
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, GOAL)
        await until(pilot, lambda: len(server.requests) >= 1, "the first model request")
        await pilot.press("ctrl+c")
        await until(pilot, lambda: "Pausing after the current step — Ctrl-C again to quit" in text_of(app),
                    "the pausing notice")
        await until(pilot, lambda: status_of(app) == "Goal paused (/goal resume)", "paused", timeout=10)
        assert app.is_running
        await pilot.press("ctrl+c")
        await until(pilot, lambda: not app.is_running, "the app to quit")


@in_loop
async def test_ctrl_c_without_a_goal_warns_then_quits(workspace: Path, store: Store) -> None:
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+c")
        await until(pilot, lambda: "Ctrl-C again to quit" in text_of(app), "the warning")
        assert app.is_running
        await pilot.press("ctrl+c")
        await until(pilot, lambda: not app.is_running, "the app to quit")


# ---- approval prompts

ASK_TESTS = '[[rules]]\nmatch = "python -m unittest*"\naction = "ask"\nreason = "tests take a while"\n'


@pytest.fixture
def asking(server: ChatServer, goalkeeper_home: Path) -> ChatServer:
    write_config(goalkeeper_home, server, extra=ASK_TESTS)
    return server


@in_loop
async def test_approval_prompt_approve_once_asks_again_for_the_next_run(asking: ChatServer, workspace: Path,
                                                                        store: Store) -> None:
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, GOAL)
        await until(pilot, screen_is(pilot, ApprovalScreen), "the first approval prompt")
        screen = app.screen
        assert isinstance(screen, ApprovalScreen) and screen.prefix == "python -m unittest*"
        await pilot.click("#once")
        await until(pilot, lambda: screen_is(pilot, ApprovalScreen)() and app.screen is not screen,
                    "the second approval prompt")
        await pilot.click("#once")
        await until(pilot, lambda: status_of(app).startswith("Goal achieved"), "achieved")
    asked = [payload_of(e.event) for e in events(store, "approval")]
    assert [a["asked"] for a in asked] == [True, True] and all(a["action"] == "allow" for a in asked)


@in_loop
async def test_approval_prompt_always_covers_the_prefix_for_the_rest_of_the_goal(asking: ChatServer,
                                                                                  workspace: Path,
                                                                                  store: Store) -> None:
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, GOAL)
        await until(pilot, screen_is(pilot, ApprovalScreen), "the approval prompt")
        button = str(app.screen.query_one("#always", Button).label)
        await pilot.click("#always")
        await until(pilot, lambda: status_of(app).startswith("Goal achieved"), "achieved without asking again")
    assert "Always approve `python -m unittest*` in this goal" in button
    asked = [payload_of(e.event)["asked"] for e in events(store, "approval")]
    assert asked == [True, False]  # the second run was allowed by the remembered prefix


@in_loop
async def test_approval_prompt_deny_with_a_reason_tells_the_model(asking: ChatServer, workspace: Path,
                                                                  store: Store) -> None:
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, GOAL)
        await until(pilot, screen_is(pilot, ApprovalScreen), "the approval prompt")
        await pilot.click("#deny")
        reason = app.screen.query_one("#reason", Input)
        assert reason.display and reason.has_focus
        reason.value = "read the code instead"
        await pilot.press("enter")
        await until(pilot, screen_is(pilot, ApprovalScreen), "the second approval prompt")
        await pilot.click("#once")
        await until(pilot, lambda: status_of(app).startswith("Goal achieved"), "achieved")
    tool_messages = [m["content"] for m in asking.requests[1]["messages"] if m["role"] == "tool"]
    assert any("read the code instead" in content for content in tool_messages)


# ---- /side, /plan, /diff, /report, /help, /quit


@in_loop
async def test_side_overlay_answers_and_esc_returns_while_the_goal_keeps_running(
        replies: FixOverChat, server: ChatServer, workspace: Path, store: Store) -> None:
    replies.first_delay_s = 3.0
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, GOAL)
        await until(pilot, lambda: len(server.requests) >= 1, "the first goal request")
        await submit(pilot, "/side why did the tests fail?")
        await until(pilot, screen_is(pilot, SideOverlay), "the side overlay")
        overlay = app.screen
        assert isinstance(overlay, SideOverlay)
        await until(pilot, lambda: SIDE_ANSWER in overlay.answer, "the side answer")
        assert status_of(app).startswith("Pursuing goal")  # the goal ran on underneath
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, SideOverlay), "the overlay to close")
        await until(pilot, lambda: status_of(app).startswith("Goal achieved"), "achieved")
        assert "side question: why did the tests fail?" in text_of(app)


@in_loop
async def test_plan_shows_the_plan_and_how_to_adopt_it(server: ChatServer, workspace: Path, store: Store) -> None:
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "/plan fix the discount bug")
        await until(pilot, lambda: "adopt it with: /goal Fix the discount bug --check tests=" in text_of(app),
                    "the plan")
        assert "2. Divide the percent by 100" in text_of(app)


@in_loop
async def test_diff_and_report_open_in_a_pager(server: ChatServer, workspace: Path, store: Store) -> None:
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, GOAL)
        await until(pilot, lambda: status_of(app).startswith("Goal achieved"), "achieved")
        await submit(pilot, "/diff")
        await until(pilot, screen_is(pilot, PagerScreen), "the diff")
        page = app.screen
        assert isinstance(page, PagerScreen) and "percent / 100" in page.body
        await pilot.press("escape")
        await submit(pilot, "/report")
        await until(pilot, lambda: screen_is(pilot, PagerScreen)() and app.screen is not page, "the report")
        assert "Evidence" in app.screen.body  # type: ignore[attr-defined]


@in_loop
async def test_help_lists_every_command_and_tab_completes(workspace: Path, store: Store) -> None:
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "/help")
        await until(pilot, lambda: "/side <question>" in text_of(app), "the help")
        text = text_of(app)
        assert all(f"/{name}" in text for name in commands.NAMES) and "Ctrl-C" in text
        prompt = app.query_one(CommandInput)
        await pilot.press("/", "s", "i")
        assert "/side <question>" in str(app.query_one("#hints", Static).content)
        await pilot.press("tab")
        assert prompt.value == "/side "


@in_loop
async def test_unknown_command_points_at_help(workspace: Path, store: Store) -> None:
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "/frobnicate")
        await until(pilot, lambda: "unknown command /frobnicate — /help lists the commands" in text_of(app), "error")


@in_loop
async def test_quit_leaves(workspace: Path, store: Store) -> None:
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "/quit")
        await until(pilot, lambda: not app.is_running, "the app to quit")


# ---- chat and streaming


@in_loop
async def test_plain_text_is_a_chat_turn_with_tools(server: ChatServer, workspace: Path, store: Store) -> None:
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "where is apply_discount?")
        await until(pilot, lambda: "cart.py holds apply_discount." in text_of(app), "the chat answer")
        text = text_of(app)
    assert "you: where is apply_discount?" in text and "$ ls  ✓" in text
    assert [payload_of(e.event)["content"] for e in events(store, "chat_message")] == ["where is apply_discount?"]
    assert store.get_goal(store.list_threads()[0].thread_id) is None  # a chat sets no goal


@in_loop
async def test_chat_asks_for_approval_too_and_remembers_for_the_chat(server: ChatServer, workspace: Path,
                                                                      store: Store, goalkeeper_home: Path) -> None:
    write_config(goalkeeper_home, server, extra='[[rules]]\nmatch = "ls*"\naction = "ask"\n')
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "where is apply_discount?")
        await until(pilot, screen_is(pilot, ApprovalScreen), "the approval prompt")
        assert "Always approve `ls*` in this chat" in str(app.screen.query_one("#always", Button).label)
        await pilot.click("#always")
        await until(pilot, lambda: "cart.py holds apply_discount." in text_of(app), "the chat answer")
    assert [payload_of(e.event)["match"] for e in events(store, "approval_rule")] == ["ls*"]


@in_loop
async def test_streamed_text_is_replaced_by_the_committed_response_in_place(workspace: Path, store: Store) -> None:
    thread = store.create_thread(workspace)
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        app.on_model_text("The fix is ")
        app.on_model_text("to divide")
        streaming = app.query_one(ModelText)
        assert streaming.has_class("streaming") and streaming.text == "The fix is to divide"
        usage = UsageRecord(input_tokens=0, cached_input_tokens=0, output_tokens=0, charged_tokens=0)
        response = ChatResponseEvent(content="The fix is to divide by 100.", tool_calls=[], usage=usage, model="m")
        store.append_events(thread.thread_id, [response])
        await until(pilot, lambda: not app.query(ModelText).filter(".streaming"), "the committed text")
        [committed] = app.query(ModelText)
        assert committed.text == "The fix is to divide by 100."


# ---- restate before start


@pytest.fixture
def restating(server: ChatServer, goalkeeper_home: Path) -> ChatServer:
    write_config(goalkeeper_home, server, restate=True)
    return server


@in_loop
async def test_restatement_confirmed_starts_the_goal(restating: ChatServer, workspace: Path, store: Store) -> None:
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, GOAL)
        await until(pilot, screen_is(pilot, RestateScreen), "the restatement")
        assert "Outcome: apply_discount treats 10 as 10%." in app.screen.restatement  # type: ignore[attr-defined]
        assert not events(store, "baseline")  # nothing ran before the person confirmed
        await pilot.click("#confirm")
        await until(pilot, lambda: status_of(app).startswith("Goal achieved"), "achieved")
    assert len(events(store, "restated")) == 1


@in_loop
async def test_restatement_edit_puts_the_objective_back_in_the_input(restating: ChatServer, workspace: Path,
                                                                     store: Store) -> None:
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, GOAL)
        await until(pilot, screen_is(pilot, RestateScreen), "the restatement")
        await pilot.click("#edit")
        await until(pilot, lambda: app.query_one(CommandInput).value == GOAL, "the objective in the input")
        await until(pilot, lambda: status_of(app).startswith("No goal"), "the goal withdrawn")
    assert not events(store, "baseline")


@in_loop
async def test_restatement_cancelled_runs_nothing(restating: ChatServer, workspace: Path, store: Store) -> None:
    app = app_for(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, GOAL)
        await until(pilot, screen_is(pilot, RestateScreen), "the restatement")
        await pilot.press("escape")
        await until(pilot, lambda: "goal cancelled before it started" in text_of(app), "cancelled")
        # The status bar refreshes on its own tick after the note, so wait for it as the edit test does.
        await until(pilot, lambda: status_of(app).startswith("No goal"), "the goal withdrawn")
    assert not events(store, "baseline") and not events(store, "tool_intent")


# ---- the shared store: a goal run by `gk exec` elsewhere


@pytest.mark.slow
@in_loop
async def test_a_goal_run_by_gk_exec_shows_live_and_pauses_from_the_tui(
        replies: FixOverChat, server: ChatServer, workspace: Path, store: Store, goalkeeper_home: Path) -> None:
    replies.first_delay_s = 30.0
    running = gk_popen("exec", "Fix the discount bug", "--check", f"tests={TESTS}", "--cwd", str(workspace),
                       home=goalkeeper_home)
    try:
        app = app_for(workspace, store)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: status_of(app).startswith("Pursuing goal") and "not running" not in
                        status_of(app) and len(server.requests) >= 1, "the other process's goal", timeout=60)
            # The transcript catches up at its next poll of the store; the status line may be a poll ahead.
            await until(pilot, lambda: "baseline" in text_of(app), "the other process's baseline", timeout=5)
            await submit(pilot, "/goal pause")
            await until(pilot, lambda: status_of(app) == "Goal paused (/goal resume)", "paused", timeout=15)
        assert running.wait(timeout=30) == 3  # gk exec: exit code 3 is paused
    finally:
        if running.poll() is None:
            running.kill()
        running.wait()
    paused = events(store, "status_changed")[-1]
    assert (payload_of(paused.event)["to"], paused.event.actor) == ("paused", "user")
    assert events(store, "control_applied")
