"""Constant-cost reads: each goal's digest row, kept current at commit and built by the migration for an old
store; kind-filtered reads of one goal through its index; `gk log` page by page; `gk doctor`.

Real SQLite files in tmp_path and the real `gk` in subprocesses.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from goalkeeper.context.replay import replay
from goalkeeper.core.digest import GoalDigest, digest_of
from goalkeeper.core.state import GoalState, Limits, Spent
from goalkeeper.events import (
    BaselineEvent,
    CheckpointEvent,
    Event,
    Evidence,
    EvidenceEvent,
    GoalClearedEvent,
    GoalSetEvent,
    ImplementsEvent,
    NudgeEvent,
    VerificationPinsEvent,
    VerificationSurfaceEvent,
)
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import GoalSettings
from goalkeeper.store import Goal, Store
from scenario import gk

DATA = Path(__file__).parent / "data"
PURSUING = GoalState("pursuing", spent=Spent(), limits=Limits())


def evidence(passed: bool, metric: float | None = None) -> list[Evidence]:
    return [Evidence(name="tests", kind="check", command="pytest", exit_code=0 if passed else 1, duration_s=1.0,
                     output_tail="ok" if passed else "FAILED", passed=passed, metric=metric)]


def history() -> list[Event]:
    """A goal's digest-worthy events and some it ignores, in the order a run writes them."""
    return [
        BaselineEvent(evidence=evidence(False, 9.0), keep_green_active=["lint"], keep_green_dropped=["flaky"],
                      tree_hash="0" * 40),
        VerificationPinsEvent(pins='{"files": [], "globs": []}', edits="", files=["tests/test_app.py"]),
        VerificationSurfaceEvent(surface='{"observed": true, "paths": [], "listed_dirs": []}',
                                 summary={"files": 3, "observed": True}),
        NudgeEvent(why="keep going"),
        CheckpointEvent(turn=1, turn_kind="start", note={"done": "first", "checklist_done": [1, "x"]},
                        files_touched=["app.py"], commands=[], tokens=10, tree_hash="1" * 40),
        EvidenceEvent(trigger="completion", turn=1, evidence=evidence(False, 7.0), tree_hash="1" * 40,
                      surface={"state": "unchanged"}),
        EvidenceEvent(trigger="completion", turn=2, evidence=evidence(True), tree_hash="2" * 40),
        CheckpointEvent(turn=2, turn_kind="continuation", note={"done": "second", "checklist_done": [2]},
                        files_touched=[], commands=[], tokens=20, tree_hash="2" * 40),
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "state.db") as opened:
        yield opened


def new_goal(store: Store, workspace: Path, events: list[Event] | None = None) -> Goal:
    thread = store.create_thread(workspace)
    goal, _ = store.put_goal(thread.thread_id, Contract(outcome="make it fast", checklist=["a", "b"]), PURSUING,
                             GoalSettings(), events or [GoalSetEvent(outcome="make it fast", verified=True,
                                                                     contract={})])
    return goal


def stored_events(store: Store, goal: Goal) -> list[Event]:
    return [record.event for record in store.events(goal.thread_id, goal_id=goal.goal_id)]


def test_the_digest_row_is_the_goals_events_folded_whichever_way_they_were_committed(store: Store,
                                                                                  tmp_path: Path) -> None:
    events = history()
    goal = new_goal(store, tmp_path, events[:1])
    store.commit(goal.goal_id, events[1:4])
    store.append_events(goal.thread_id, events[4:6], goal_id=goal.goal_id)
    store.commit(goal.goal_id, events[6:7])
    store.delete_goal(goal.goal_id, [*events[7:], GoalClearedEvent()])

    digest = store.digest(goal.goal_id)
    assert digest.to_json() == digest_of(stored_events(store, goal)).to_json()
    assert digest.evidence == evidence(True) and digest.baseline == events[0]
    assert digest.last_checkpoint == events[7] and digest.checklist_done == {1, 2}
    assert digest.pinned == ["tests/test_app.py"] and digest.observed_surface == {"files": 3, "observed": True}
    assert digest.run_surface == {"state": "unchanged"}  # a later run that recorded none leaves it
    assert digest.metric_trend == [{"turn": 1, "tests": 7.0}]
    assert GoalDigest.from_json(json.loads(json.dumps(digest.to_json()))) == digest


def test_the_runners_fold_reads_the_same_digest(store: Store, tmp_path: Path) -> None:
    goal = new_goal(store, tmp_path, history())
    facts = replay(store.events(goal.thread_id, goal_id=goal.goal_id))
    assert facts.digest == store.digest(goal.goal_id)
    assert facts.evidence == evidence(True) and facts.keep_green == ["lint"]


def test_a_digest_row_belongs_to_its_goal_alone(store: Store, tmp_path: Path) -> None:
    first, second = new_goal(store, tmp_path / "a"), new_goal(store, tmp_path / "b")
    store.commit(first.goal_id, history())
    assert store.digest(second.goal_id) == GoalDigest()
    store.append_events(second.thread_id, [ImplementsEvent(spike_goal_id=first.goal_id, spike_branch=None,
                                                           base_commit="0" * 40, prd="# PRD", spike_status=None)],
                        goal_id=second.goal_id)
    assert store.goals_implementing(first.goal_id) == [(second.thread_id, second.goal_id)]
    assert store.goals_implementing(second.goal_id) == []


def test_a_store_written_by_release_8c370e0_gets_a_digest_row_for_every_goal(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    shutil.copyfile(DATA / "store-8c370e0.db", path)
    with Store(path) as store:
        goals = [store.get_goal_by_id(row[0]) for row in _rows(path, "SELECT goal_id FROM goals")]
        for goal in goals:
            assert store.digest(goal.goal_id).to_json() == digest_of(stored_events(store, goal)).to_json()
        assert any(store.digest(goal.goal_id).baseline is not None for goal in goals)
    assert {row[0] for row in _rows(path, "SELECT goal_id FROM goal_summaries")} == {g.goal_id for g in goals}


def test_a_goals_reads_of_some_kinds_use_the_goal_kind_index(store: Store, tmp_path: Path) -> None:
    goal = new_goal(store, tmp_path, history())
    store.commit(goal.goal_id, [NudgeEvent(why=str(n)) for n in range(50)])
    records = store.events(goal.thread_id, goal_id=goal.goal_id, kinds=[EvidenceEvent, BaselineEvent])
    assert [r.event.kind for r in records] == ["baseline", "evidence", "evidence"]
    assert [r.seq for r in records] == sorted(r.seq for r in records)
    query = ("EXPLAIN QUERY PLAN SELECT * FROM events INDEXED BY events_by_goal_kind WHERE +thread_id = ? "
             "AND seq > 0 AND goal_id = ? AND kind IN ('evidence', 'baseline') ORDER BY seq")
    plan = " ".join(str(row[3]) for row in _rows(store.path, query, (goal.thread_id, goal.goal_id)))
    assert "events_by_goal_kind (goal_id=? AND kind=?" in plan


def test_event_pages_stream_a_goals_events_in_order(store: Store, tmp_path: Path) -> None:
    goal = new_goal(store, tmp_path)
    other = new_goal(store, tmp_path / "other")
    for number in range(25):
        store.commit(goal.goal_id, [NudgeEvent(why=f"{number}-{n}") for n in range(10)])
        store.commit(other.goal_id, [NudgeEvent(why="other")])
    pages = list(store.event_pages(goal.thread_id, goal_id=goal.goal_id, page=100))
    assert [len(page) for page in pages] == [100, 100, 51]
    assert [r for page in pages for r in page] == store.events(goal.thread_id, goal_id=goal.goal_id)


def test_gk_log_prints_every_event_of_a_long_goal(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with Store(goalkeeper_home / "state.db") as store:
        goal = new_goal(store, workspace)
        store.commit(goal.goal_id, [NudgeEvent(why=str(n)) for n in range(1200)])
    rows = [json.loads(line) for line in gk("log", "--json", "--cwd", str(workspace), home=goalkeeper_home,
                                            check=True).stdout.splitlines()]
    assert [row["kind"] for row in rows] == ["goal_set"] + ["nudge"] * 1200
    assert [row["payload"]["why"] for row in rows[1:]] == [str(n) for n in range(1200)]
    assert [row["seq"] for row in rows] == sorted(row["seq"] for row in rows)


def test_gk_doctor_says_the_store_is_intact(goalkeeper_home: Path) -> None:
    done = gk("doctor", "--json", home=goalkeeper_home)
    findings = {finding["name"]: finding for finding in json.loads(done.stdout)}
    assert findings["store"]["ok"] and "intact" in findings["store"]["detail"]
    assert str(goalkeeper_home / "state.db") in findings["store"]["detail"]
    assert done.returncode == (0 if findings["sandbox"]["ok"] else 1)


def test_gk_doctor_names_damage_that_reads_miss_and_exits_1(goalkeeper_home: Path) -> None:
    path = goalkeeper_home / "state.db"
    with Store(path) as store:
        thread = store.create_thread(goalkeeper_home)
        store.append_events(thread.thread_id, [NudgeEvent(why="x" * 200) for _ in range(100)])
    root = _rows(path, "SELECT rootpage FROM sqlite_master WHERE name = 'events'")[0][0]
    page_size = _rows(path, "PRAGMA page_size")[0][0]
    data = bytearray(path.read_bytes())
    data[(root - 1) * page_size + 1] ^= 0xFF  # a freeblock pointer to nowhere: reads do not notice
    path.write_bytes(bytes(data))

    done = gk("doctor", home=goalkeeper_home)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "failed SQLite's integrity check" in done.stdout and "free space corruption" in done.stdout
    assert "Traceback" not in done.stderr and "fix:" in done.stdout


def test_gk_doctor_reports_a_file_that_is_not_a_database(goalkeeper_home: Path) -> None:
    (goalkeeper_home / "state.db").write_bytes(b"not a database\n" * 300)
    done = gk("doctor", home=goalkeeper_home)
    assert done.returncode == 1 and "corrupt" in done.stdout and "Traceback" not in done.stderr


def _rows(path: Path, query: str, params: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return list(conn.execute(query, params))


COMMIT_MANY = """
import sys
from pathlib import Path
from goalkeeper.events import NudgeEvent, ToolIntentEvent
from goalkeeper.store import Store
store = Store(Path(sys.argv[1]))
for n in range(20):
    event = ToolIntentEvent(call_id=str(n), name="shell", arguments="{}") if sys.argv[3] == "intent" else \\
        NudgeEvent(why=str(n))
    store.commit(sys.argv[2], [event])
"""


def _fsyncs(store: Store, goal: Goal, kind: str) -> int:
    """fsync and fdatasync calls of a process that commits 20 events of `kind` one by one (strace counts)."""
    done = subprocess.run(["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", sys.executable, "-c", COMMIT_MANY,
                           str(store.path), goal.goal_id, kind], capture_output=True, text=True, check=True)
    return sum(int(line.split()[3]) for line in done.stderr.splitlines() if line.rstrip().endswith("sync"))


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to count fsync calls")
def test_only_commits_of_intents_and_requests_pay_an_fsync(store: Store, tmp_path: Path) -> None:
    goal = new_goal(store, tmp_path)
    assert _fsyncs(store, goal, "intent") >= 20  # each intent survives a power cut before the runner acts
    assert _fsyncs(store, goal, "nudge") <= 3  # a process crash loses none of them (WAL); closing may sync
