"""The store on a PostgreSQL server, for a fleet: every worker writes it and every face reads it (DESIGN §5).

The same tables and statements as the SQLite file (db.py); what differs is here and in dialect.py. Every write
transaction first takes one advisory lock, as SQLite's `BEGIN IMMEDIATE` takes its writer lock, so writers go
one at a time and each event's `seq` is the store's previous largest plus one (a trigger): gap-free, and in
commit order, so a reader's last seq is a safe cursor on every host. Reads take no lock.

A connection the server dropped (a restart, a failover, an idle timeout, `pg_terminate_backend`) is reopened
when next used, a few times with a backoff for up to RECONNECT_S. A read, and a write transaction whose BEGIN
found the connection dead, are then tried once more; a write that failed after it began raises (its COMMIT may
have reached the server: it is never run again), and the next call gets the fresh connection. The writer lock
is transaction-scoped and leases are rows, so neither outlives, or is lost with, a connection.

Imported only when a `postgresql://` store_url is used, so no other command pays for psycopg. The password of
the URL never appears in an error or a log line: errors name the URL as `shown_url` writes it.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import RowMaker

from goalkeeper.errors import StoreError, StoreLockedError
from goalkeeper.store import db, summaries
from goalkeeper.store.dialect import POSTGRES, Connection, shown_url

_WRITER_LOCK = 0x676B73746F7265  # "gkstore": the advisory lock every write transaction holds
_LOCK = f"SELECT pg_advisory_xact_lock({_WRITER_LOCK})".encode()

#: How long reopening a dropped connection may take, over every try, before the store gives up.
RECONNECT_S = 10.0
#: The pauses between tries to reopen it (the last one repeats until RECONNECT_S is spent).
_BACKOFF_S = (0.0, 0.25, 0.5, 1.0, 2.0)

_SEQ_TRIGGER = """
    CREATE FUNCTION goalkeeper_next_seq() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.seq := (SELECT COALESCE(MAX(seq), 0) + 1 FROM events);
        RETURN NEW;
    END $$;
    CREATE TRIGGER events_seq BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION goalkeeper_next_seq();
"""

MIGRATIONS: list[db.Migration] = [
    # 1: as db.MIGRATIONS[0]; `rowid` orders rows made in the same instant, as SQLite's own rowid does.
    """
    CREATE TABLE threads (
        rowid      BIGINT GENERATED ALWAYS AS IDENTITY,
        thread_id  TEXT PRIMARY KEY,
        workspace  TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE current_threads (
        workspace TEXT PRIMARY KEY,
        thread_id TEXT NOT NULL REFERENCES threads (thread_id)
    );
    CREATE TABLE goals (
        rowid      BIGINT GENERATED ALWAYS AS IDENTITY,
        goal_id    TEXT PRIMARY KEY,
        thread_id  TEXT NOT NULL REFERENCES threads (thread_id),
        contract   TEXT NOT NULL,
        state      TEXT NOT NULL,
        settings   TEXT NOT NULL,
        version    INTEGER NOT NULL,
        standing   TEXT NOT NULL CHECK (standing IN ('current', 'replaced', 'cleared')),
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE UNIQUE INDEX goals_one_current_per_thread ON goals (thread_id) WHERE standing = 'current';
    CREATE TABLE events (
        seq       BIGINT PRIMARY KEY,
        thread_id TEXT NOT NULL REFERENCES threads (thread_id),
        goal_id   TEXT REFERENCES goals (goal_id),
        kind      TEXT NOT NULL,
        actor     TEXT,
        payload   TEXT NOT NULL,
        ts        DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX events_by_thread ON events (thread_id, seq);
    CREATE INDEX events_by_goal ON events (goal_id, seq);
    CREATE TABLE blobs (
        blob_id    TEXT PRIMARY KEY,
        text       TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE leases (
        goal_id      TEXT PRIMARY KEY REFERENCES goals (goal_id),
        host         TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        heartbeat_at DOUBLE PRECISION NOT NULL,
        acquired_at  DOUBLE PRECISION NOT NULL
    );
    """ + _SEQ_TRIGGER,
    lambda conn: summaries.migrate(conn, db.split_statements(summaries.SCHEMA)),
    # 3: as db.MIGRATIONS[2].
    """
    CREATE TABLE batches (
        rowid      BIGINT GENERATED ALWAYS AS IDENTITY,
        batch_id   TEXT PRIMARY KEY,
        repository TEXT NOT NULL,
        commit_id  TEXT NOT NULL,
        files      TEXT NOT NULL,
        parallel   INTEGER NOT NULL,
        caps       TEXT NOT NULL,
        model      TEXT,
        elapsed_s  DOUBLE PRECISION NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL,
        target     TEXT
    );
    CREATE INDEX batches_by_repository ON batches (repository, created_at);
    CREATE TABLE batch_goals (
        batch_id TEXT NOT NULL REFERENCES batches (batch_id),
        name     TEXT NOT NULL,
        position INTEGER NOT NULL,
        file     TEXT NOT NULL,
        contract TEXT NOT NULL,
        worktree TEXT NOT NULL,
        goal_id  TEXT REFERENCES goals (goal_id),
        crashed  TEXT,
        PRIMARY KEY (batch_id, name)
    );
    """,
    db.MIGRATIONS[3],  # 4: a forked thread names its parent; the same statement in both dialects
]
"""The PostgreSQL spelling of db.MIGRATIONS, number for number (`goalkeeper_schema.version` counts them)."""


class Row:
    """A result row, read by column name or position, as sqlite3.Row is."""

    __slots__ = ("_names", "_values")

    def __init__(self, values: Sequence[Any], names: dict[str, int]) -> None:
        self._values, self._names = values, names

    def __getitem__(self, key: int | str, /) -> Any:
        return self._values[self._names[key] if isinstance(key, str) else key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _rows(cursor: psycopg.Cursor[Any]) -> RowMaker[Row]:
    names = {column.name: index for index, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, names)


class PgConnection:
    """The database's current psycopg connection as the store's statements use it: `?` placeholders become `%s`
    (once per text). A SELECT outside a transaction that finds the connection dropped is run once more on a
    fresh one: it changes nothing, and each statement sees what was committed when it began anyway."""

    dialect = POSTGRES

    def __init__(self, database: PostgresDatabase) -> None:
        self._database = database
        self._queries: dict[str, bytes] = {}

    @property
    def _conn(self) -> psycopg.Connection[Row]:
        return self._database.conn

    def execute(self, sql: str, parameters: Sequence[Any] | None = None, /) -> psycopg.Cursor[Row]:
        if parameters is None:  # no parameters: the text goes as it is (a script may hold several statements)
            return self._retried(sql, lambda: self._conn.execute(sql.encode()))
        query = self._query(sql)
        return self._retried(sql, lambda: self._conn.execute(query, parameters))

    def executemany(self, sql: str, parameters: Any, /) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(self._query(sql), parameters)

    def _retried(self, sql: str, run: Callable[[], psycopg.Cursor[Row]]) -> psycopg.Cursor[Row]:
        idle = self._conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        try:
            return run()
        except psycopg.OperationalError:
            if not (idle and self._conn.broken and sql.lstrip()[:6].upper() == "SELECT"):
                raise
        self._database.reopen()
        return run()

    def insert(self, sql: str, parameters: Sequence[Any], key: str) -> int:
        row = self.execute(f"{sql} RETURNING {key}", parameters).fetchone()
        assert row is not None
        return int(row[0])

    def now(self) -> float:
        """The server's clock: a lease's heartbeat and its takeover are judged by it on every host."""
        row = self.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
        assert row is not None
        return float(row[0])

    def _query(self, sql: str) -> bytes:
        query = self._queries.get(sql)
        if query is None:  # the store's SQL has no `?` or `%` of its own, inside a literal or out
            query = self._queries[sql] = sql.replace("%", "%%").replace("?", "%s").encode()
        return query


class PostgresDatabase:
    """One connection to the store's PostgreSQL database, used from one process (several threads may share it)."""

    dialect = POSTGRES

    def __init__(self, url: str, busy_timeout_s: float) -> None:
        self.url, self.shown = url, shown_url(url)
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self.conn = self._connect()
        self._wrapped = PgConnection(self)
        try:
            with self._errors_translated():
                self._migrate()
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def reopen(self) -> None:
        """Replace a dropped connection: tries with a backoff for up to RECONNECT_S, then one StoreError."""
        with self._lock:
            with suppress(psycopg.Error):
                self.conn.close()
            deadline, attempt = time.monotonic() + RECONNECT_S, 0
            while True:
                time.sleep(min(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)], max(0.0, deadline - time.monotonic())))
                try:
                    self.conn = self._connect(max(2, math.ceil(deadline - time.monotonic())))
                    return
                except StoreError as error:
                    attempt += 1
                    if time.monotonic() >= deadline:
                        raise StoreError(f"lost the store at store_url {self.shown} and could not reopen it "
                                         f"within {RECONNECT_S:g}s: {error.message}",
                                         hint="check that the PostgreSQL server is running and reachable from "
                                         "this machine, then run the command again (the goal carries on from "
                                         "the store)") from None

    def _connect(self, timeout_s: int = 10) -> psycopg.Connection[Row]:
        """Connect, naming this process to the server (a lock's holder is told by it); one clear error if not."""
        try:
            options = psycopg.conninfo.conninfo_to_dict(self.url)
        except psycopg.ProgrammingError:
            raise StoreError(f"store_url {self.shown} is not a PostgreSQL URL libpq can read",
                             hint=_URL_HINT) from None
        self._password = str(options.get("password") or "")
        options.setdefault("connect_timeout", timeout_s)
        options["application_name"] = f"goalkeeper {socket.gethostname()} pid {os.getpid()}"[:63]
        try:
            conn = psycopg.connect(psycopg.conninfo.make_conninfo("", **options), autocommit=True, row_factory=_rows)
        except psycopg.Error as error:
            raise StoreError(f"cannot open the store at store_url {self.shown}: {self._scrubbed(error)}",
                             hint="check that the server is running and reachable from this machine, and the "
                             "user, password and database in store_url; " + _URL_HINT) from None
        # lock_timeout 0 would mean "wait for ever": SQLite's busy timeout of 0 means "do not wait".
        conn.execute(f"SET lock_timeout = {max(1, round(self.busy_timeout_s * 1000))}".encode())
        return conn

    @contextmanager
    def write(self, durable: bool = False) -> Iterator[Connection]:
        """One transaction holding the store's writer lock: committed when the block ends, rolled back if it
        raises. Every commit is as durable as the server makes it (`synchronous_commit`), so `durable` asks
        nothing more."""
        with self._lock, self._errors_translated(), self._begin():
            yield self._wrapped

    def _begin(self) -> ExitStack:
        """BEGIN, then the writer lock. A connection found dropped before the transaction held anything is
        reopened and the BEGIN tried once more: nothing of it took effect on the server."""
        try:
            return self._begin_once()
        except psycopg.OperationalError:
            if not self.conn.broken:
                raise  # a lock wait past the busy timeout, say: the connection is fine
        self.reopen()
        return self._begin_once()

    def _begin_once(self) -> ExitStack:
        if self.conn.closed:
            self.reopen()
        stack = ExitStack()
        try:
            stack.enter_context(self.conn.transaction())
            self.conn.execute(_LOCK)
        except psycopg.OperationalError as error:
            with suppress(psycopg.Error):
                stack.__exit__(type(error), error, error.__traceback__)  # rolled back, where it still can be
            raise
        return stack

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._lock, self._errors_translated():
            if self.conn.closed:
                self.reopen()
            yield self._wrapped

    def schema_version(self) -> int:
        with self.read() as conn:
            return int(conn.execute("SELECT version FROM goalkeeper_schema").fetchone()[0])

    def check_integrity(self) -> list[str]:
        """The server's own pages are its business; this checks what is ours: the schema version, every index
        valid (a failed concurrent build leaves one invalid), and the event log's seqs gap-free."""
        problems: list[str] = []
        try:
            with self.read() as conn:
                if (version := self.schema_version()) != db.SCHEMA_VERSION:
                    problems.append(f"schema version {version}, expected {db.SCHEMA_VERSION}")
                problems += [f"index {row[0]} is invalid (rebuild it: REINDEX INDEX {row[0]})" for row in conn.execute(
                    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE NOT i.indisvalid AND pg_table_is_visible(c.oid)")]
                count, top = conn.execute("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM events").fetchall()[0]
                if count != top:
                    problems.append(f"the event log has {count} events but its largest seq is {top}: "
                                    "some events are missing")
        except StoreError as error:
            problems.append(str(error))
        return problems[:10]

    def _migrate(self) -> None:
        """Apply the missing migrations in one transaction under the writer lock, re-reading the version
        under it: two processes opening a fresh store at once apply them once."""
        if self._version(locked=False) == len(MIGRATIONS):
            return
        with self.conn.transaction():
            self.conn.execute(_LOCK)
            self.conn.execute(b"CREATE TABLE IF NOT EXISTS goalkeeper_schema (version INTEGER NOT NULL)")
            version = self._version(locked=True)
            if version is None:
                self.conn.execute(b"INSERT INTO goalkeeper_schema (version) VALUES (0)")
                version = 0
            self._refuse_newer(version)
            for script in MIGRATIONS[version:]:
                if callable(script):
                    script(self._wrapped)
                else:
                    self._wrapped.execute(script)
            self.conn.execute(f"UPDATE goalkeeper_schema SET version = {len(MIGRATIONS)}".encode())

    def _version(self, locked: bool) -> int | None:
        """The stored schema version; None when the store has none yet (a new database)."""
        if not locked and self.conn.execute(b"SELECT to_regclass('goalkeeper_schema')").fetchall()[0][0] is None:
            return None
        row = self.conn.execute(b"SELECT version FROM goalkeeper_schema").fetchone()
        if row is not None and not locked:
            self._refuse_newer(row[0])
        return None if row is None else int(row[0])

    def _refuse_newer(self, version: int) -> None:
        if version > len(MIGRATIONS):
            raise StoreError(f"the store at store_url {self.shown} has schema version {version}, but this "
                             f"goalkeeper knows only up to {len(MIGRATIONS)}: it was written by a newer goalkeeper",
                             hint="upgrade goalkeeper on this machine (pip install -U goalkeeper)")

    @contextmanager
    def _errors_translated(self) -> Iterator[None]:
        """A lock wait past the busy timeout, and a lost server, as errors a person can act on."""
        try:
            yield
        except pg_errors.LockNotAvailable as error:
            raise StoreLockedError(f"the store at store_url {self.shown} stayed locked for "
                                   f"{self.busy_timeout_s:g}s; held by {self._lock_holder()}",
                                   hint="wait for that process to finish its write, or stop it if it is "
                                   "stuck") from error
        except psycopg.OperationalError as error:
            raise StoreError(f"lost the store at store_url {self.shown}: {self._scrubbed(error)}",
                             hint="check that the PostgreSQL server is running and reachable from this machine, "
                             "then run the command again") from None

    def _lock_holder(self) -> str:
        """The `application_name` (host and pid) of whoever holds the writer lock, or "unknown process"."""
        try:
            row = self.conn.execute(
                b"SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                b"WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
                b"(SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1").fetchone()
        except psycopg.Error:
            return "unknown process"
        return str(row[0]) if row is not None and row[0] else "unknown process"

    def _scrubbed(self, error: BaseException) -> str:
        """The error's text without the password, should libpq ever repeat it."""
        text = " ".join(str(error).split())
        return text.replace(self._password, "***") if self._password else text


_URL_HINT = ("set store_url in $GOALKEEPER_HOME/config.toml (or GOALKEEPER_STORE_URL) to "
             "postgresql://USER@HOST:PORT/DATABASE, with the password in ~/.pgpass or PGPASSWORD")
