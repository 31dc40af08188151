"""`gk status`, `gk goal`, `gk log` and `gk threads` answered at a glance (cli/glance.py) print what the full
commands print, and leave to them everything a glance must not answer.

Goals in several states are written through the real Store into a real SQLite file; each command runs both
ways in this process (the glance's `answer`, and the typer app the glance falls back to) and the outputs are
compared. The summary dict is compared with `summarize(...).as_json()` too.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from goalkeeper.cli.glance import answer
from goalkeeper.cli.group import app
from goalkeeper.core.lifecycle import Reason
from goalkeeper.core.state import GoalState, Limits, Spent
from goalkeeper.events import (
    BaselineEvent,
    CheckpointEvent,
    Event,
    Evidence,
    EvidenceEvent,
    GoalSetEvent,
    HookRanEvent,
    InstructionFile,
    InstructionsLoadedEvent,
    ModelResponseEvent,
    StatusChangedEvent,
    ToolIntentEvent,
    ToolResultEvent,
    TurnStartedEvent,
    Usage,
    VerificationPinsEvent,
    WaitStartedEvent,
)
from goalkeeper.goals.glance import open_glance, summary_of
from goalkeeper.goals.views import summarize
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import AgentSettings, GoalSettings, RunSettings
from goalkeeper.store import SCHEMA_VERSION, Goal, Store
from goalkeeper.store import glance as store_glance

CHECKS = [{"name": "tests", "run": "pytest -q"}]


def evidence(passed: bool, name: str = "tests", target: str | None = None) -> Evidence:
    return Evidence(name=name, kind="check", command="pytest -q", exit_code=0 if passed else 1, duration_s=1.25,
                    output_tail="ok", passed=passed, metric=3.5 if target else None, target=target)


def ran(wait: bool = False) -> list[Event]:
    """A run's events: baseline, pins, a turn with a shell call, a hook, a check run, a checkpoint (a wait)."""
    events: list[Event] = [
        BaselineEvent(evidence=[evidence(False), evidence(False, "lint")], keep_green_active=[],
                      keep_green_dropped=["lint"], tree_hash="0" * 40),
        VerificationPinsEvent(pins="{}", edits="", files=["tests/test_a.py", "tests/test_b.py"]),
        InstructionsLoadedEvent(commit="c" * 40, workdir="", max_bytes=32768, text="be kind", files=[
            InstructionFile(path="AGENTS.md", size=40000, loaded=32768, cut=True)]),
        TurnStartedEvent(turn=1, turn_kind="start"),
        ModelResponseEvent(content="Looking.\nmore", tool_calls=[], model="m", finish_reason="stop",
                           usage=Usage(input_tokens=5, cached_input_tokens=0, output_tokens=3, charged_tokens=8),
                           usd=0.0),
        ToolIntentEvent(call_id="c1", name="shell", arguments='{"command": "pytest -q"}'),
        ToolResultEvent(call_id="c1", name="shell", output="1 failed\nE assert", ok=False, data={}, signal=None,
                        files_touched=[], full_output_chars=None),
        HookRanEvent(event="post_tool", command="ruff check .", exit_code=1, duration_s=0.5, output_tail="E1\nE2",
                     vetoed=True, tool="shell"),
        EvidenceEvent(trigger="completion", turn=1, evidence=[evidence(True, target="< 5")], tree_hash="1" * 40,
                      surface={"state": "modified", "modified": ["tests/test_a.py"]}),
        CheckpointEvent(turn=1, turn_kind="start", note={"done": "fixed it", "next": "ask", "checklist_done": [2]},
                        files_touched=["app.py"], commands=["pytest -q"], tokens=10, tree_hash="1" * 40),
    ]
    if wait:
        now = time.time()
        events.append(WaitStartedEvent(call_id="w1", until="gh run watch", interval_s=30, timeout_s=600,
                                       started_at=now, deadline=now + 600))
    return events


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("GOALKEEPER_HOME", str(home))
    monkeypatch.delenv("GOALKEEPER_STORE_URL", raising=False)
    return home


@pytest.fixture
def store(home: Path) -> Iterator[Store]:
    with Store() as opened:
        yield opened


def goal_in(store: Store, workspace: Path, state: GoalState, events: list[Event], *, checks: bool = True,
            settings: GoalSettings | None = None) -> Goal:
    workspace.mkdir(parents=True, exist_ok=True)
    thread = store.create_thread(workspace)
    contract = Contract.model_validate({"outcome": "make it pass", "checks": CHECKS if checks else [],
                                        "checklist": ["find it", "fix it"]})
    goal, _ = store.put_goal(thread.thread_id, contract, state, settings or GoalSettings(),
                             [GoalSetEvent(outcome="make it pass", verified=checks, contract={})])
    store.commit(goal.goal_id, events)
    return store.get_goal_by_id(goal.goal_id)


def both_ways(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """What `gk ARGV` prints at a glance, and what the full command prints."""
    assert answer(argv) == 0
    glanced = capsys.readouterr().out
    assert app(argv, standalone_mode=False) in (0, None)
    return glanced, capsys.readouterr().out


STATES = {
    "pursuing, waiting, a live runner": (GoalState("g", spent=Spent(tokens=1234, usd=0.5, time_s=75, turns=1),
                                                   limits=Limits(tokens=50_000, usd=2.0, time_s=3600, turns=9)),
                                         True, True),
    "paused at a review point": (GoalState("g", "paused", Reason.REVIEW_POINT), False, True),
    "achieved, unverified": (GoalState("g", "achieved", Reason.AUDIT_ACCEPTED, verified=False, spent=Spent(tokens=9),
                                       limits=Limits(tokens=100)), False, False),
}


@pytest.mark.parametrize("name", STATES)
def test_a_glance_prints_what_the_full_commands_print(name: str, store: Store, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    state, wait, checks = STATES[name]
    workspace = tmp_path / "ws"
    events = ran(wait)
    if state.status == "paused":
        events.append(StatusChangedEvent(actor="harness", from_status="pursuing", to="paused", reason="review_point",
                                         why="after turn 1", files=["app.py"], since="a" * 40))
    goal = goal_in(store, workspace, state, events, checks=checks)
    if wait:
        store.acquire_lease(goal.goal_id)
    glance = open_glance()
    assert glance is not None
    with closing(glance):
        row = glance.current_goal(goal.thread_id)
        assert row is not None
        assert summary_of(glance, row, str(workspace)) == summarize(store, goal).as_json()
    shown = {}
    for command in ("status", "goal", "log", "report"):
        glanced, full = both_ways([command, "--cwd", str(workspace)], capsys)
        assert glanced == full, command
        shown[command] = glanced
    for argv in (["report", "--pr", "--cwd", str(workspace)], ["report", f"--goal={goal.goal_id}"]):
        glanced, full = both_ways(argv, capsys)
        assert glanced == full, argv
    assert "✗ shell: 1 failed" in shown["log"] and "— VETOED: E2" in shown["log"]
    assert "[x] 2. fix it" in shown["status"] and "red at baseline, not required: lint" in shown["status"]
    assert ("waiting:   until `gh run watch` exits 0" in shown["status"]) == wait
    assert ("· runner " in shown["status"]) == wait
    assert ("changed since the last review point" in shown["goal"]) == (state.status == "paused")
    assert "| `tests` | check | FAIL | PASS | — → 3.5 (< 5) | 0 | 1.2s |" in shown["report"]
    glanced, full = both_ways(["status", f"--thread={goal.thread_id}"], capsys)
    assert glanced == full
    for listing in (["threads"], ["threads", "--cwd", str(workspace)]):
        glanced, full = both_ways(listing, capsys)
        assert glanced == full and goal.thread_id in glanced


def test_what_a_glance_leaves_to_the_full_command(store: Store, home: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    workspace, elsewhere = tmp_path / "ws", tmp_path / "empty"
    elsewhere.mkdir()
    pursuing = GoalState("g")
    goal = goal_in(store, workspace, pursuing, ran())
    at = ["--cwd", str(workspace)]
    assert answer(["status", *at]) == 0
    # Forms it does not read: JSON, help, an unknown or repeated flag, a flag with no value, report.
    for argv in (["status", "--json", *at], ["log", "--json", *at], ["status", "--help"], ["status", "-x"],
                 ["status", *at, *at], ["status", "--cwd"], ["threads", "--thread", goal.thread_id],
                 ["report", "--json", *at], ["report", "--pr=yes", *at], ["goal", "pause", *at]):
        assert answer(argv) is None, argv
    # Errors are the full command's: no goal here, an unknown thread, a workspace that does not exist.
    for argv in (["status", "--cwd", str(elsewhere)], ["status", "--thread", "thr_nope"],
                 ["log", "--cwd", str(tmp_path / "missing")], ["report", "--goal", "goal_nope"]):
        assert answer(argv) is None, argv
    # Goals whose summary needs more than their rows: child agents allowed; `gk goal` before the first run.
    with_children = GoalSettings(run=RunSettings(agents=AgentSettings(max_threads=2)))
    goal_in(store, tmp_path / "kids", pursuing, ran(), settings=with_children)
    assert answer(["status", "--cwd", str(tmp_path / "kids")]) is None
    goal_in(store, tmp_path / "new", pursuing, [])
    assert answer(["goal", "--cwd", str(tmp_path / "new")]) is None
    assert answer(["status", "--cwd", str(tmp_path / "new")]) == 0
    goal_in(store, tmp_path / "ended", GoalState("g", "unmet", Reason.MAX_ATTEMPTS), [])
    assert answer(["goal", "--cwd", str(tmp_path / "ended")]) == 0  # ended before a run: nothing to pin
    # A PostgreSQL store, and a store file only Store may open: a link, not private, another schema version.
    monkeypatch.setenv("GOALKEEPER_STORE_URL", "postgresql://gk@127.0.0.1:1/gk")
    assert answer(["status", *at]) is None
    monkeypatch.delenv("GOALKEEPER_STORE_URL")
    path = home / "state.db"
    path.chmod(0o644)
    assert answer(["status", *at]) is None
    path.chmod(0o600)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    assert answer(["status", *at]) is None
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    assert answer(["status", *at]) == 0
    linked = tmp_path / "linked"
    linked.mkdir()
    os.symlink(path, linked / "state.db")
    monkeypatch.setenv("GOALKEEPER_HOME", str(linked))
    assert answer(["status", *at]) is None


def test_the_glance_reads_the_schema_the_store_writes_and_root_knows_its_commands() -> None:
    from goalkeeper.cli import glance
    from goalkeeper.cli.root import GLANCED

    assert store_glance.SCHEMA_VERSION == SCHEMA_VERSION
    assert set(GLANCED) == set(glance.OPTIONS)  # root hands over only what the glance reads


def test_a_reader_that_goes_away_ends_the_glance_quietly(store: Store, tmp_path: Path) -> None:
    """`gk log | head`: the pipe closes under the glance's write; it exits 141, as a shell pipeline expects,
    with no traceback."""
    workspace = tmp_path / "ws"
    goal_in(store, workspace, GoalState("g"), ran())
    child = subprocess.Popen([sys.executable, "-m", "goalkeeper", "log", "--cwd", str(workspace)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # before the child writes: its first write finds no reader
    _, errors = child.communicate(timeout=60)
    assert child.returncode == 141, errors
    assert b"Traceback" not in errors
