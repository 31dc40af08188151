"""The SQLite file under the store: opening it, checking it, migrating it, and short transactions.

Knows nothing about goals or events beyond the schema; the Store class gives the tables meaning.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from goalkeeper.errors import StoreError, StoreLockedError
from goalkeeper.store.locks import describe_lock_holders

MIGRATIONS: list[str] = [
    # 1: threads, the current thread of each workspace, goals, the event log, blobs, leases.
    """
    CREATE TABLE threads (
        thread_id  TEXT PRIMARY KEY,
        workspace  TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE current_threads (
        workspace TEXT PRIMARY KEY,
        thread_id TEXT NOT NULL REFERENCES threads (thread_id)
    );
    CREATE TABLE goals (
        goal_id    TEXT PRIMARY KEY,
        thread_id  TEXT NOT NULL REFERENCES threads (thread_id),
        contract   TEXT NOT NULL,
        state      TEXT NOT NULL,
        settings   TEXT NOT NULL,
        version    INTEGER NOT NULL,
        standing   TEXT NOT NULL CHECK (standing IN ('current', 'replaced', 'cleared')),
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    -- A thread has at most one current goal; the database enforces it, not just the code.
    CREATE UNIQUE INDEX goals_one_current_per_thread ON goals (thread_id) WHERE standing = 'current';
    CREATE TABLE events (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        thread_id TEXT NOT NULL REFERENCES threads (thread_id),
        goal_id   TEXT REFERENCES goals (goal_id),
        kind      TEXT NOT NULL,
        actor     TEXT,
        payload   TEXT NOT NULL,
        ts        REAL NOT NULL
    );
    CREATE INDEX events_by_thread ON events (thread_id, seq);
    CREATE INDEX events_by_goal ON events (goal_id, seq);
    CREATE TABLE blobs (
        blob_id    TEXT PRIMARY KEY,
        text       TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE leases (
        goal_id      TEXT PRIMARY KEY REFERENCES goals (goal_id),
        host         TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        heartbeat_at REAL NOT NULL,
        acquired_at  REAL NOT NULL
    );
    """,
]
"""Schema scripts in order; `PRAGMA user_version` counts how many have been applied. Append only."""

SCHEMA_VERSION = len(MIGRATIONS)


class Database:
    """One connection to the store file, used from one process (several threads may share it)."""

    def __init__(self, path: Path, busy_timeout_s: float) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        # One connection per Store; the lock keeps two threads from interleaving inside a transaction.
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        try:
            with self._errors_translated():
                self._check_intact()
                self._configure()
                self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def write(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One short `BEGIN IMMEDIATE` transaction: committed when the block ends, rolled back if it raises.

        IMMEDIATE takes the write lock up front, so a busy store fails here (after the busy timeout)
        rather than halfway through. `durable` fsyncs the WAL at commit (synchronous=FULL): see `_configure`.
        """
        with self._lock, self._errors_translated():
            if durable:
                self._conn.execute("PRAGMA synchronous = FULL")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._rollback()
                    raise
                self._conn.execute("COMMIT")
            finally:
                if durable:
                    self._conn.execute("PRAGMA synchronous = NORMAL")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The connection for reads. In WAL mode readers never wait for the writer."""
        with self._lock, self._errors_translated():
            yield self._conn

    def _check_intact(self) -> None:
        """Refuse a file that is not a database or fails `quick_check`, and one from a newer goalkeeper.

        Runs before anything is written, so a damaged file is left exactly as it was found.
        """
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        rows = [row[0] for row in self._conn.execute("PRAGMA quick_check")]
        if rows != ["ok"]:
            raise self._corrupt_error("; ".join(rows[:3]))
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store {self.path} has schema version {version}, but this goalkeeper knows only "
                f"up to {SCHEMA_VERSION}: it was written by a newer goalkeeper",
                hint="upgrade goalkeeper (pip install -U goalkeeper)",
            )

    def _configure(self) -> None:
        # WAL: readers (status, dashboard) never block the runner's writes, and the runner never
        # blocks them. synchronous=NORMAL is safe from corruption in WAL mode and survives any process
        # crash (kill -9); only an OS crash or power cut can lose the last commits. The goal commit path
        # asks for FULL instead (Database.write(durable=True)): its events are intents that the runner
        # acts on, and an action whose effects survive a power cut must not lose the intent behind it.
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(
                f"the store {self.path} could not be switched to WAL mode (it is in {mode!r} mode)",
                hint="put GOALKEEPER_HOME on a local file system",
            )
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")

    def _migrate(self) -> None:
        """Apply each missing migration in its own transaction, re-reading the version under the lock.

        Re-reading inside the transaction lets two processes open a fresh store at once: the second
        one finds the work done and applies nothing.
        """
        for number, script in enumerate(MIGRATIONS, start=1):
            if self._conn.execute("PRAGMA user_version").fetchone()[0] >= number:
                continue
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if self._conn.execute("PRAGMA user_version").fetchone()[0] < number:
                    # executescript() would commit our open transaction, so run statement by statement.
                    for statement in split_statements(script):
                        self._conn.execute(statement)
                    self._conn.execute(f"PRAGMA user_version = {number}")
            except BaseException:
                self._rollback()
                raise
            self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        # SQLite has already rolled back by itself after some errors (a full disk, an I/O error).
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    @contextmanager
    def _errors_translated(self) -> Iterator[None]:
        """Turn a locked or corrupt database into a StoreError a person can act on.

        Recognised by SQLite's result code, never by the message text. Anything else propagates as is.
        """
        try:
            yield
        except sqlite3.DatabaseError as error:
            code = getattr(error, "sqlite_errorcode", 0) & 0xFF  # primary code of an extended one
            if code == sqlite3.SQLITE_BUSY:
                raise self._locked_error() from error
            if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                raise self._corrupt_error(str(error)) from error
            raise

    def _locked_error(self) -> StoreLockedError:
        holder = describe_lock_holders(self.path)
        return StoreLockedError(
            f"the store {self.path} stayed locked for {self.busy_timeout_s:g}s; held by {holder}",
            hint="wait for that process to finish its write, or stop it if it is stuck",
        )

    def _corrupt_error(self, detail: str) -> StoreError:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        return StoreError(
            f"the store {self.path} is corrupt ({detail}); goalkeeper left it untouched",
            hint=f"move it aside (mv {self.path} {aside}, and its -wal and -shm files if present); "
            "goalkeeper then starts a fresh store",
        )


def split_statements(script: str) -> list[str]:
    """Split an SQL script into complete statements; a `;` inside a string or trigger body stays put."""
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\n;"):
                statements.append(pending.strip())
            pending = ""
    return statements


def prepare_path(path: Path) -> Path:
    """Create the directory that will hold the store file and return the file's resolved path."""
    path = path.expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
