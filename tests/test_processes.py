"""Several processes on one store: pause from another shell, and kill -9 of `gk run` at random points."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from goalkeeper.events import ControlRequestEvent, StatusChangedEvent, payload_of
from goalkeeper.store import Store
from scenario import FIX_PATCH, TESTS, call, complete, gk, gk_popen, sample_repo, shell, step, write_script


def goal_status(home: Path, workspace: Path) -> str:
    with Store(home / "state.db") as store:
        thread = store.current_thread(workspace)
        assert thread is not None
        goal = store.get_goal(thread.thread_id)
        assert goal is not None
        return str(goal.state.status)


def event_count(home: Path, workspace: Path) -> int:
    with Store(home / "state.db") as store:
        thread = store.current_thread(workspace)
        return 0 if thread is None else len(store.events(thread.thread_id))


def wait_for(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


@pytest.mark.slow
def test_pause_from_a_second_process_is_honoured_within_a_second(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    script = write_script(tmp_path / "script.json",
                          [step("", shell(f"echo {i} >> notes.txt; sleep 0.1"), delay_s=0.05) for i in range(200)])
    gk("goal", "Fix it", "--check", f"tests={TESTS}", "--model", f"scripted:{script}", "--cwd", str(workspace),
       home=goalkeeper_home, check=True)
    runner = gk_popen("run", "--cwd", str(workspace), home=goalkeeper_home)
    try:
        wait_for(lambda: event_count(goalkeeper_home, workspace) > 12)
        paused = gk("goal", "pause", "--cwd", str(workspace), home=goalkeeper_home)
        assert paused.returncode == 0, paused.stderr
        assert runner.wait(timeout=10) == 3
    finally:
        runner.kill()
    assert "applied by the running runner" in paused.stdout
    # Measured in the store, from the request being committed to the runner committing the pause.
    with Store(goalkeeper_home / "state.db") as store:
        thread = store.current_thread(workspace)
        assert thread is not None
        [asked] = store.events(thread.thread_id, kinds=[ControlRequestEvent])
        changes = store.events(thread.thread_id, kinds=[StatusChangedEvent])
    [honoured] = [e for e in changes if payload_of(e.event)["to"] == "paused"]
    assert honoured.event.actor == "user" and payload_of(honoured.event)["reason"] == "user_pause"
    assert honoured.ts - asked.ts < 1.0, f"pause took {honoured.ts - asked.ts:.2f}s"


def kill_script(tmp_path: Path) -> Path:
    """Sixty side-effecting calls (each leaves one line), the fix, then completion."""
    steps = [step(f"step {i}", shell(f"echo call-{i} >> effects.log"), delay_s=0.03) for i in range(60)]
    steps += [step("", call("apply_patch", patch=FIX_PATCH)), step("", shell(TESTS)),
              step("", complete("fixed")), step("done")]
    return write_script(tmp_path / "kill.json", steps)


@pytest.mark.slow
def test_kill_9_at_random_points_loses_nothing_and_runs_nothing_twice(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    script = kill_script(tmp_path)
    gk("goal", "Fix the discount bug", "--check", f"tests={TESTS}", "--model", f"scripted:{script}",
       "--cwd", str(workspace), "--no-progress-turns", "50", home=goalkeeper_home, check=True)
    rng = random.Random(20261121)
    kills = 0
    while kills < 20:
        before = event_count(goalkeeper_home, workspace)
        runner = gk_popen("run", "--cwd", str(workspace), home=goalkeeper_home)
        target = before + rng.randint(1, 4)

        def reached(target: int = target, runner: subprocess.Popen[str] = runner) -> bool:
            return event_count(goalkeeper_home, workspace) >= target or runner.poll() is not None

        try:
            wait_for(reached)
            time.sleep(rng.uniform(0, 0.03))
            if runner.poll() is not None:
                break  # it finished before this kill point
            runner.send_signal(signal.SIGKILL)
            runner.wait(timeout=10)
            kills += 1
        finally:
            runner.kill()
    assert kills >= 20
    final = gk("run", "--cwd", str(workspace), home=goalkeeper_home, timeout=120)
    assert final.returncode == 0, final.stdout + final.stderr
    assert_history_is_whole(goalkeeper_home, workspace)


def assert_history_is_whole(home: Path, workspace: Path) -> None:
    """Every call answered once, no response recorded twice, and no finished call ran twice."""
    with Store(home / "state.db") as store:
        thread = store.current_thread(workspace)
        assert thread is not None
        records = store.events(thread.thread_id)
    seqs = [r.seq for r in records]
    assert seqs == sorted(set(seqs))
    call_ids = [c["id"] for r in records if r.event.kind == "model_response" for c in payload_of(r.event)["tool_calls"]]
    assert len(call_ids) == len(set(call_ids)), "a model response was recorded twice"
    results = Counter(payload_of(r.event)["call_id"] for r in records if r.event.kind == "tool_result")
    intents = Counter(payload_of(r.event)["call_id"] for r in records if r.event.kind == "tool_intent")
    assert set(results) == set(call_ids) and max(results.values()) == 1, "a call lost or answered twice"
    assert max(intents.values()) == 1, "a call was started twice"
    lines = (workspace / "effects.log").read_text().split()
    assert len(lines) == len(set(lines)), f"a finished call ran twice: {Counter(lines).most_common(3)}"
    answers = {payload_of(r.event)["call_id"]: payload_of(r.event) for r in records if r.event.kind == "tool_result"}
    for record in (r for r in records if r.event.kind == "model_response"):
        for tool_call in payload_of(record.event)["tool_calls"]:
            command = json.loads(tool_call["arguments"]).get("command", "")
            if "effects.log" in command and answers[tool_call["id"]]["ok"]:
                assert command.split()[1] in lines, f"a finished call left no trace: {command}"
    status = [payload_of(r.event)["to"] for r in records if r.event.kind == "status_changed"]
    assert status[-1] == "achieved"


@pytest.mark.slow
def test_clear_from_a_second_process_stops_the_runner(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    script = write_script(tmp_path / "script.json",
                          [step("", shell(f"echo {i} >> notes.txt"), delay_s=0.05) for i in range(200)])
    gk("goal", "Fix it", "--check", f"tests={TESTS}", "--model", f"scripted:{script}", "--cwd", str(workspace),
       home=goalkeeper_home, check=True)
    runner = gk_popen("run", "--cwd", str(workspace), home=goalkeeper_home)
    try:
        wait_for(lambda: event_count(goalkeeper_home, workspace) > 8)
        cleared = gk("goal", "clear", "--cwd", str(workspace), home=goalkeeper_home)
        assert cleared.returncode == 0, cleared.stderr
        assert runner.wait(timeout=10) == 3
        output = runner.stdout.read() if runner.stdout else ""
    finally:
        runner.kill()
    assert "cleared" in output
    shown = gk("goal", "--cwd", str(workspace), home=goalkeeper_home)
    assert shown.returncode == 4 and "no goal" in shown.stderr
