"""The SQLite event store: real files in tmp_path, real second processes for the multi-process cases."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from goalkeeper.core.state import GoalState, Limits, Spent
from goalkeeper.errors import (
    BlobNotFoundError,
    GoalNotFoundError,
    LeaseHeldError,
    StaleGoalError,
    StoreError,
    StoreLockedError,
)
from goalkeeper.events import (
    ChatMessageEvent,
    GoalClearedEvent,
    GoalSetEvent,
    NudgeEvent,
    ToolResultEvent,
    TurnStartedEvent,
    UsageChargedEvent,
    payload_of,
)
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import GoalSettings, RunSettings
from goalkeeper.store import (
    SCHEMA_VERSION,
    Goal,
    Lease,
    Store,
    ThreadRecord,
    default_store_path,
    lease_is_live,
    new_id,
)
from goalkeeper.store.locks import describe_lock_holders

# Second processes print one line when they are ready, then hold their state until stdin closes.
HOLD_WRITE_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
"""

HOLD_LEASE = """
import sys
from pathlib import Path
from goalkeeper.store import Store
store = Store(Path(sys.argv[1]))
store.acquire_lease(sys.argv[2])
print("held", flush=True)
sys.stdin.read()
"""

APPEND_EVENTS = """
import sys
from pathlib import Path
from goalkeeper.events import ChatMessageEvent
from goalkeeper.store import Store
store = Store(Path(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
for i in range(int(sys.argv[3])):
    store.append_events(sys.argv[2], [ChatMessageEvent(content=str(i))])
print("done", flush=True)
"""

OPEN_FOR_READING = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("SELECT COUNT(*) FROM threads").fetchone()
print("open", flush=True)
sys.stdin.read()
"""

OPEN_STORE = """
import sys
from pathlib import Path
from goalkeeper.store import Store
Store(Path(sys.argv[1])).close()
"""


class Helper:
    """A second python process that announces when it is ready."""

    def __init__(self, code: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.pid = self.process.pid

    def wait_for(self, line: str) -> None:
        assert self.process.stdout is not None
        got = self.process.stdout.readline().strip()
        assert got == line, f"helper said {got!r}, exit code {self.process.poll()}"

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def finish(self) -> None:
        """Close stdin so the helper exits on its own, and reap it."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=30) == 0

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)


@pytest.fixture
def helpers() -> Iterator[list[Helper]]:
    started: list[Helper] = []
    yield started
    for helper in started:
        if helper.process.poll() is None:
            helper.kill()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    (tmp_path / "store").mkdir()
    return tmp_path / "store" / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path) as opened:
        yield opened


PURSUING = GoalState(goal_id="goal_000000000001")
ONE_TURN = replace(PURSUING, spent=Spent(turns=1))
TURNS_10 = GoalSettings(run=RunSettings(shell_timeout_s=10.0))


@pytest.fixture
def thread(store: Store, tmp_path: Path) -> ThreadRecord:
    return store.create_thread(tmp_path)


def put_goal(store: Store, thread: ThreadRecord, objective: str = "make it fast") -> Goal:
    goal, _ = store.put_goal(thread.thread_id, Contract(outcome=objective), PURSUING, GoalSettings(), [])
    return goal


@contextmanager
def raw(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection behind the store's back, to inspect or age what it wrote. Closed after."""
    with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        yield conn


# Opening, migrating, refusing


def test_fresh_store_is_migrated_and_reopening_changes_nothing(db_path: Path) -> None:
    with Store(db_path) as store:
        thread = store.create_thread(db_path.parent)
    with raw(db_path) as conn:
        schema = conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"threads", "goals", "events", "blobs", "leases"} <= {name for name, _ in schema}

    with Store(db_path) as store:
        assert store.get_thread(thread.thread_id) == thread
    with raw(db_path) as conn:
        assert conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall() == schema
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_processes_opening_a_fresh_store_at_once_all_succeed(db_path: Path) -> None:
    processes = [subprocess.Popen([sys.executable, "-c", OPEN_STORE, str(db_path)]) for _ in range(4)]
    assert [process.wait(timeout=60) for process in processes] == [0, 0, 0, 0]
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_store_from_a_newer_goalkeeper_is_refused(db_path: Path) -> None:
    Store(db_path).close()
    with raw(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="upgrade goalkeeper"):
        Store(db_path)


def _not_a_database(path: Path) -> None:
    path.write_bytes(b"these are notes, not a database\n" * 200)


def _events_root(path: Path) -> int:
    """The byte offset of the events table's root page, in a store of 100 events."""
    with Store(path) as store:
        thread = store.create_thread(path.parent)
        store.append_events(thread.thread_id, [NudgeEvent(why="x" * 200) for _ in range(100)])
    with raw(path) as conn:
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((root - 1) * page_size)


def _damage(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _damaged_freeblock(path: Path) -> None:
    """The root page's first-freeblock pointer now points nowhere: only a full check notices."""
    _damage(path, _events_root(path) + 1)


def _damaged_page_type(path: Path) -> None:
    """The root page's type byte is no type: any read of the events table fails."""
    _damage(path, _events_root(path))


def assert_corrupt_error(error: StoreError, db_path: Path) -> None:
    message = str(error)
    assert str(db_path) in message
    assert "corrupt" in message
    assert "gk doctor" in message
    assert f"mv {db_path} {db_path}.corrupt-" in message


def test_a_file_that_is_not_a_database_is_refused_at_open_and_left_untouched(db_path: Path) -> None:
    _not_a_database(db_path)
    before = hashlib.sha256(db_path.read_bytes()).hexdigest()

    with pytest.raises(StoreError) as refused:
        Store(db_path)

    assert_corrupt_error(refused.value, db_path)
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == before
    assert sorted(path.name for path in db_path.parent.iterdir()) == ["state.db"]


def test_damage_met_in_use_is_a_clear_error_that_names_the_check_and_leaves_the_file(db_path: Path) -> None:
    _damaged_page_type(db_path)
    before = hashlib.sha256(db_path.read_bytes()).hexdigest()

    with Store(db_path) as store:  # opening reads no page of the events table: the full check is not run
        [thread] = store.list_threads()
        with pytest.raises(StoreError) as refused:
            store.events(thread.thread_id)

    assert_corrupt_error(refused.value, db_path)
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == before
    assert sorted(path.name for path in db_path.parent.iterdir()) == ["state.db"]


def test_the_full_check_finds_damage_that_reads_do_not(db_path: Path) -> None:
    _damaged_freeblock(db_path)
    before = hashlib.sha256(db_path.read_bytes()).hexdigest()

    with Store(db_path) as store:
        [thread] = store.list_threads()
        assert len(store.events(thread.thread_id)) == 100
        problems = store.check_integrity()

    assert "free space corruption" in "\n".join(problems), problems
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == before


def test_a_sound_store_passes_the_full_check(store: Store, thread: ThreadRecord) -> None:
    put_goal(store, thread)
    assert store.check_integrity() == []


def test_locked_store_names_the_process_holding_the_lock(
    db_path: Path, thread: ThreadRecord, helpers: list[Helper]
) -> None:
    holder = Helper(HOLD_WRITE_LOCK, str(db_path))
    helpers.append(holder)
    holder.wait_for("locked")

    with Store(db_path, busy_timeout_s=0.5) as store:
        assert store.get_thread(thread.thread_id) == thread  # readers never wait for the writer
        started = time.monotonic()
        with pytest.raises(StoreLockedError) as locked:
            store.append_events(thread.thread_id, [NudgeEvent(why="note")])
        assert time.monotonic() - started < 5

    assert f"pid {holder.pid} (" in str(locked.value)
    assert "BEGIN IMMEDIATE" in str(locked.value)  # its command line
    holder.finish()


def test_default_store_path_is_in_goalkeeper_home(goalkeeper_home: Path) -> None:
    assert default_store_path() == goalkeeper_home / "state.db"


def test_default_store_path_falls_back_to_dot_goalkeeper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOALKEEPER_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_store_path() == tmp_path / ".goalkeeper" / "state.db"
    assert (tmp_path / ".goalkeeper").is_dir()


def test_new_ids_are_prefixed_hex() -> None:
    thread_id = new_id("thr")
    assert thread_id.startswith("thr_") and len(thread_id) == 16
    int(thread_id[4:], 16)
    assert new_id("goal") != new_id("goal")


# Threads


def test_each_workspace_has_its_own_current_thread(store: Store, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    assert store.current_thread(one) is None

    first = store.create_thread(one)
    other = store.create_thread(two)
    second = store.create_thread(one / ".." / "one")  # stored resolved, so this is the same workspace

    assert second.workspace == str(one.resolve())
    assert store.current_thread(one) == second
    assert store.current_thread(two) == other
    assert store.list_threads() == [second, other, first]


def test_unknown_thread_points_to_the_threads_command(store: Store) -> None:
    with pytest.raises(GoalNotFoundError, match="gk threads"):
        store.get_thread("thr_000000000000")
    with pytest.raises(GoalNotFoundError, match="no thread"):
        store.put_goal("thr_000000000000", Contract(outcome="x"), PURSUING, GoalSettings(), [])


# Goals and the commit path


def test_put_goal_replaces_the_current_goal_and_old_events_keep_their_goal_id(
    store: Store, thread: ThreadRecord
) -> None:
    old, old_events = store.put_goal(thread.thread_id, Contract(outcome="a"), PURSUING, GoalSettings(),
                                     [GoalSetEvent(outcome="a", verified=False, contract={})])
    new, new_events = store.put_goal(thread.thread_id, Contract(outcome="b"), PURSUING, TURNS_10,
                                     [GoalSetEvent(outcome="b", verified=False, contract={})])

    assert store.get_goal(thread.thread_id) == new
    assert new.version == 1 and new.settings == TURNS_10 and new.contract.outcome == "b" and new.goal_id != old.goal_id
    assert store.get_goal_by_id(old.goal_id).standing == "replaced"
    assert [event.goal_id for event in store.events(thread.thread_id)] == [old.goal_id, new.goal_id]
    assert store.events(thread.thread_id, goal_id=old.goal_id) == old_events
    assert new_events[0].event == GoalSetEvent(outcome="b", verified=False, contract={})
    assert new_events[0].event.actor == "user"


def test_commit_appends_events_and_replaces_state_together(store: Store, thread: ThreadRecord) -> None:
    goal = put_goal(store, thread)

    version, records = store.commit(goal.goal_id, [TurnStartedEvent(turn_kind="initial", turn=1)],
                                    state=ONE_TURN, expected_version=1)

    stored = store.get_goal_by_id(goal.goal_id)
    assert version == 2 == stored.version
    assert stored.state == ONE_TURN
    assert stored.settings == goal.settings
    assert store.events(thread.thread_id) == records
    assert records[0].goal_id == goal.goal_id and records[0].seq == store.last_seq(thread.thread_id)

    version, _ = store.commit(goal.goal_id, [NudgeEvent(why="events only")])  # events only: no new version
    assert version == 2
    version, _ = store.commit(goal.goal_id, [], settings=TURNS_10, expected_version=2)
    assert version == 3 and store.get_goal_by_id(goal.goal_id).settings == TURNS_10


@pytest.mark.parametrize("change", ["version", "replaced", "cleared"])
def test_commit_to_a_stale_goal_raises_and_writes_nothing(
    store: Store, thread: ThreadRecord, change: str
) -> None:
    goal = put_goal(store, thread)
    store.commit(goal.goal_id, [], state=replace(PURSUING, status="paused"))  # now at version 2
    if change == "replaced":
        put_goal(store, thread, "something else")
    if change == "cleared":
        store.delete_goal(goal.goal_id, [GoalClearedEvent()])
    before = (store.last_seq(thread.thread_id), store.get_goal_by_id(goal.goal_id))

    with pytest.raises(StaleGoalError) as stale:
        store.commit(goal.goal_id, [UsageChargedEvent(why="test", charged_tokens=100)], state=PURSUING,
                     expected_version=1)

    assert stale.value.reason == change
    assert stale.value.current_version == (2 if change == "version" else None)
    assert (store.last_seq(thread.thread_id), store.get_goal_by_id(goal.goal_id)) == before


def test_commit_to_an_unknown_goal_is_stale(store: Store) -> None:
    with pytest.raises(StaleGoalError) as stale:
        store.commit("goal_000000000000", [UsageChargedEvent(why="test", charged_tokens=1)])
    assert stale.value.reason == "missing" and stale.value.current_version is None


def test_failed_commit_writes_no_events_and_no_state(store: Store, thread: ThreadRecord) -> None:
    goal = put_goal(store, thread)
    broken = ToolResultEvent(call_id="c", name="shell", output="", ok=True, signal=None, data={"x": object()},
                             files_touched=[], full_output_chars=None)
    with pytest.raises(ValueError, match="serialize"):
        store.commit(goal.goal_id, [NudgeEvent(why="fine"), broken], state=replace(PURSUING, status="achieved"))
    assert store.events(thread.thread_id) == []
    assert store.get_goal_by_id(goal.goal_id) == goal


def test_a_goal_row_is_parsed_once_into_typed_values(store: Store, thread: ThreadRecord, db_path: Path) -> None:
    """The store hands out the contract, state and settings typed; a row whose state was never saved
    starts from its contract's budget."""
    contract = Contract.model_validate({"outcome": "go", "budget": {"tokens": 9000, "time": "1h"}})
    goal, _ = store.put_goal(thread.thread_id, contract, PURSUING, TURNS_10, [])
    assert (goal.contract, goal.state, goal.settings) == (contract, PURSUING, TURNS_10)
    with raw(db_path) as conn:
        conn.execute("UPDATE goals SET state = '{}' WHERE goal_id = ?", (goal.goal_id,))
    started = store.get_goal_by_id(goal.goal_id).state
    assert (started.goal_id, started.status, started.limits) == (goal.goal_id, "pursuing", Limits(9000, None, 3600.0))


def test_cleared_goal_is_no_longer_current_but_stays_readable(store: Store, thread: ThreadRecord) -> None:
    goal = put_goal(store, thread)
    records = store.delete_goal(goal.goal_id, [GoalClearedEvent()])

    assert store.get_goal(thread.thread_id) is None
    assert store.get_goal_by_id(goal.goal_id).standing == "cleared"
    assert store.get_goal_by_id(goal.goal_id).contract == goal.contract
    assert store.events(thread.thread_id) == records
    with pytest.raises(StaleGoalError):
        store.delete_goal(goal.goal_id, [])
    with pytest.raises(GoalNotFoundError, match="no goal"):
        store.get_goal_by_id("goal_000000000000")


# Events


def test_events_from_two_processes_interleave_in_seq_order_and_filter(
    store: Store, thread: ThreadRecord, helpers: list[Helper]
) -> None:
    goal = put_goal(store, thread)
    other = Helper(APPEND_EVENTS, str(store.path), thread.thread_id, "40")
    helpers.append(other)
    other.wait_for("ready")
    other.send("go")
    for i in range(40):
        store.commit(goal.goal_id, [NudgeEvent(why=str(i))])
    other.wait_for("done")
    other.finish()

    events = store.events(thread.thread_id)
    assert len(events) == 80
    assert [event.seq for event in events] == sorted({event.seq for event in events})
    nudges = [e for e in events if isinstance(e.event, NudgeEvent)]
    messages = [e for e in events if isinstance(e.event, ChatMessageEvent)]
    assert [e.event.why for e in nudges if isinstance(e.event, NudgeEvent)] == [str(i) for i in range(40)]
    assert [e.event.content for e in messages if isinstance(e.event, ChatMessageEvent)] == [str(i) for i in range(40)]
    assert {e.goal_id for e in nudges} == {goal.goal_id} and {e.goal_id for e in messages} == {None}
    assert store.events(thread.thread_id, goal_id=goal.goal_id) == nudges
    assert store.events(thread.thread_id, kinds=[ChatMessageEvent]) == messages
    assert store.events(thread.thread_id, kinds=[]) == []
    assert store.last_seq(thread.thread_id) == events[-1].seq


def test_events_page_by_seq_cursor(store: Store, thread: ThreadRecord, tmp_path: Path) -> None:
    elsewhere = store.create_thread(tmp_path / "elsewhere")
    for i in range(7):
        store.append_events(thread.thread_id, [ChatMessageEvent(content=str(i))])
        store.append_events(elsewhere.thread_id, [ChatMessageEvent(content=str(i))])

    pages, cursor = [], 0
    while page := store.events(thread.thread_id, after_seq=cursor, limit=3):
        pages.append([event.event.content for event in page if isinstance(event.event, ChatMessageEvent)])
        cursor = page[-1].seq
    assert pages == [["0", "1", "2"], ["3", "4", "5"], ["6"]]
    feed = store.events_after(0, 100)  # every thread's, as the server's event stream reads them
    assert len(feed) == 14 and [e.seq for e in feed] == sorted(e.seq for e in feed)
    assert store.events_after(feed[0].seq, 2, elsewhere.thread_id) == [e for e in feed if e.thread_id ==
                                                                        elsewhere.thread_id][:2]
    assert store.last_seq() == feed[-1].seq
    assert store.last_seq(store.create_thread(tmp_path / "empty").thread_id) == 0


def test_append_events_checks_thread_and_goal(store: Store, thread: ThreadRecord, tmp_path: Path) -> None:
    goal = put_goal(store, thread)
    other_thread = store.create_thread(tmp_path / "other")
    with pytest.raises(GoalNotFoundError, match="no goal"):
        store.append_events(other_thread.thread_id, [NudgeEvent(why="note")], goal_id=goal.goal_id)
    with pytest.raises(GoalNotFoundError, match="no thread"):
        store.append_events("thr_000000000000", [NudgeEvent(why="note")])
    [note] = store.append_events(thread.thread_id, [NudgeEvent(why="why?")], goal.goal_id)
    assert note.goal_id == goal.goal_id


def test_json_keeps_floats_and_non_ascii_and_is_stored_with_sorted_keys(
    store: Store, thread: ThreadRecord
) -> None:
    data = {"z": 0.1 + 0.2, "a": "héllo, 世界 ✓", "m": [1, None, True]}
    event = ToolResultEvent(call_id="c", name="shell", output="✓", ok=True, signal=None, data=data, files_touched=[],
                            full_output_chars=None)
    [record] = store.append_events(thread.thread_id, [event])
    assert record.event == event == store.events(thread.thread_id)[0].event
    payload = payload_of(event)
    with raw(store.path) as conn:
        text = conn.execute("SELECT payload FROM events").fetchone()[0]
    assert text == json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


# Blobs


def test_blobs_round_trip(store: Store) -> None:
    text = "line ✓\n" * 50_000
    blob_id = store.put_blob(text)
    assert blob_id.startswith("blob_")
    assert store.get_blob(blob_id) == text
    assert store.put_blob(text) == blob_id
    assert store.get_blob(store.put_blob("")) == ""
    with pytest.raises(BlobNotFoundError):
        store.get_blob("blob_missing")


# Leases


def test_lease_held_by_a_live_process_is_refused_naming_it(
    store: Store, thread: ThreadRecord, helpers: list[Helper]
) -> None:
    goal = put_goal(store, thread)
    holder = Helper(HOLD_LEASE, str(store.path), goal.goal_id)
    helpers.append(holder)
    holder.wait_for("held")

    with pytest.raises(LeaseHeldError) as held:
        store.acquire_lease(goal.goal_id)

    assert f"pid {holder.pid}" in str(held.value)
    assert "gk goal pause" in str(held.value)
    lease = store.lease(goal.goal_id)
    assert lease is not None and lease.pid == holder.pid and lease_is_live(lease)


@pytest.mark.parametrize("ending", ["exit", "kill -9"])
def test_lease_of_a_dead_process_is_taken_over(
    store: Store, thread: ThreadRecord, helpers: list[Helper], ending: str
) -> None:
    goal = put_goal(store, thread)
    holder = Helper(HOLD_LEASE, str(store.path), goal.goal_id)
    helpers.append(holder)
    holder.wait_for("held")
    holder.finish() if ending == "exit" else holder.kill()

    lease = store.acquire_lease(goal.goal_id)

    assert lease.pid == os.getpid()
    assert store.lease(goal.goal_id) == lease


def test_lease_with_a_stale_heartbeat_is_taken_over_even_if_its_pid_lives(
    store: Store, thread: ThreadRecord, helpers: list[Helper]
) -> None:
    goal = put_goal(store, thread)
    holder = Helper(HOLD_LEASE, str(store.path), goal.goal_id)
    helpers.append(holder)
    holder.wait_for("held")
    with raw(store.path) as conn:  # the holder stopped heartbeating a minute ago (or its pid was reused)
        conn.execute("UPDATE leases SET heartbeat_at = heartbeat_at - 60")

    assert store.acquire_lease(goal.goal_id, stale_after_s=15).pid == os.getpid()


def test_lease_on_another_host_counts_by_heartbeat_alone(store: Store, thread: ThreadRecord) -> None:
    goal = put_goal(store, thread)
    with raw(store.path) as conn:
        conn.execute("INSERT INTO leases VALUES (?, 'elsewhere', 1, ?, ?)", (goal.goal_id, time.time(), 0))
    with pytest.raises(LeaseHeldError, match="on host elsewhere"):
        store.acquire_lease(goal.goal_id)
    with raw(store.path) as conn:
        conn.execute("UPDATE leases SET heartbeat_at = heartbeat_at - 60")
    assert store.acquire_lease(goal.goal_id).host != "elsewhere"


def test_heartbeat_fails_once_another_runner_took_the_lease_over(
    store: Store, thread: ThreadRecord, helpers: list[Helper]
) -> None:
    goal = put_goal(store, thread)
    first = store.acquire_lease(goal.goal_id)
    again = store.acquire_lease(goal.goal_id)  # re-acquiring our own lease is fine
    assert again.acquired_at == first.acquired_at and again.heartbeat_at >= first.heartbeat_at
    store.heartbeat(goal.goal_id)
    with raw(store.path) as conn:
        conn.execute("UPDATE leases SET heartbeat_at = heartbeat_at - 60")

    usurper = Helper(HOLD_LEASE, str(store.path), goal.goal_id)
    helpers.append(usurper)
    usurper.wait_for("held")

    with pytest.raises(LeaseHeldError, match=f"pid {usurper.pid}"):
        store.heartbeat(goal.goal_id)
    store.release_lease(goal.goal_id)  # not ours any more: left alone
    lease = store.lease(goal.goal_id)
    assert lease is not None and lease.pid == usurper.pid


def test_released_lease_is_gone_and_heartbeat_says_so(store: Store, thread: ThreadRecord) -> None:
    goal = put_goal(store, thread)
    store.acquire_lease(goal.goal_id)
    store.release_lease(goal.goal_id)
    assert store.lease(goal.goal_id) is None
    with pytest.raises(LeaseHeldError, match="no longer holds"):
        store.heartbeat(goal.goal_id)
    with pytest.raises(GoalNotFoundError):
        store.acquire_lease("goal_000000000000")


def test_lease_liveness_needs_a_fresh_heartbeat_and_a_live_process() -> None:
    import socket

    here = socket.gethostname()
    now = time.time()
    assert lease_is_live(Lease("g", here, os.getpid(), now, now), now=now)
    assert not lease_is_live(Lease("g", here, os.getpid(), now - 20, now), stale_after_s=15, now=now)
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    assert not lease_is_live(Lease("g", here, finished.pid, now, now), now=now)


def test_lock_holders_fall_back_to_processes_with_the_file_open(
    db_path: Path, helpers: list[Helper]
) -> None:
    Store(db_path).close()
    assert describe_lock_holders(db_path) == "unknown process"
    reader = Helper(OPEN_FOR_READING, str(db_path))
    helpers.append(reader)
    reader.wait_for("open")

    assert describe_lock_holders(db_path).startswith(f"pid {reader.pid} (")
    assert describe_lock_holders(db_path).endswith("(which have it open)")
    reader.finish()
