"""The goal service over a real store, git repository and sandbox: both control paths (a live runner and none)
record the same events and report a refusal the same way, and the three faces (the TUI, `gk`, the HTTP
server) refuse the same bad goal with the same message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

import test_tui
from chat_server import ChatServer
from goalkeeper.core.state import BudgetRaise
from goalkeeper.goals import service
from goalkeeper.goals.control import ControlRejected, ControlResult
from goalkeeper.run.runner import Runner
from goalkeeper.server import close_app, create_app
from goalkeeper.store import Goal, Store
from goalkeeper.tui.app import GoalkeeperApp
from scenario import events, gk, limit_by_tokens, new_goal, sample_repo, scripted
from test_server_api import TOKEN, call
from test_tui import SIZE, in_loop, submit, text_of, until

NOT_A_COMMAND = "check `t` runs `no-such-program-here`, which is not a command here"
SYNTAX_ERROR = "check `t` has a syntax error: syntax error: unexpected end of file"
# The TUI's fixtures: a local model server, named in the config the TUI reads.
replies, server = test_tui.replies, test_tui.server

BAD_GOALS = [("no-such-program-here --flag", NOT_A_COMMAND), ("if true; then echo x", SYNTAX_ERROR)]
"""A check whose program is missing (refused before the lint gate) and one bash cannot parse (the lint gate)."""


@pytest.fixture
def store() -> Iterator[Store]:
    with Store() as opened:
        yield opened


def by_a_live_runner(store: Store, goal: Goal, workspace: Path,
                     ask: Callable[[], ControlResult]) -> ControlResult:
    """`ask` while a runner holds the goal's lease: the request is queued, and the runner's poll applies it."""
    store.acquire_lease(goal.goal_id)
    answers: list[ControlResult | Exception] = []

    def asking() -> None:
        try:
            answers.append(ask())
        except Exception as error:  # handed to the test thread, which re-raises it
            answers.append(error)

    asker = threading.Thread(target=asking)
    asker.start()
    deadline = time.monotonic() + 10
    while not events(store, goal, "control_request") and time.monotonic() < deadline:
        time.sleep(0.02)
    runner = Runner(store, store.get_goal_by_id(goal.goal_id), scripted([]), workspace, handle_signals=False)
    runner.goal_run.poll_controls()
    asker.join(10)
    store.release_lease(goal.goal_id)
    [answer] = answers
    if isinstance(answer, Exception):
        raise answer
    return answer


# ---------------------------------------------------------------- both control paths


def test_resume_with_a_raise_records_budget_raised_without_a_runner(tmp_path: Path, store: Store) -> None:
    goal = limit_by_tokens(store, new_goal(store, sample_repo(tmp_path), budget_tokens=1000))
    result = service.resume(store, goal, raise_by=BudgetRaise(tokens=5000))
    assert (result.applied_by, result.status) == ("here", "pursuing")
    after = [e.event.kind for e in events(store, goal)][-2:]
    assert after == ["budget_raised", "status_changed"]
    assert store.get_goal_by_id(goal.goal_id).state.limits.tokens == 6000


def test_resume_with_a_raise_records_budget_raised_through_a_live_runner(tmp_path: Path, store: Store) -> None:
    workspace = sample_repo(tmp_path)
    goal = limit_by_tokens(store, new_goal(store, workspace, budget_tokens=1000))
    result = by_a_live_runner(store, goal, workspace,
                              lambda: service.resume(store, goal, raise_by=BudgetRaise(tokens=5000), wait_s=10))
    assert (result.applied_by, result.status) == ("runner", "pursuing")
    after = [e.event.kind for e in events(store, goal)][-3:]
    assert after == ["control_applied", "budget_raised", "status_changed"]
    assert store.get_goal_by_id(goal.goal_id).state.limits.tokens == 6000


def test_a_refused_request_is_reported_as_refused_on_both_paths(tmp_path: Path, store: Store) -> None:
    workspace = sample_repo(tmp_path)
    goal = limit_by_tokens(store, new_goal(store, workspace, budget_tokens=1000))
    with pytest.raises(ControlRejected, match="nothing to pause"):
        service.pause(store, goal)
    with pytest.raises(ControlRejected, match="nothing to pause"):
        by_a_live_runner(store, goal, workspace, lambda: service.pause(store, goal))
    [applied] = events(store, goal, "control_applied")
    assert "nothing to pause" in str(getattr(applied.event, "rejected", ""))
    assert store.get_goal_by_id(goal.goal_id).state.status == "budget_limited"


def test_clearing_through_the_service_records_goal_cleared(tmp_path: Path, store: Store) -> None:
    goal = new_goal(store, sample_repo(tmp_path))
    assert service.clear(store, goal).status is None
    assert [e.event.kind for e in events(store, goal)][:2] == ["goal_set", "status_changed"]
    assert events(store, goal)[-1].event.kind == "goal_cleared"


# ---------------------------------------------------------------- the faces refuse the same bad goal alike


@pytest.mark.parametrize(("check", "message"), BAD_GOALS)
def test_gk_goal_refuses_a_bad_goal(tmp_path: Path, goalkeeper_home: Path, check: str, message: str) -> None:
    workspace = sample_repo(tmp_path)
    refused = gk("goal", "Fix the discount bug", "--check", f"t={check}", "--cwd", str(workspace),
                 home=goalkeeper_home)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert message in " ".join(refused.stderr.split())


@pytest.mark.parametrize(("check", "message"), BAD_GOALS)
def test_the_server_refuses_a_bad_goal(tmp_path: Path, store: Store, check: str, message: str) -> None:
    app: FastAPI = create_app(token=TOKEN, poll_s=0.02)
    try:
        path = f"/threads/{store.create_thread(sample_repo(tmp_path)).thread_id}/goal"
        refused = call(app, "PUT", path, json={"objective": "Fix the discount bug", "checks": [f"t={check}"]})
    finally:
        close_app(app)
    assert refused.status_code == 422 and message in refused.json()["detail"]


@pytest.mark.parametrize(("check", "message"), BAD_GOALS)
@pytest.mark.usefixtures("server")
@in_loop
async def test_the_tui_refuses_a_bad_goal(tmp_path: Path, store: Store, check: str, message: str) -> None:
    workspace = sample_repo(tmp_path)
    app = GoalkeeperApp(workspace, store=store, poll_s=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, f"/goal Fix the discount bug --check t={check}")
        await until(pilot, lambda: message in " ".join(text_of(app).split()), "the refusal")
    assert app.goal() is None


@in_loop
async def test_the_tui_ends_a_goal_its_baseline_finds_achieved_before_any_model_request(
        tmp_path: Path, store: Store, server: ChatServer) -> None:
    """Set and run at once (no restatement): the checks run once, at the baseline, which refuses the goal
    with the gate's message before the model is asked anything."""
    workspace = sample_repo(tmp_path)
    app = GoalkeeperApp(workspace, store=store, poll_s=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "/goal Make the discount code nicer --check imports=python -c 'import cart'")
        await until(pilot, lambda: "every check passes already" in " ".join(text_of(app).split()), "the refusal")
    assert app.goal() is None and server.requests == []
