"""Waiting without spinning: the `wait` tool probes its `until` command in the goal's sandbox until it exits 0,
with no model request meanwhile; the goal shows `waiting`; a pause ends the wait and a crash does not (the
restarted run carries the same wait on, deadline and all). Real git, SQLite, bwrap and `gk`; the model scripted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chat_server import ChatServer, Completion, ToolCallReply
from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.events import ControlRequestEvent, ToolResultEvent, WaitEndedEvent, WaitStartedEvent
from goalkeeper.goals import control, service
from goalkeeper.goals.views import GoalSummary, summarize
from goalkeeper.models.scripted import ScriptedModel, ScriptedToolCall
from goalkeeper.render.terminal import event_line
from goalkeeper.run.runner import Runner, RunResult
from goalkeeper.spec.settings import GoalSettings, ModelSettings, RunSettings
from goalkeeper.store import EventRecord, Goal, Store
from goalkeeper.tools.wait import MAX_TIMEOUT_S, WaitArgs, plan_wait
from goalkeeper.tui.status import status_text
from scenario import call, complete, events, gk, gk_popen, sample_repo, scripted, step

FAST = RunSettings(heartbeat_s=0.2, control_poll_s=0.05, wait_min_interval_s=0.05)
"""Probes may come every 0.05 s (the floor a person sets is 5 s by default)."""


def wait(until: str, interval_s: float = 0.05, timeout_s: float = 30) -> ScriptedToolCall:
    return call("wait", until=until, interval_s=interval_s, timeout_s=timeout_s)


def waiting_goal(store: Store, workspace: Path) -> Goal:
    contract = contract_from_flags("Ship once the deploy is up", checks=["t=true"])
    settings = GoalSettings(model=ModelSettings(provider="scripted", model="scripted", script="inline"), run=FAST)
    return control.set_goal(store, workspace, contract, settings, replace_existing=True)


def drive(store: Store, goal: Goal, workspace: Path, model: ScriptedModel,
          on_event: Callable[[EventRecord], None] | None = None) -> RunResult:
    runner = Runner(store, store.get_goal_by_id(goal.goal_id), model, workspace, on_event, handle_signals=False)
    return asyncio.run(runner.run())


def payloads(store: Store, goal: Goal, kind: str) -> list[Any]:
    return [record.event for record in events(store, goal, kind)]


def on_wait_started(then: Callable[[], None]) -> Callable[[EventRecord], None]:
    """An event hook that calls `then` once the wait is committed."""
    def hook(record: EventRecord) -> None:
        if isinstance(record.event, WaitStartedEvent):
            then()
    return hook


def test_a_wait_returns_to_the_model_once_until_exits_0_and_the_goal_shows_waiting(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    model = scripted([step("", wait("test -f deployed")), step("", complete()), step("Done.")])
    seen: list[GoalSummary] = []
    with Store() as store:
        goal = waiting_goal(store, workspace)

        def deploy_soon() -> None:
            seen.append(summarize(store, store.get_goal_by_id(goal.goal_id)))
            threading.Timer(0.3, (workspace / "deployed").touch).start()

        result = drive(store, goal, workspace, model, on_wait_started(deploy_soon))
        [ended] = payloads(store, goal, "wait_ended")
        after = summarize(store, store.get_goal_by_id(goal.goal_id))
    assert result.status == "achieved"
    [during] = seen
    assert during.waiting is not None and during.waiting.until == "test -f deployed"
    assert during.status_line().startswith("waiting · ")
    assert status_text(during).startswith("Waiting for `test -f deployed` · ")
    assert isinstance(ended, WaitEndedEvent) and ended.reason == "done" and ended.probes >= 2
    assert ended.exit_code == 0 and after.waiting is None
    told = model.requests[1].messages[-1]
    assert told.role == "tool" and told.content.startswith("the wait is over: `test -f deployed` exited 0")


def test_a_wait_whose_command_never_succeeds_times_out_and_says_how_its_interval_was_raised(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    model = scripted([step("", wait("echo not yet; false", interval_s=0.01, timeout_s=0.3)), step("", complete()),
                      step("Done.")])
    with Store() as store:
        goal = waiting_goal(store, workspace)
        drive(store, goal, workspace, model)
        [ended] = payloads(store, goal, "wait_ended")
        [result] = [r for r in payloads(store, goal, "tool_result") if r.name == "wait"]
    assert isinstance(ended, WaitEndedEvent) and ended.reason == "timeout" and ended.probes >= 2
    assert ended.exit_code == 1 and 0.3 <= ended.waited_s < 5
    assert isinstance(result, ToolResultEvent) and not result.ok
    assert result.output.startswith("the wait timed out")
    assert "interval_s 0.01 was raised to 0.05" in result.output and "not yet" in result.output


def test_a_pause_during_a_wait_ends_it_and_the_model_decides_again_on_resume(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    script = [step("", wait("test -f never", timeout_s=60)), step("", complete()), step("Done.")]
    with Store() as store:
        goal = waiting_goal(store, workspace)

        def pause() -> None:
            store.append_events(goal.thread_id, [ControlRequestEvent(action="pause")], goal_id=goal.goal_id)

        paused = drive(store, goal, workspace, scripted(script), on_wait_started(pause))
        [ended] = payloads(store, goal, "wait_ended")
        service.resume(store, store.get_goal_by_id(goal.goal_id))
        model = scripted(script)
        achieved = drive(store, goal, workspace, model)
        started = payloads(store, goal, "wait_started")
    assert (paused.status, paused.reason) == ("paused", "user_pause")
    assert isinstance(ended, WaitEndedEvent) and ended.reason == "paused" and ended.waited_s < 10
    assert achieved.status == "achieved" and len(started) == 1  # the wait was not carried on: the model chose
    told = model.requests[0].messages[-1]
    assert told.role == "tool" and told.content.startswith("interrupted: a person paused the goal during the wait")


def test_a_clear_during_a_wait_stops_it_and_the_goal(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    model = scripted([step("", wait("test -f never", timeout_s=60)), step("", complete()), step("Done.")])
    with Store() as store:
        goal = waiting_goal(store, workspace)

        def clear() -> None:
            store.append_events(goal.thread_id, [ControlRequestEvent(action="clear")], goal_id=goal.goal_id)

        result = drive(store, goal, workspace, model, on_wait_started(clear))
        [ended] = payloads(store, goal, "wait_ended")
        current = store.get_goal(goal.thread_id)
    assert result.status is None and current is None  # cleared: the thread has no goal
    assert isinstance(ended, WaitEndedEvent) and ended.reason == "cleared" and len(model.requests) == 1


def test_a_wait_left_open_by_a_crash_is_carried_on_with_its_deadline_and_no_model_request(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    script = [step("", wait("test -f deployed", timeout_s=60)), step("", complete()), step("Done.")]
    with Store() as store:
        goal = waiting_goal(store, workspace)

        def crash() -> None:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # the run stops at its next await, like a kill: nothing more is written

        with pytest.raises(asyncio.CancelledError):
            drive(store, goal, workspace, scripted(script), on_wait_started(crash))
        assert payloads(store, goal, "wait_ended") == [] and summarize(store, goal).waiting is not None
        model = scripted(script)
        threading.Timer(0.3, (workspace / "deployed").touch).start()
        achieved = drive(store, goal, workspace, model)
        [started] = payloads(store, goal, "wait_started")
        [ended] = payloads(store, goal, "wait_ended")
        intents = [e for e in payloads(store, goal, "tool_intent") if e.name == "wait"]
    assert achieved.status == "achieved" and len(intents) == 1
    assert isinstance(ended, WaitEndedEvent) and ended.reason == "done"
    # The restarted run asked the model nothing until the wait was over: its first request carries the result.
    assert model.requests[0].messages[-1].content.startswith("the wait is over")
    assert isinstance(started, WaitStartedEvent) and started.deadline == started.started_at + 60


def test_the_until_command_runs_in_the_goals_sandbox_and_cannot_write_outside(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    escape = Path.home() / f"gk-wait-escape-{uuid.uuid4().hex}"
    until = f"touch ../escaped {escape}; touch inside; test -f inside"
    try:
        with Store() as store:
            goal = waiting_goal(store, workspace)
            drive(store, goal, workspace, scripted([step("", wait(until)), step("", complete()), step("Done.")]))
            [ended] = payloads(store, goal, "wait_ended")
        assert isinstance(ended, WaitEndedEvent) and ended.reason == "done" and ended.probes == 1
        assert (workspace / "inside").exists()
        assert not (workspace.parent / "escaped").exists() and not escape.exists()
    finally:
        escape.unlink(missing_ok=True)


def test_an_until_command_the_rules_deny_is_refused_and_never_probed(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    with Store() as store:
        goal = waiting_goal(store, workspace)
        drive(store, goal, workspace, scripted([step("", wait("git push origin HEAD; touch pushed")),
                                                step("", complete()), step("Done.")]))
        [ended] = payloads(store, goal, "wait_ended")
        [result] = [r for r in payloads(store, goal, "tool_result") if r.name == "wait"]
        [approval] = payloads(store, goal, "approval")
    assert isinstance(ended, WaitEndedEvent) and (ended.reason, ended.probes) == ("refused", 0)
    assert isinstance(result, ToolResultEvent) and result.output.startswith("denied by rule `git push*`")
    assert approval.action == "deny" and not (workspace / "pushed").exists()


def test_gk_log_gives_a_wait_a_line_where_it_starts_and_where_it_ends() -> None:
    def line(event: WaitStartedEvent | WaitEndedEvent) -> str | None:
        return event_line(EventRecord(seq=1, thread_id="t", goal_id="g", ts=0.0, event=event))

    assert line(WaitStartedEvent(call_id="c", until="test -f up", interval_s=30, timeout_s=600, started_at=0,
                                 deadline=600)) == "  wait: until `test -f up` exits 0, every 30s for at most 600s"
    assert line(WaitEndedEvent(call_id="c", reason="timeout", probes=21, exit_code=1, waited_s=600.2)) == \
        "  wait ended (timeout) after 600.2s, 21 probes"


def test_the_interval_and_timeout_are_kept_within_their_bounds_and_the_time_budget() -> None:
    def plan(time_left_s: float | None = None, **asked: float) -> tuple[float, float, str]:
        started = plan_wait(WaitArgs(until="true", **asked), "call_1", now=1000.0, time_left_s=time_left_s,
                            min_interval_s=5.0)
        assert started.deadline == 1000.0 + started.timeout_s
        return started.interval_s, started.timeout_s, started.note

    assert plan() == (60.0, 1800.0, "")
    assert plan(interval_s=1, timeout_s=120) == (5.0, 120.0, "interval_s 1 was raised to 5")
    assert plan(interval_s=7200) == (3600.0, 1800.0, "interval_s 7200 was cut to 3600")
    assert plan(timeout_s=10**6)[1:] == (MAX_TIMEOUT_S, "timeout_s 1e+06 was cut to the maximum, 1d")
    assert plan(600.0, timeout_s=3600)[1:] == (600.0, "timeout_s 3600 was cut to the goal's remaining time, 10m")
    assert plan(0.0, timeout_s=60)[1] == 0.0  # no time left: one probe, then the wait ends


# ---- across a kill -9 of the real `gk run`, the model server counting requests


PROBE = "echo probe >> probes.log; test -f deployed"
"""Each probe leaves a line, so the test sees the restarted run probing."""


def probes(workspace: Path) -> int:
    log = workspace / "probes.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def wait_then_finish(body: dict[str, Any]) -> Completion:
    """The goal's model: wait for `deployed`, then complete; anything else (a restatement) gets text."""
    if "update_goal" not in {tool["function"]["name"] for tool in body.get("tools") or []}:
        return Completion(text="Ship once the deploy is up.")
    answered = sum(message["role"] == "assistant" for message in body["messages"])
    if answered == 0:
        arguments = {"until": PROBE, "interval_s": 0.1, "timeout_s": 120}
        return Completion(tool_calls=(ToolCallReply("wait", arguments),))
    if answered == 1:
        return Completion(tool_calls=(ToolCallReply("update_goal", {"status": "complete", "summary": "shipped"}),))
    return Completion(text="Done.")


def stored(home: Path, kind: type[Any]) -> list[Any]:
    with Store(home / "state.db") as store:
        return [r.event for thread in store.list_threads() for r in store.events(thread.thread_id, kinds=[kind])]


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow  # two real `gk run` processes, one killed
def test_gk_run_after_a_kill_9_resumes_the_wait_with_no_model_request_during_it(
        tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    (goalkeeper_home / "config.toml").write_text("restate_before_start = false\n[run]\nwait_min_interval_s = 0.1\n")
    with ChatServer(reply_fn=wait_then_finish) as server:
        done = gk("goal", "Ship once the deploy is up", "--check", "t=true", "--base-url", server.base_url,
                  "--model", "test-model", "--force", "--cwd", str(workspace), home=goalkeeper_home)
        assert done.returncode == 0, done.stdout + done.stderr
        runner = gk_popen("run", "--cwd", str(workspace), home=goalkeeper_home)
        try:
            wait_for(lambda: stored(goalkeeper_home, WaitStartedEvent), "the wait to start")
            asked = len(server.requests)
            os.kill(runner.pid, signal.SIGKILL)
            runner.wait(timeout=30)
        finally:
            runner.kill()
        shown = gk("status", "--cwd", str(workspace), home=goalkeeper_home).stdout
        before = probes(workspace)
        rerun = gk_popen("run", "--cwd", str(workspace), home=goalkeeper_home)
        try:
            wait_for(lambda: probes(workspace) >= before + 3, "the restarted run to probe three times")
            assert len(server.requests) == asked
            (workspace / "deployed").touch()
            assert rerun.wait(timeout=60) == 0, rerun.stdout.read() if rerun.stdout else ""
        finally:
            rerun.kill()
    [started] = stored(goalkeeper_home, WaitStartedEvent)
    [ended] = stored(goalkeeper_home, WaitEndedEvent)
    assert "waiting" in shown and PROBE in shown
    assert ended.reason == "done" and ended.probes >= 3
    # Nothing during the wait: the one request after it carries its result (answered by the completion).
    [after] = server.requests[asked:]
    assert after["messages"][-1]["content"].startswith("the wait is over")
    assert started.until == PROBE
