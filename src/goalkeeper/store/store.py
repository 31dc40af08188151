"""The Store: an append-only event log of threads and goals in one SQLite file, or in a PostgreSQL database
that a fleet's machines share (store_url), shared by processes.

It records; it never decides. What an event means is the runner's business. Every write is one short
transaction, so several processes can open their own Store on the same file or database at once. The
statements are the same for both backends (dialect.py); db.py and postgres.py hold what differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from goalkeeper.core.digest import GoalDigest
from goalkeeper.core.state import GoalState, state_from_dict, state_to_dict
from goalkeeper.errors import BlobNotFoundError, GoalNotFoundError, StaleGoalError, StoreError
from goalkeeper.events import Event, ToolIntentEvent, parse_event, payload_of
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import GoalSettings
from goalkeeper.store import leases, summaries
from goalkeeper.store.db import Database, prepare_path
from goalkeeper.store.dialect import Backend, Connection, Row, is_postgres_url, shown_url
from goalkeeper.store.home import goalkeeper_home, private_directory
from goalkeeper.store.records import EventRecord, Goal, Lease, ThreadRecord, dumps, goal_of, new_id


def blob_id_of(text: str) -> str:
    """The id `Store.put_blob` gives `text`: named by its content, so a cut tool output can name its blob
    before the blob is stored."""
    return "blob_" + hashlib.sha256(text.encode()).hexdigest()[:32]


def default_store_path() -> Path:
    """`$GOALKEEPER_HOME/state.db`, by default `~/.goalkeeper/state.db`. The directory is created (0700)."""
    return private_directory(goalkeeper_home().resolve()) / "state.db"


class Store:
    """Threads, goals, events, blobs and leases in one SQLite file (WAL), or in a PostgreSQL database when opened
    with a `postgresql://` URL. Every method is synchronous.

    The commit path is the intent-before-action guarantee of DESIGN §5: `commit` returns only after its
    events are durable (they survive any process crash; intents are also fsynced, see `_durable`), so a
    caller that commits an intent and then acts can never act without a record of it. After a crash, an
    intent with no result is visible and can be marked interrupted; nothing that was done is ever forgotten
    or done twice.
    """

    def __init__(self, path: Path | str | None = None, busy_timeout_s: float = 10.0) -> None:
        """The store file at `path` ($GOALKEEPER_HOME/state.db by default), or the PostgreSQL store a
        `postgresql://` URL names. `location` opens the same store again; `shown` names it in messages."""
        self._db: Backend
        if isinstance(path, str) and is_postgres_url(path):
            self.location: Path | str = path
            self.shown: str = shown_url(path)
            # What stays on this machine (staged repositories, workspaces) goes where its store file would be.
            self.path = default_store_path()
            self._db = _postgres(path, busy_timeout_s)
        else:
            self.path = prepare_path(Path(path) if path is not None else default_store_path())
            self.location, self.shown = self.path, str(self.path)
            self._db = Database(self.path, busy_timeout_s)

    @property
    def backend(self) -> str:
        """`sqlite` or `postgresql`: what holds the store."""
        return self._db.dialect.name

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # Threads

    def create_thread(self, workspace: Path, parent_thread_id: str | None = None, *,
                      current: bool = True) -> ThreadRecord:
        """Start a thread in `workspace` (forked from `parent_thread_id`); with `current`, make it the workspace's
        current thread (a child agent's thread is not: the goal's stays current)."""
        thread = ThreadRecord(new_id("thr"), str(workspace.resolve()), time.time(), parent_thread_id)
        with self._db.write() as conn:
            conn.execute("INSERT INTO threads (thread_id, workspace, created_at, parent_thread_id) VALUES (?, ?, ?, ?)",
                         (thread.thread_id, thread.workspace, thread.created_at, thread.parent_thread_id))
            if current:
                conn.execute("INSERT INTO current_threads (workspace, thread_id) VALUES (?, ?) "
                             "ON CONFLICT (workspace) DO UPDATE SET thread_id = excluded.thread_id",
                             (thread.workspace, thread.thread_id))
        return thread

    def current_thread(self, workspace: Path) -> ThreadRecord | None:
        """The thread that commands in `workspace` act on when no thread is named."""
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT t.* FROM current_threads c JOIN threads t USING (thread_id) WHERE c.workspace = ?",
                (str(workspace.resolve()),),
            ).fetchone()
        return None if row is None else _thread(row)

    def get_thread(self, thread_id: str) -> ThreadRecord:
        with self._db.read() as conn:
            row = conn.execute("SELECT * FROM threads WHERE thread_id = ?", (thread_id,)).fetchone()
        if row is None:
            raise _no_thread(thread_id)
        return _thread(row)

    def thread_for(self, workspace: Path, thread_id: str | None = None, create: bool = False) -> ThreadRecord:
        """The thread named, or the workspace's current one (created on request)."""
        if thread_id:
            return self.get_thread(thread_id)
        thread = self.current_thread(workspace)
        if thread is None:
            if not create:
                raise _no_goal(workspace)
            thread = self.create_thread(workspace)
        return thread

    def list_threads(self) -> list[ThreadRecord]:
        """Every thread, newest first."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT * FROM threads ORDER BY created_at DESC, rowid DESC").fetchall()
        return [_thread(row) for row in rows]

    # Goals

    def put_goal(self, thread_id: str, contract: Contract, state: GoalState, settings: GoalSettings,
                 events: Sequence[Event], goal_id: str | None = None) -> tuple[Goal, list[EventRecord]]:
        """Make a new goal the thread's current one, with `events` appended under its id, atomically. The id is
        `goal_id` when given (its state names it, so the caller may mint it with `new_id("goal")`).

        A goal the thread already had is marked replaced (its row and events stay readable); any write
        still guarded by it fails with StaleGoalError from now on.
        """
        texts = [dumps(contract.model_dump(mode="json")), dumps(state_to_dict(state)), dumps(_settings(settings))]
        encoded = _encode(events)
        now = time.time()
        # Read back from the stored text, so the goal handed out is the one `get_goal` will return.
        contract_json, state_json, settings_json = (json.loads(text) for text in texts)
        goal = goal_of(goal_id or new_id("goal"), thread_id, contract_json, state_json, settings_json, version=1,
                       created_at=now, updated_at=now, standing="current")
        with self._db.write(durable=_durable(events)) as conn:
            if conn.execute("SELECT 1 FROM threads WHERE thread_id = ?", (thread_id,)).fetchone() is None:
                raise _no_thread(thread_id)
            conn.execute("UPDATE goals SET standing = 'replaced', updated_at = ? "
                         "WHERE thread_id = ? AND standing = 'current'", (now, thread_id))
            conn.execute(
                "INSERT INTO goals (goal_id, thread_id, contract, state, settings, version, standing, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 1, 'current', ?, ?)",
                (goal.goal_id, thread_id, *texts, now, now),
            )
            records = _append(conn, thread_id, goal.goal_id, encoded, now)
            summaries.start(conn, goal.goal_id, events)
        return goal, records

    def get_goal(self, thread_id: str) -> Goal | None:
        """The thread's current goal; None when it has none (or there is no such thread)."""
        with self._db.read() as conn:
            row = conn.execute("SELECT * FROM goals WHERE thread_id = ? AND standing = 'current'",
                               (thread_id,)).fetchone()
        return None if row is None else _goal(row)

    def current_goal(self, workspace: Path, thread_id: str | None = None) -> Goal:
        """The goal of the workspace's current thread (or of the thread named), or a clear error."""
        goal = self.get_goal(self.thread_for(workspace, thread_id).thread_id)
        if goal is None:
            raise _no_goal(workspace)
        return goal

    def goal_states(self, goal_ids: Sequence[str]) -> dict[str, GoalState]:
        """The state of each goal named that exists (no contract or settings parsed): what a batch polls twice
        a second for its caps and its progress lines."""
        if not goal_ids:
            return {}
        with self._db.read() as conn:
            rows = conn.execute(f"SELECT goal_id, state FROM goals WHERE goal_id IN ({', '.join('?' * len(goal_ids))})",
                                list(goal_ids)).fetchall()
        return {row["goal_id"]: state_from_dict(json.loads(row["state"])) for row in rows if row["state"]}

    def goal_versions(self, goal_ids: Sequence[str]) -> dict[str, int]:
        """The version of each goal named that exists: it changes with every change of the goal's state."""
        if not goal_ids:
            return {}
        with self._db.read() as conn:
            marks = ", ".join("?" * len(goal_ids))
            rows = conn.execute(f"SELECT goal_id, version FROM goals WHERE goal_id IN ({marks})",
                                list(goal_ids)).fetchall()
        return {row["goal_id"]: int(row["version"]) for row in rows}

    def get_goal_by_id(self, goal_id: str) -> Goal:
        """Any goal, current or not; `standing` says which."""
        with self._db.read() as conn:
            row = conn.execute("SELECT * FROM goals WHERE goal_id = ?", (goal_id,)).fetchone()
        if row is None:
            raise GoalNotFoundError(f"no goal {goal_id}", hint="`gk goal` shows the current goal")
        return _goal(row)

    def delete_goal(self, goal_id: str, events: Sequence[Event]) -> list[EventRecord]:
        """Clear the goal: its thread has no current goal after this. `events` are appended atomically.

        The row is kept, marked cleared, so the history stays readable. A goal that is not current
        raises StaleGoalError and nothing is written.
        """
        encoded = _encode(events)
        now = time.time()
        with self._db.write(durable=_durable(events)) as conn:
            thread_id, _ = _current_goal(conn, goal_id, None)
            conn.execute("UPDATE goals SET standing = 'cleared', updated_at = ? WHERE goal_id = ?",
                         (now, goal_id))
            summaries.update(conn, goal_id, events)
            return _append(conn, thread_id, goal_id, encoded, now)

    def commit(self, goal_id: str, events: Sequence[Event], state: GoalState | None = None,
               expected_version: int | None = None,
               settings: GoalSettings | None = None) -> tuple[int, list[EventRecord]]:
        """THE write path for goal state: append `events` and replace state/settings in one transaction.

        Guarded by `goal_id` (it must be the thread's current goal) and, when given, `expected_version`:
        otherwise StaleGoalError and nothing is written, so a replaced goal is never charged. Giving
        state or settings bumps the version. Returns the goal's version after the commit and the events
        as stored. The events survive a crash of any process once this returns, so commit an intent, then
        act; a commit with a tool intent or a person's request is also fsynced, so it survives a power cut.
        """
        encoded = _encode(events)
        state_text = None if state is None else dumps(state_to_dict(state))
        settings_text = None if settings is None else dumps(_settings(settings))
        now = time.time()
        with self._db.write(durable=_durable(events)) as conn:
            thread_id, version = _current_goal(conn, goal_id, expected_version)
            records = _append(conn, thread_id, goal_id, encoded, now)
            summaries.update(conn, goal_id, events)
            if state_text is not None or settings_text is not None:
                version += 1
                conn.execute(
                    "UPDATE goals SET state = COALESCE(?, state), settings = COALESCE(?, settings), "
                    "version = ?, updated_at = ? WHERE goal_id = ?",
                    (state_text, settings_text, version, now, goal_id),
                )
        return version, records

    def digest(self, goal_id: str) -> GoalDigest:
        """What the goal's events say for its summary (core/digest.py), as of its newest commit: one row read."""
        with self._db.read() as conn:
            return summaries.read(conn, goal_id)

    def goals_implementing(self, spike_goal_id: str) -> list[tuple[str, str]]:
        """(thread_id, goal_id) of every goal started with `gk implement` from the spike goal's PRD."""
        with self._db.read() as conn:
            return summaries.implementing(conn, spike_goal_id)

    # Events

    def append_events(self, thread_id: str, events: Sequence[Event],
                      goal_id: str | None = None) -> list[EventRecord]:
        """Append events that change no goal state (side notes, lease notes). Unguarded by version."""
        encoded = _encode(events)
        now = time.time()
        with self._db.write(durable=_durable(events)) as conn:
            if conn.execute("SELECT 1 FROM threads WHERE thread_id = ?", (thread_id,)).fetchone() is None:
                raise _no_thread(thread_id)
            if goal_id is not None and conn.execute(
                "SELECT 1 FROM goals WHERE goal_id = ? AND thread_id = ?", (goal_id, thread_id)
            ).fetchone() is None:
                raise GoalNotFoundError(f"no goal {goal_id} in thread {thread_id}",
                                        hint="`gk goal` shows the current goal")
            if goal_id is not None:
                summaries.update(conn, goal_id, events)
            return _append(conn, thread_id, goal_id, encoded, now)

    def events(self, thread_id: str, after_seq: int = 0, goal_id: str | None = None,
               kinds: Sequence[type[Event]] | None = None, limit: int | None = None) -> list[EventRecord]:
        """The thread's events with seq > `after_seq`, in seq order, optionally of one goal or some kinds
        (event classes: `kinds=[BaselineEvent, EvidenceEvent]`).

        `seq` is store-wide and only grows, so the last seq seen is a cursor for the next call.
        """
        # With a goal, `+thread_id` keeps the thread's index out of the plan, so only the goal's rows are read,
        # and with kinds only its rows of those kinds (SQLite, with no statistics, would rather skip the sort).
        dialect = self._db.dialect
        source = "events"
        if goal_id is not None and kinds is not None:
            source += dialect.indexed_by("events_by_goal_kind")
        thread = dialect.unindexed("thread_id") if goal_id is not None else "thread_id"
        query = f"SELECT * FROM {source} WHERE {thread} = ? AND seq > ?"
        params: list[Any] = [thread_id, after_seq]
        if goal_id is not None:
            query += " AND goal_id = ?"
            params.append(goal_id)
        if kinds is not None:
            query += f" AND kind IN ({', '.join('?' * len(kinds))})"
            params.extend(kind.model_fields["kind"].default for kind in kinds)
        query += " ORDER BY seq"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        with self._db.read() as conn:
            rows = conn.execute(query, params).fetchall()
        return [event_from_row(row) for row in rows]

    def event_pages(self, thread_id: str, goal_id: str | None = None,
                    page: int = 500) -> Iterator[list[EventRecord]]:
        """The thread's events (of one goal), oldest first, `page` at a time: each page is its own short read,
        so a history of any length streams in flat memory and never holds the store's lock for long."""
        after = 0
        while records := self.events(thread_id, after_seq=after, goal_id=goal_id, limit=page):
            yield records
            after = records[-1].seq

    def events_after(self, seq: int, limit: int, thread_id: str | None = None) -> list[EventRecord]:
        """Up to `limit` events with seq > `seq` in seq order, of every thread (a feed of the whole store)
        or of one."""
        query = "SELECT * FROM events WHERE seq > ?" + (" AND thread_id = ?" if thread_id else "")
        params: tuple[object, ...] = (seq, thread_id, limit) if thread_id else (seq, limit)
        with self._db.read() as conn:
            rows = conn.execute(query + " ORDER BY seq LIMIT ?", params).fetchall()
        return [event_from_row(row) for row in rows]

    def last_seq(self, thread_id: str | None = None) -> int:
        """The seq of the thread's newest event (of the whole store's with no thread); 0 when there is none."""
        query = "SELECT MAX(seq) FROM events" + (" WHERE thread_id = ?" if thread_id else "")
        with self._db.read() as conn:
            row = conn.execute(query, (thread_id,) if thread_id else ()).fetchone()
        return int(row[0] or 0)

    def check_integrity(self) -> list[str]:
        """What the backend's full check of the store found wrong; [] when it is intact (`gk doctor`)."""
        return self._db.check_integrity()

    def schema_version(self) -> int:
        return self._db.schema_version()

    # Blobs

    def put_blob(self, text: str) -> str:
        """Keep `text` (a full tool output) and return its id, a content hash: same text, same id."""
        blob_id = blob_id_of(text)
        with self._db.write() as conn:
            conn.execute("INSERT INTO blobs (blob_id, text, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                         (blob_id, text, time.time()))
        return blob_id

    def get_blob(self, blob_id: str) -> str:
        with self._db.read() as conn:
            row = conn.execute("SELECT text FROM blobs WHERE blob_id = ?", (blob_id,)).fetchone()
        if row is None:
            raise BlobNotFoundError(f"no blob {blob_id} in the store {self.shown}",
                                    hint="use a blob id exactly as a tool result gave it")
        return str(row[0])

    # Leases

    def acquire_lease(self, goal_id: str, stale_after_s: float = 15.0) -> Lease:
        """Take the goal's lease for this process, or LeaseHeldError naming the live runner that has it.

        A lease whose process is gone (same host) or whose heartbeat is older than `stale_after_s` is
        taken over: that is how `gk run` continues after a kill -9. Re-acquiring our own lease is fine. On a
        PostgreSQL store the heartbeats and the takeover are timed by the server's clock, one for every host.
        """
        with self._db.write() as conn:
            return leases.acquire(conn, goal_id, _me(), stale_after_s, conn.now())

    def heartbeat(self, goal_id: str) -> None:
        """Prove this process still runs the goal; LeaseHeldError if another runner took it over."""
        with self._db.write() as conn:
            leases.heartbeat(conn, goal_id, _me(), conn.now())

    def release_lease(self, goal_id: str) -> None:
        """Give up this process's lease on the goal; a lease held by another process is left alone."""
        with self._db.write() as conn:
            leases.release(conn, goal_id, _me())

    def lease(self, goal_id: str) -> Lease | None:
        """The goal's lease as stored, live or not (see `lease_is_live`)."""
        with self._db.read() as conn:
            return leases.read(conn, goal_id)


def _postgres(url: str, busy_timeout_s: float) -> Backend:
    """The PostgreSQL backend: only a PostgreSQL store pays for importing psycopg."""
    try:
        from goalkeeper.store.postgres import PostgresDatabase
    except ImportError as error:
        raise StoreError(f"store_url {shown_url(url)} names a PostgreSQL store, but {error.name or 'psycopg'} is "
                         "not installed", hint="pip install 'goalkeeper[postgres]'") from None
    return PostgresDatabase(url, busy_timeout_s)


def _me() -> leases.Holder:
    return socket.gethostname(), os.getpid()


def _durable(events: Sequence[Event]) -> bool:
    """Whether a commit of `events` must survive a power cut, not only a process crash (see db._configure).

    A tool intent: the runner acts on it next, and an action whose effects outlive a power cut must not lose the
    record that keeps it from being done twice (the fsync also covers every commit before it). A person's
    request (a goal set, paused, raised, cleared): they were told it is done. The runner's other events are
    re-derived or answered "interrupted" if a power cut takes the newest of them."""
    return any(isinstance(event, ToolIntentEvent) or event.actor == "user" for event in events)



def _settings(settings: GoalSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json")


def _encode(events: Sequence[Event]) -> list[tuple[Event, str]]:
    """Serialize before the transaction opens: a bad payload fails before anything is locked."""
    return [(event, dumps(payload_of(event))) for event in events]


def _append(conn: Connection, thread_id: str, goal_id: str | None,
            encoded: list[tuple[Event, str]], now: float) -> list[EventRecord]:
    records = []
    for event, payload in encoded:
        seq = conn.insert("INSERT INTO events (thread_id, goal_id, kind, actor, payload, ts) VALUES (?, ?, ?, ?, ?, ?)",
                          (thread_id, goal_id, event.kind, event.actor, payload, now), "seq")
        records.append(EventRecord(seq, thread_id, goal_id, now, event))
    return records


def _current_goal(conn: Connection, goal_id: str,
                  expected_version: int | None) -> tuple[str, int]:
    """The (thread_id, version) of a goal that is current and at `expected_version`, else StaleGoalError."""
    row = conn.execute("SELECT thread_id, version, standing FROM goals WHERE goal_id = ?",
                       (goal_id,)).fetchone()
    if row is None:
        raise StaleGoalError(goal_id, "missing")
    if row["standing"] != "current":
        raise StaleGoalError(goal_id, row["standing"])
    if expected_version is not None and row["version"] != expected_version:
        raise StaleGoalError(goal_id, "version", row["version"], expected_version)
    return row["thread_id"], row["version"]


def _no_thread(thread_id: str) -> GoalNotFoundError:
    return GoalNotFoundError(f"no thread {thread_id}", hint="`gk threads` lists them")


def _no_goal(workspace: Path) -> GoalNotFoundError:
    return GoalNotFoundError(f"no goal in {workspace}", 'set one with `gk goal "<objective>" --check ...`')


def _thread(row: Row) -> ThreadRecord:
    return ThreadRecord(row["thread_id"], row["workspace"], row["created_at"], row["parent_thread_id"])


def _goal(row: Row) -> Goal:
    """A goal row as a typed Goal: the one place its JSON is parsed."""
    return goal_of(row["goal_id"], row["thread_id"], json.loads(row["contract"]), json.loads(row["state"]),
                   json.loads(row["settings"]), row["version"], row["created_at"], row["updated_at"], row["standing"])


def event_from_row(row: Row) -> EventRecord:
    """An `events` row as a record with its typed event (a row no event model reads is a StoreError)."""
    event = parse_event(row["kind"], row["actor"], json.loads(row["payload"]))
    return EventRecord(row["seq"], row["thread_id"], row["goal_id"], row["ts"], event)
