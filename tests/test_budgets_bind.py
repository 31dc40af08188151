"""Every budget binds: tokens, USD and time are checked before every request, the wrap-up's included, as if
nothing were cached; the wrap-up runs only the goal tools; a turn stopped mid-way is checkpointed so a raise
and a resume continue it; a spin ends unmet(stuck) with no budget at all; raises must be positive.

Charges are measured where they happen: at a real local Chat Completions server that reports the usage it
bills (tests/chat_server.py), or on the clock.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from chat_server import ChatServer, Completion, ToolCallReply, UsageReply
from goalkeeper.core.decide import decide
from goalkeeper.core.outcomes import Reject
from goalkeeper.core.state import BudgetRaise, GoalState
from goalkeeper.errors import GoalkeeperError
from goalkeeper.events import CheckpointEvent, payload_of
from goalkeeper.goals import control, service
from goalkeeper.models.openai_chat import OpenAIChatModel
from goalkeeper.run.runner import Runner
from goalkeeper.spec.settings import GoalSettings, ModelSettings, Price, RunSettings
from goalkeeper.store import Goal, Store
from helpers import git
from scenario import (
    FIX_PATCH,
    TESTS,
    call,
    complete,
    events,
    gk,
    new_goal,
    run,
    sample_repo,
    scripted,
    scripted_after,
    shell,
    step,
    write_script,
)

PRICE = Price(input=2.0, cached_input=0.5, output=8.0)  # USD per 1M tokens, like gpt-4.1


class Meter:
    """The server's side of billing: what each request is charged, from what it was sent.

    A normal request is answered with a new shell call (a long output, so the context grows); the wrap-up
    request (no `shell` among its tools) with text only. With `cache_hits`, normal requests report all but
    50 prompt tokens as cached, and the wrap-up's different tool list misses the cache entirely.
    """

    def __init__(self, cache_hits: bool = False, output_chars: int = 3000) -> None:
        self.cache_hits, self.output_chars = cache_hits, output_chars
        self.tokens, self.usd, self.wrap_ups = 0, 0.0, 0
        self.max_tokens: list[int | None] = []

    def __call__(self, body: dict[str, Any]) -> Completion:
        wrap_up = "shell" not in {tool["function"]["name"] for tool in body.get("tools", [])}
        n = len(self.max_tokens)
        self.max_tokens.append(body.get("max_tokens"))
        calls: tuple[ToolCallReply, ...]
        if wrap_up:
            self.wrap_ups += 1
            text, calls = "Wrapping up: nothing more to do.", ()
        else:
            command = f"head -c {self.output_chars} /dev/zero | tr '\\0' x; echo {n}"
            text, calls = "", (ToolCallReply("shell", {"command": command}),)
        prompt = len(json.dumps(body["messages"])) // 4
        completion = (len(text) + sum(len(json.dumps(c.arguments)) for c in calls)) // 4 + 1
        if body.get("max_tokens") is not None:
            completion = min(completion, body["max_tokens"])
        cached = max(0, prompt - 50) if self.cache_hits and not wrap_up else 0
        self.tokens += prompt - cached + completion
        self.usd += ((prompt - cached) * PRICE.input + cached * PRICE.cached_input
                     + completion * PRICE.output) / 1_000_000
        return Completion(text=text, tool_calls=calls,
                          usage=UsageReply(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached))


def priced_goal(store: Store, workspace: Path, **flags: Any) -> Goal:
    """A goal whose model has a known price (as `gk goal` stores it at goal start)."""
    contract_flags = {"no_progress_turns": 20, **flags}
    goal = new_goal(store, workspace, **contract_flags)
    settings = GoalSettings(model=ModelSettings(model="test-model", price=PRICE),
                            run=RunSettings(heartbeat_s=0.2, control_poll_s=0.05))
    store.commit(goal.goal_id, [], settings=settings)
    # The state was made from the contract; the settings only add the price.
    return store.get_goal_by_id(goal.goal_id)


def run_on(server: ChatServer, store: Store, goal: Goal, workspace: Path) -> tuple[str | None, str, float]:
    model = OpenAIChatModel("test-model", server.base_url, "key")
    started = time.monotonic()
    result = asyncio.run(Runner(store, store.get_goal_by_id(goal.goal_id), model, workspace).run())
    return result.status, result.reason, time.monotonic() - started


@pytest.mark.parametrize(("budget", "requests"), [(0.002, 0), (0.02, 3)])
def test_usd_budget_binds_at_the_server(tmp_path: Path, budget: float, requests: int) -> None:
    # `--budget-usd 0.002` once ended at $0.27. At $2 per 1M input tokens, $0.002 does not pay for one request.
    workspace = sample_repo(tmp_path)
    meter = Meter()
    with ChatServer(reply_fn=meter) as server, Store() as store:
        goal = priced_goal(store, workspace, budget_usd=budget)
        status, reason, _ = run_on(server, store, goal, workspace)
        state = store.get_goal_by_id(goal.goal_id).state
    cap = state.wrap_up_cap_usd
    assert (status, reason) == ("budget_limited", "budget_usd")
    assert cap is not None and cap == pytest.approx(budget / 4)
    assert len(meter.max_tokens) >= requests  # it did what work the budget paid for
    assert meter.usd <= budget + cap, f"charged ${meter.usd:.4f} against a ${budget} budget"
    assert state.spent.usd == pytest.approx(meter.usd)
    assert all(m is not None and m > 0 for m in meter.max_tokens)  # every request's output was bounded


def test_a_cache_missing_wrap_up_stays_within_budget_plus_cap(tmp_path: Path) -> None:
    # 8,000 tokens with a 2,000 cap once charged 10,570: the estimate assumed the wrap-up hit the cache.
    workspace = sample_repo(tmp_path)
    meter = Meter(cache_hits=True)
    with ChatServer(reply_fn=meter) as server, Store() as store:
        goal = priced_goal(store, workspace, budget_tokens=8000)
        status, reason, _ = run_on(server, store, goal, workspace)
        state = store.get_goal_by_id(goal.goal_id).state
    assert (status, reason) == ("budget_limited", "budget_tokens")
    assert state.wrap_up_cap_tokens == 2000
    assert meter.tokens <= 8000 + 2000, f"charged {meter.tokens} tokens against 8,000 + 2,000"
    assert state.spent.tokens == meter.tokens


def test_a_wrap_up_that_fits_its_cap_is_sent_with_its_output_bounded(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    meter = Meter(output_chars=100)
    with ChatServer(reply_fn=meter) as server, Store() as store:
        goal = priced_goal(store, workspace, budget_tokens=20_000)
        status, reason, _ = run_on(server, store, goal, workspace)
        state = store.get_goal_by_id(goal.goal_id).state
    cap = state.wrap_up_cap_tokens
    assert (status, reason) == ("budget_limited", "budget_tokens") and cap == 5000
    assert meter.wrap_ups == 1  # the wrap-up ran: its whole context, uncached, fits the 5,000 cap
    assert meter.tokens <= 20_000 + cap
    assert 0 < state.spent.wrap_up_tokens <= cap
    wrap_up_max = meter.max_tokens[-1]
    assert wrap_up_max is not None and wrap_up_max <= cap - 1000  # the context alone is over 1,000 tokens


def test_time_budget_binds_tool_calls_and_the_wrap_up_request(tmp_path: Path) -> None:
    # `--budget-time 3s` once ran 28 s. Here a tool call would sleep 60 s and the wrap-up request stalls 60 s.
    workspace = sample_repo(tmp_path)

    def reply(body: dict[str, Any]) -> Completion:
        if "shell" not in {tool["function"]["name"] for tool in body.get("tools", [])}:
            return Completion(text="wrapping up", delay_s=60)
        return Completion(tool_calls=(ToolCallReply("shell", {"command": "sleep 60"}),))

    with ChatServer(reply_fn=reply) as server, Store() as store:
        goal = priced_goal(store, workspace, budget_time="3s")
        status, reason, took = run_on(server, store, goal, workspace)
        state = store.get_goal_by_id(goal.goal_id).state
        results = [payload_of(e.event) for e in events(store, goal, "tool_result")]
        charged = events(store, goal, "usage_charged")
    cap = state.wrap_up_cap_s
    assert (status, reason) == ("budget_limited", "budget_time") and cap == 5.0
    assert took < 3 + cap + 3, f"a 3 s budget ran {took:.1f} s"
    assert results[0]["output"].startswith("interrupted: the goal's time budget ran out")
    assert any("time limit" in payload_of(e.event)["why"] for e in charged)  # the cut wrap-up request is charged


def test_the_wrap_up_runs_only_the_goal_tools(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    original = (workspace / "cart.py").read_text()
    fixed = original.replace("total * percent, 2)", "total * percent / 100, 2)")
    assert fixed != original
    steps = [step("Looking around."),  # text only: the checks run and fail, and the 1-turn budget is used up
             step("", call("write_file", path="cart.py", content=fixed), shell(f"{TESTS}; touch shell-ran")),
             step("", complete("fixed in the wrap-up")), step("done")]
    with Store() as store:
        goal = new_goal(store, workspace, budget_turns=1)
        result = run(store, goal, workspace, scripted(steps))
        results = {payload_of(e.event)["name"]: payload_of(e.event) for e in events(store, goal, "tool_result")}
        offered = [payload_of(e.event)["kind"] for e in events(store, goal, "turn_started")]
    assert offered == ["continuation", "wrap_up"]
    assert (result.status, result.reason) == ("budget_limited", "budget_turns")  # not achieved by the write
    assert not results["write_file"]["ok"] and "unknown tool `write_file`" in results["write_file"]["output"]
    assert not results["shell"]["ok"] and "unknown tool `shell`" in results["shell"]["output"]
    assert (workspace / "cart.py").read_text() == original
    assert not (workspace / "shell-ran").exists()


MID_TURN_BUDGET = 2500
"""A budget turn 1's first request fits in (estimated at about 2,100 tokens with today's tool list) and turn 1
does not: it runs out in the middle of turn 1 while the tool list grows by up to about 350 tokens."""


def test_a_mid_turn_stop_is_checkpointed_and_a_raise_and_resume_continue_it(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    # The patch lands in turn 1; the budget runs out before the turn's next request (MID_TURN_BUDGET).
    steps = [step("", call("apply_patch", patch=FIX_PATCH)), step("", shell("cat cart.py")), step("more")]
    with Store() as store:
        goal = new_goal(store, workspace, budget_tokens=MID_TURN_BUDGET)
        first = run(store, goal, workspace, scripted(steps))
        assert (first.status, first.reason) == ("budget_limited", "budget_tokens")
        stored = [payload_of(e.event) for e in events(store, goal, "checkpoint")]
        checkpoints = [p for p in stored if p.get("turn") == 1]
        assert checkpoints and checkpoints[0]["commit"], "turn 1 was left without its checkpoint commit"
        assert git(workspace, "status", "--porcelain", "--untracked-files=no") == ""
        service.resume(store, store.get_goal_by_id(goal.goal_id), raise_by=BudgetRaise(tokens=100_000))
        again = run(store, goal, workspace, scripted_after(store, goal, [step("", complete()), step("done")]))
    assert (again.status, again.reason) == ("achieved", "checks_passed")


def test_a_mid_turn_stop_then_gk_goal_resume_add_tokens_and_gk_run_continue(tmp_path: Path,
                                                                            goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    steps = [step("", call("apply_patch", patch=FIX_PATCH)), step("", shell("cat cart.py")), step("more"),
             step("", complete()), step("done")]
    script = write_script(tmp_path / "script.json", steps)
    done = gk("exec", "Fix it", "--check", f"tests={TESTS}", "--budget-tokens", str(MID_TURN_BUDGET),
              "--model", f"scripted:{script}", "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 2, done.stdout + done.stderr
    with Store(goalkeeper_home / "state.db") as store:
        [thread] = store.list_threads()
        left = [p for p in (payload_of(e.event) for e in store.events(thread.thread_id, kinds=[CheckpointEvent]))
                if "left_at" in p]
    assert left and left[0]["turn"] == 1 and left[0]["commit"]  # stopped mid-turn 1, and checkpointed
    resumed = gk("goal", "resume", "--add-tokens", "100000", "--cwd", str(workspace), home=goalkeeper_home)
    assert resumed.returncode == 0, resumed.stderr
    again = gk("run", "--cwd", str(workspace), home=goalkeeper_home)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "foreign" not in again.stderr


@pytest.mark.parametrize("varying", ["date +%N", "echo $RANDOM$RANDOM; date +%s%N"])
def test_a_varying_output_spin_ends_stuck_without_any_budget(tmp_path: Path, varying: str) -> None:
    # Once: 679 requests in 40 s, because the output differed every time.
    workspace = sample_repo(tmp_path)
    model = scripted([step("", shell(varying))])  # the last step repeats for ever
    started = time.monotonic()
    with Store() as store:
        goal = new_goal(store, workspace)
        result = run(store, goal, workspace, model)
        nudges = events(store, goal, "nudge")
    assert (result.status, result.reason) == ("unmet", "stuck")
    assert len(nudges) == 1
    assert len(model.requests) <= 7 and time.monotonic() - started < 30


def test_an_endless_turn_of_different_calls_is_nudged_then_stuck(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    model = scripted([step("", shell(f"echo {i}")) for i in range(200)])
    with Store() as store:
        goal = new_goal(store, workspace, no_progress_turns=1)  # 8 calls per turn without a tree change
        result = run(store, goal, workspace, model)
        nudges = [payload_of(e.event)["why"] for e in events(store, goal, "nudge")]
    assert (result.status, result.reason) == ("unmet", "stuck")
    assert len(nudges) == 1 and "without changing the tree" in nudges[0]
    assert len(model.requests) <= 2 * 8 + 1


def test_a_turn_that_keeps_changing_the_tree_is_not_stuck(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    steps = [*(step("", shell(f"echo {i} >> notes.txt")) for i in range(30)), step("", complete()), step("done")]
    with Store() as store:
        goal = new_goal(store, workspace, no_progress_turns=1, checks=["notes=test -s notes.txt"])
        result = run(store, goal, workspace, scripted(steps))
    assert (result.status, result.reason) == ("achieved", "checks_passed")


@pytest.mark.parametrize("flag", [["--add-turns", "-50"], ["--add-tokens", "0"], ["--add-usd", "-1"],
                                  ["--add-time", "-5m"], ["--add-tokens", "-1"], ["--add-usd", "nan"]])
def test_raises_that_are_not_positive_are_refused(tmp_path: Path, goalkeeper_home: Path, flag: list[str]) -> None:
    workspace = sample_repo(tmp_path)
    script = write_script(tmp_path / "script.json", [step("", shell("ls")), step("looked")])
    done = gk("exec", "Fix it", "--check", f"tests={TESTS}", "--budget-turns", "1", "--model", f"scripted:{script}",
              "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 2
    before = gk("goal", "--json", "--cwd", str(workspace), home=goalkeeper_home).stdout
    refused = gk("goal", "resume", *flag, "--cwd", str(workspace), home=goalkeeper_home)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "positive" in refused.stderr or "not a duration" in refused.stderr
    assert gk("goal", "--json", "--cwd", str(workspace), home=goalkeeper_home).stdout == before


@pytest.mark.parametrize("detail", [{"add_turns": -50}, {"add_tokens": -1}, {"add_usd": -0.5},
                                    {"add_time_s": float("nan")}, {"add_tokens": 1.5}, {}])
def test_the_control_path_refuses_raises_that_are_not_positive(tmp_path: Path, detail: dict[str, Any]) -> None:
    workspace = sample_repo(tmp_path)
    with Store() as store:
        goal = new_goal(store, workspace, budget_turns=4)
        with pytest.raises(GoalkeeperError) as refused:
            service.raise_budget(store, goal, control.budget_raise(**detail))
        assert refused.value.hint
        assert store.get_goal_by_id(goal.goal_id).state.limits.turns == 4


def test_decide_rejects_a_raise_that_is_not_positive() -> None:
    for raised in (BudgetRaise(turns=-50), BudgetRaise(tokens=-1), BudgetRaise(usd=float("nan")), BudgetRaise()):
        assert isinstance(decide(GoalState("g"), raised).action, Reject)
