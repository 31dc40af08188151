"""A glance at the SQLite store file: the rows `gk status`, `gk goal`, `gk log`, `gk threads` and `gk report`
show, as plain dicts, read with the standard library alone.

`Store` opens the file with every care (links refused, a fresh store made, migrations run, private modes kept)
and hands out typed records, which costs pydantic's import and the event models: most of a read command's
start-up. A glance opens only a store that needs none of that care: the file is there, ours, private and
writable, in WAL mode, at exactly this goalkeeper's schema version. Anything else (no store yet, a PostgreSQL
store_url, a link, an older or newer schema, a lock, damage) is `Glance.open() is None`, and the caller opens
the `Store`, which does what is needed or says what is wrong. A glance never writes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from goalkeeper.store.locks import holder_is_live

SCHEMA_VERSION = 4
"""The schema version a glance reads (store/db.py's SCHEMA_VERSION: tests/test_glance.py checks they agree)."""
Row = dict[str, Any]


class Glance:
    """Read-only queries over an open store file; rows as dicts, their JSON columns parsed."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    def open(cls, path: Path, busy_timeout_s: float) -> Glance | None:
        """A glance at the store file `path`; None when only `Store` can open it as it is (see the module)."""
        if not _plain_store(path):
            return None
        try:
            conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=busy_timeout_s, isolation_level=None)
        except sqlite3.Error:
            return None
        try:
            ready = (conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
                     and conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal")
        except sqlite3.Error:
            ready = False
        if not ready:
            conn.close()
            return None
        conn.row_factory = sqlite3.Row
        return cls(conn)

    def close(self) -> None:
        self._conn.close()

    def current_thread(self, workspace: Path) -> Row | None:
        """The thread commands in `workspace` act on when no thread is named (Store.current_thread)."""
        return self._one("SELECT t.* FROM current_threads c JOIN threads t USING (thread_id) WHERE c.workspace = ?",
                         str(workspace.resolve()))

    def thread(self, thread_id: str) -> Row | None:
        return self._one("SELECT * FROM threads WHERE thread_id = ?", thread_id)

    def threads(self) -> list[Row]:
        """Every thread, newest first (Store.list_threads)."""
        return [dict(row) for row in self._conn.execute(
            "SELECT * FROM threads ORDER BY created_at DESC, rowid DESC")]

    def current_goal(self, thread_id: str) -> Row | None:
        """The thread's current goal row, its contract, state and settings parsed."""
        return self._parsed(self._one("SELECT * FROM goals WHERE thread_id = ? AND standing = 'current'", thread_id))

    def goal(self, goal_id: str) -> Row | None:
        """Any goal's row by its id, current or not (Store.get_goal_by_id)."""
        return self._parsed(self._one("SELECT * FROM goals WHERE goal_id = ?", goal_id))

    def digest(self, goal_id: str) -> Row | None:
        """The goal's digest as core/digest.py's `GoalDigest.to_json` wrote it; None when it has no row."""
        row = self._one("SELECT digest FROM goal_summaries WHERE goal_id = ?", goal_id)
        return None if row is None else json.loads(row["digest"])

    def runner(self, goal_id: str) -> str | None:
        """`host:pid` of the live runner holding the goal's lease (store/leases.lease_is_live), else None."""
        lease = self._one("SELECT host, pid, heartbeat_at FROM leases WHERE goal_id = ?", goal_id)
        if lease is None or not holder_is_live(lease["host"], lease["pid"], lease["heartbeat_at"]):
            return None
        return f"{lease['host']}:{lease['pid']}"

    def event_pages(self, goal: Row, page: int = 500) -> Iterator[list[Row]]:
        """The goal's events, oldest first, `page` at a time (Store.event_pages, and its query: `+thread_id`
        keeps the thread's index out of the plan, so only the goal's rows are read): seq, kind, actor, payload."""
        after = 0
        while rows := self._conn.execute(
                "SELECT seq, kind, actor, payload FROM events WHERE +thread_id = ? AND seq > ? AND goal_id = ? "
                "ORDER BY seq LIMIT ?", (goal["thread_id"], after, goal["goal_id"], page)).fetchall():
            yield [{**dict(row), "payload": json.loads(row["payload"])} for row in rows]
            after = rows[-1]["seq"]

    def events_of(self, goal: Row, kinds: tuple[str, ...]) -> list[Row]:
        """The goal's events of `kinds`, oldest first, as rows (Store.events with a goal and kinds)."""
        rows = self._conn.execute(
            "SELECT seq, kind, actor, payload FROM events INDEXED BY events_by_goal_kind WHERE +thread_id = ? "
            f"AND goal_id = ? AND kind IN ({', '.join('?' * len(kinds))}) ORDER BY seq",
            (goal["thread_id"], goal["goal_id"], *kinds)).fetchall()
        return [{**dict(row), "payload": json.loads(row["payload"])} for row in rows]

    def implemented_by(self, goal_id: str) -> list[Row]:
        """The goals started with `gk implement` from a PRD distilled from this one, newest thread first, each
        with its goal branch's name (Store.goals_implementing, and the report's reading of it)."""
        found = []
        for row in self._conn.execute(
                "SELECT g.thread_id, g.goal_id FROM goal_summaries s JOIN goals g USING (goal_id) JOIN threads t "
                "USING (thread_id) WHERE json_extract(s.digest, '$.implements') = ? "
                "ORDER BY t.created_at DESC, t.rowid DESC, g.created_at, g.rowid", (goal_id,)).fetchall():
            branches = self.events_of(dict(row), ("goal_branch",))
            found.append({"goal_id": row["goal_id"], "branch": branches[0]["payload"]["name"] if branches else None})
        return found

    @staticmethod
    def _parsed(goal: Row | None) -> Row | None:
        """A goal row with its contract, state and settings parsed."""
        if goal is not None:
            for column in ("contract", "state", "settings"):
                goal[column] = json.loads(goal[column])
        return goal

    def _one(self, query: str, *parameters: object) -> Row | None:
        row = self._conn.execute(query, parameters).fetchone()
        return None if row is None else dict(row)


def _plain_store(path: Path) -> bool:
    """Whether `path` is a store file `Store` would open as it is: no link, a regular non-empty file, private,
    ours, and writable with its folder (Database._prepare_file refuses or repairs every other case)."""
    try:
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if file.is_symlink() or (file.exists() and file.stat().st_mode & 0o077):
                return False
        info = path.stat()
    except OSError:
        return False
    return (stat.S_ISREG(info.st_mode) and info.st_size > 0 and info.st_uid == os.geteuid()
            and os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))
