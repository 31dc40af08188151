"""Each goal's digest (core/digest.py), one row per goal, kept current inside the transaction that commits the
goal's events: readers of a goal's summary read one row, whatever the length of its history.

The migration that adds the table also builds the row of every goal already stored, so an old store reads the
same after it as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from goalkeeper.core.digest import DIGEST_KINDS, GoalDigest, digest_of
from goalkeeper.events import Event, parse_event
from goalkeeper.store.dialect import Connection
from goalkeeper.store.records import dumps

SCHEMA = """
    -- Kind-filtered reads of one goal (its check runs, its checkpoints) read only those rows.
    CREATE INDEX events_by_goal_kind ON events (goal_id, kind, seq);
    CREATE TABLE goal_summaries (
        goal_id TEXT PRIMARY KEY REFERENCES goals (goal_id),
        digest  TEXT NOT NULL
    );
"""


def migrate(conn: Connection, statements: list[str]) -> None:
    """Migration 2: the index and the table (`statements`, SCHEMA split), then every stored goal's row."""
    for statement in statements:
        conn.execute(statement)
    goal_ids = [row[0] for row in conn.execute("SELECT goal_id FROM goals")]
    marks = ", ".join("?" * len(DIGEST_KINDS))
    for goal_id in goal_ids:
        rows = conn.execute(f"SELECT kind, actor, payload FROM events WHERE goal_id = ? AND kind IN ({marks}) "
                            "ORDER BY seq", (goal_id, *sorted(DIGEST_KINDS)))
        events = (parse_event(row[0], row[1], json.loads(row[2])) for row in rows)
        write(conn, goal_id, digest_of(events))


def start(conn: Connection, goal_id: str, events: Iterable[Event]) -> None:
    """A new goal's row."""
    write(conn, goal_id, digest_of(events))


def update(conn: Connection, goal_id: str, events: Iterable[Event]) -> None:
    """Fold newly committed events into the goal's row; a commit with no event the digest reads costs nothing."""
    relevant = [event for event in events if event.kind in DIGEST_KINDS]
    if relevant:
        digest = read(conn, goal_id)
        for event in relevant:
            digest.apply(event)
        write(conn, goal_id, digest)


def read(conn: Connection, goal_id: str) -> GoalDigest:
    """The goal's digest (an empty one for a goal with no row: no such goal)."""
    row = conn.execute("SELECT digest FROM goal_summaries WHERE goal_id = ?", (goal_id,)).fetchone()
    return GoalDigest() if row is None else GoalDigest.from_json(json.loads(row[0]))


def write(conn: Connection, goal_id: str, digest: GoalDigest) -> None:
    conn.execute("INSERT INTO goal_summaries (goal_id, digest) VALUES (?, ?) "
                 "ON CONFLICT (goal_id) DO UPDATE SET digest = excluded.digest",
                 (goal_id, dumps(digest.to_json())))


def implementing(conn: Connection, spike_goal_id: str) -> list[tuple[str, str]]:
    """(thread_id, goal_id) of each goal whose digest says it implements `spike_goal_id`, newest thread first."""
    implements = conn.dialect.json_text("s.digest", "implements")
    rows = conn.execute("SELECT g.thread_id, g.goal_id FROM goal_summaries s JOIN goals g USING (goal_id) "
                        f"JOIN threads t USING (thread_id) WHERE {implements} = ? "
                        "ORDER BY t.created_at DESC, t.rowid DESC, g.created_at, g.rowid", (spike_goal_id,))
    return [(row[0], row[1]) for row in rows]
