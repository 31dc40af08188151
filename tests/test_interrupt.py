"""Interruptible work: `gk goal pause` from another process, SIGTERM and Ctrl-C stop a running tool call within
2 s. Its whole process group is killed, the call is recorded as interrupted, and the goal is paused; a resume
then goes on from there. All from outside: the real `gk run` in a subprocess, the store, and /proc."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from goalkeeper.events import payload_of
from goalkeeper.store import EventRecord, Store
from scenario import TESTS, event_class, gk, gk_popen, sample_repo, shell, step, write_script

pytestmark = pytest.mark.slow  # real `gk run` processes stopped by signals and resumed

#: A duration no other process on the machine sleeps for, so /proc can tell whether ours is still there.
SLEEP = "61.2345"
STOP_WITHIN_S = 2.0


def sleepers() -> list[int]:
    """Pids of processes still running our `sleep`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if SLEEP.encode() in argv:
                found.append(int(entry.name))
    return found


def goal_events(home: Path, kind: str) -> list[EventRecord]:
    with Store(home / "state.db") as store:
        return [e for thread in store.list_threads() for e in store.events(thread.thread_id, kinds=[event_class(kind)])]


def wait_for(condition: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["pause", "SIGTERM", "SIGINT"])
def test_a_running_tool_call_stops_within_2s_and_is_recorded_as_interrupted(
        tmp_path: Path, goalkeeper_home: Path, how: str) -> None:
    workspace = sample_repo(tmp_path)
    script = write_script(tmp_path / "script.json", [step("", shell(f"sleep {SLEEP}; touch finished")),
                                                     step("looked")])
    gk("goal", "Fix it", "--check", f"tests={TESTS}", "--model", f"scripted:{script}", "--cwd", str(workspace),
       home=goalkeeper_home, check=True)
    runner = gk_popen("run", "--cwd", str(workspace), home=goalkeeper_home)
    pauser: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: goal_events(goalkeeper_home, "tool_intent") and sleepers(), "the sleep to start")
        if how == "pause":
            pauser = gk_popen("goal", "pause", "--cwd", str(workspace), home=goalkeeper_home)
            wait_for(lambda: goal_events(goalkeeper_home, "control_request"), "the pause request")
        else:
            runner.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGINT)
        asked = time.monotonic()
        code = runner.wait(timeout=30)
        took = time.monotonic() - asked
    finally:
        runner.kill()
        if pauser is not None:
            pauser.wait(timeout=30)
    assert took <= STOP_WITHIN_S, f"{how} took {took:.2f} s to stop the call"
    assert code == 3  # paused
    assert sleepers() == [] and not (workspace / "finished").exists()
    [result] = goal_events(goalkeeper_home, "tool_result")
    stored = payload_of(result.event)
    assert stored["output"].startswith("interrupted:") and stored["data"]["interrupted"]
    shown = gk("goal", "--cwd", str(workspace), home=goalkeeper_home).stdout
    assert ("paused (user_pause)" if how == "pause" else "paused (interrupted)") in shown


def test_after_an_interrupted_call_resume_goes_on_without_rerunning_it(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    script = write_script(tmp_path / "script.json", [step("", shell(f"sleep {SLEEP}; echo once >> ran.txt")),
                                                     step("stopped there")])
    gk("goal", "Fix it", "--check", f"tests={TESTS}", "--model", f"scripted:{script}", "--cwd", str(workspace),
       home=goalkeeper_home, check=True)
    runner = gk_popen("run", "--cwd", str(workspace), home=goalkeeper_home)
    try:
        wait_for(lambda: sleepers(), "the sleep to start")
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=30) == 3
    finally:
        runner.kill()
    assert gk("goal", "resume", "--cwd", str(workspace), home=goalkeeper_home).returncode == 0
    gk("run", "--cwd", str(workspace), home=goalkeeper_home, timeout=120)
    intents = goal_events(goalkeeper_home, "tool_intent")
    assert len(intents) == 1 and not (workspace / "ran.txt").exists() and sleepers() == []
