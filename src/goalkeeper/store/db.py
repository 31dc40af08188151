"""The SQLite file under the store: opening it, checking it, migrating it, and short transactions.

Knows nothing about goals or events beyond the schema; the Store class gives the tables meaning.

The store holds every goal's history, so its files are private and never reached through a link: the folder
is made 0700 and the file 0600 whatever the umask (SQLite gives its -wal and -shm files the database file's
mode), and a symlinked store file is refused. A new store is built under a temporary name and linked into place
complete, so a store file is never legitimately empty: a 0-byte one was truncated and is refused. A read-only,
immutable or unopenable store, and a full disk, are each one StoreError that says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from goalkeeper.errors import StoreError, StoreLockedError
from goalkeeper.store import summaries
from goalkeeper.store.dialect import SQLITE, Connection
from goalkeeper.store.home import os_errors, private_directory
from goalkeeper.store.locks import describe_lock_holders

Migration = str | Callable[[Connection], None]
"""An SQL script, or a function that runs inside the migration's transaction (for rows built in Python)."""


def _goal_summaries(conn: Connection) -> None:
    """2: the index for kind-filtered reads of one goal, and each goal's digest row, built for every goal."""
    summaries.migrate(conn, split_statements(summaries.SCHEMA))


MIGRATIONS: list[Migration] = [
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
    _goal_summaries,
    # 3: batches (`gk batch`) and the goals each holds (store/batches.py).
    """
    CREATE TABLE batches (
        batch_id   TEXT PRIMARY KEY,
        repository TEXT NOT NULL,
        commit_id  TEXT NOT NULL,
        files      TEXT NOT NULL,
        parallel   INTEGER NOT NULL,
        caps       TEXT NOT NULL,
        model      TEXT,
        elapsed_s  REAL NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
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
    # 4: a forked thread names its parent (`gk fork`).
    """
    ALTER TABLE threads ADD COLUMN parent_thread_id TEXT REFERENCES threads (thread_id);
    """,
]
"""Schema changes in order; `PRAGMA user_version` counts how many have been applied. Append only."""

SCHEMA_VERSION = len(MIGRATIONS)


class _SQLiteConnection(sqlite3.Connection):
    """sqlite3's connection, naming its dialect for the statements that differ (dialect.py)."""

    dialect = SQLITE

    def insert(self, sql: str, parameters: Sequence[Any], key: str) -> int:
        """The INSERT's new rowid, which `key` (an INTEGER PRIMARY KEY) is another name for."""
        rowid = self.execute(sql, parameters).lastrowid
        assert rowid is not None
        return rowid

    def now(self) -> float:
        return time.time()


#: One write lock per store file for the whole process. A batch's goals each write through their own connection;
#: without it they meet at SQLite's lock, whose busy handler sleeps 1, 2, 5 ... 100 ms between tries, so 50 goals
#: spent most of a start waiting with the cores idle. Here they queue and each write starts the moment the one
#: before ends. Reentrant: a thread that nests two connections' writes waits on SQLite as before, not on itself.
_FILE_WRITES: dict[str, threading.RLock] = {}
_FILE_WRITES_LOCK = threading.Lock()


def _file_writes(path: Path) -> threading.RLock:
    """The process's write lock of the store file at `path`."""
    key = os.path.realpath(path)
    with _FILE_WRITES_LOCK:
        return _FILE_WRITES.setdefault(key, threading.RLock())


class Database:
    """One connection to the store file, used from one process (several threads may share it)."""

    dialect = SQLITE

    def __init__(self, path: Path, busy_timeout_s: float, *, fresh: bool = False, shown: Path | None = None) -> None:
        self.path = path
        self.shown = shown or path
        """The path errors name: a new store is built under a temporary name, but errors name the store."""
        self.busy_timeout_s = busy_timeout_s
        # One connection per Store; the lock keeps two threads from interleaving inside a transaction.
        self._lock = threading.RLock()
        self._writes = _file_writes(path)
        if not fresh:
            self._prepare_file()
        with self._errors_translated():
            self._conn = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False,
                factory=_SQLiteConnection,
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

    def _prepare_file(self) -> None:
        """Refuse links, an empty file and a store that cannot be written; make a missing store; keep it 0600."""
        with os_errors(self.path):
            for file in store_files(self.path):
                if file.is_symlink():
                    raise StoreError(f"the store file {file} is a symbolic link; goalkeeper never follows a link "
                                     "for its store", hint=f"replace {file} with the file it points to, or point "
                                     "GOALKEEPER_HOME at the real folder")
            try:
                info = self.path.stat()
            except FileNotFoundError:
                self._create()
                return
            if not stat.S_ISREG(info.st_mode):
                raise StoreError(f"the store {self.path} is not a regular file",
                                 hint=f"move {self.path} aside; goalkeeper then starts a fresh store")
            if info.st_size == 0:
                raise StoreError(f"the store {self.path} is empty (0 bytes): goalkeeper never leaves an empty "
                                 "store, so it was truncated or made by something else, and every goal's history "
                                 "in it is gone", hint=f"restore it from a backup, or delete it (rm {self.path}) "
                                 "to start a fresh store")
            for place in (self.path, self.path.parent):
                if not os.access(place, os.W_OK):
                    raise self._read_only_error(os.strerror(errno.EACCES))
            for file in store_files(self.path):
                with contextlib.suppress(FileNotFoundError):
                    if file.stat().st_mode & 0o077 and file.stat().st_uid == os.geteuid():
                        file.chmod(0o600)  # a store made before files were private

    def _create(self) -> None:
        """A new store, built complete under a temporary name (0600 from its first byte) and linked into place.

        Two processes making the store at once both build one; the first link wins and the other is dropped."""
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{secrets.token_hex(4)}.new")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)  # the umask may have taken bits from it, never added any
        finally:
            os.close(fd)
        try:
            Database(temp, self.busy_timeout_s, fresh=True, shown=self.path).close()
            _link(temp, self.path)
        finally:
            for file in store_files(temp):
                file.unlink(missing_ok=True)

    @contextmanager
    def write(self, durable: bool = False) -> Iterator[Connection]:
        """One short `BEGIN IMMEDIATE` transaction: committed when the block ends, rolled back if it raises.

        IMMEDIATE takes the write lock up front, so a busy store fails here (after the busy timeout)
        rather than halfway through. `durable` fsyncs the WAL at commit (synchronous=FULL): see `_configure`.
        """
        # Past the busy timeout the write goes to SQLite's lock anyway, which then fails as it always has.
        queued = self._writes.acquire(timeout=self.busy_timeout_s)
        try:
            with self._lock, self._errors_translated():
                yield from self._transaction(durable)
        finally:
            if queued:
                self._writes.release()

    def _transaction(self, durable: bool) -> Iterator[Connection]:
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
    def read(self) -> Iterator[Connection]:
        """The connection for reads. In WAL mode readers never wait for the writer."""
        with self._lock, self._errors_translated():
            yield self._conn

    def check_integrity(self) -> list[str]:
        """SQLite's `quick_check` of the whole file: what it found wrong (at most 10 lines); [] when intact.

        It reads every page (about 0.4 s for a million events), so it runs on request (`gk doctor`) and when
        SQLite reports damage, never on open."""
        with self._lock:
            try:
                rows = [str(row[0]) for row in self._conn.execute("PRAGMA quick_check(10)")]
            except sqlite3.DatabaseError as error:
                return [str(error)]
        return [] if rows == ["ok"] else rows

    def schema_version(self) -> int:
        """How many migrations the file has had (`PRAGMA user_version`)."""
        with self._lock:
            return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _check_intact(self) -> None:
        """Refuse a file that is not a database (reading its header finds that) and one from a newer goalkeeper.

        Runs before anything is written, so a damaged file is left exactly as it was found. The full check
        of every page is `check_integrity`'s, run when SQLite reports damage in use.
        """
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store {self.path} has schema version {version}, but this goalkeeper knows only "
                f"up to {SCHEMA_VERSION}: it was written by a newer goalkeeper",
                hint="upgrade goalkeeper (pip install -U goalkeeper)",
            )

    def _configure(self) -> None:
        # WAL: readers (status, dashboard) never block the runner's writes, and the runner never
        # blocks them. synchronous=NORMAL is safe from corruption in WAL mode and survives any process
        # crash (kill -9); only an OS crash or power cut can lose the last commits. A commit holding a tool
        # intent or a person's request asks for FULL instead (Database.write(durable=True), store._durable):
        # an action whose effects survive a power cut must not lose the intent behind it. Every other commit
        # of the runner (results, responses, usage) costs no fsync.
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
                    if callable(script):
                        script(self._conn)
                    else:  # executescript() would commit our open transaction, so run statement by statement
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
            if code == sqlite3.SQLITE_NOTADB:
                raise self._corrupt_error(str(error)) from error
            if code == sqlite3.SQLITE_CORRUPT:
                # What the full check finds damaged, for the person who has to decide (it may only repeat it).
                found = [problem for problem in self.check_integrity() if problem != str(error)]
                raise self._corrupt_error("; ".join([str(error), *found[:3]])) from error
            if code == sqlite3.SQLITE_FULL:
                raise self._full_error() from error
            if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
                raise self._read_only_error(str(error)) from error
            if code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR):
                if _no_space_left(self.path.parent):
                    raise self._full_error() from error  # SQLite reports a -shm it cannot grow as an I/O error
                raise StoreError(f"the store {self.shown} cannot be read or written ({error})",
                                 hint=f"check that {self.path.parent} exists, is writable and has free space "
                                 "(df -h), or point GOALKEEPER_HOME at another folder") from error
            raise

    def _read_only_error(self, detail: str) -> StoreError:
        return StoreError(f"the store {self.shown} is read-only ({detail}): goalkeeper writes every step to it",
                          hint=f"make {self.shown} and its folder writable by you (chmod u+w; chattr -i if it is "
                          "immutable; remount a read-only file system), or point GOALKEEPER_HOME at a writable "
                          "folder")

    def _full_error(self) -> StoreError:
        return StoreError(f"the disk holding the store {self.shown} is full; the write was rolled back, "
                          "nothing recorded before it was lost",
                          hint=f"free space on that file system (df -h {self.path.parent}), then run the command "
                          "again")

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
            hint=f"`gk doctor` checks the whole store; to start afresh, move it aside (mv {self.path} {aside}, "
            "and its -wal and -shm files if present) and goalkeeper starts a fresh store",
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
    """Create the directory that will hold the store file (0700) and return the file's path, with its folder
    resolved but not the file itself: a symlinked store file is refused when it is opened, not followed."""
    path = path.expanduser()
    directory = private_directory(path.parent.resolve())
    return directory / path.name


def _no_space_left(directory: Path) -> bool:
    try:
        return os.statvfs(directory).f_bavail == 0
    except OSError:
        return False


def _link(temp: Path, path: Path) -> None:
    """Put the finished store `temp` at `path` unless a store is there already (another process won)."""
    try:
        os.link(temp, path)
    except FileExistsError:
        pass
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if not path.exists():  # a file system without hard links: a rename, which a rare race may overwrite
            os.rename(temp, path)


def store_files(path: Path) -> list[Path]:
    """The store file and the two SQLite keeps beside it in WAL mode."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
