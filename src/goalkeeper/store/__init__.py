"""The event store: threads, goals, events, blobs, leases and each goal's digest (summaries), shared by
processes (DESIGN §5): a SQLite file, or a PostgreSQL database a fleet's machines share (postgres.py).

The seam is `Store`; the records it takes and returns are frozen dataclasses from `records`.
May import: spec, core, events and errors only (import contract).
"""

from goalkeeper.store.db import MIGRATIONS, SCHEMA_VERSION
from goalkeeper.store.leases import lease_is_live
from goalkeeper.store.records import (
    EventRecord,
    Goal,
    GoalStanding,
    Lease,
    ThreadRecord,
    new_id,
    start_state,
)
from goalkeeper.store.store import Store, default_store_path

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "EventRecord",
    "Goal",
    "GoalStanding",
    "Lease",
    "Store",
    "ThreadRecord",
    "default_store_path",
    "lease_is_live",
    "new_id",
    "start_state",
]
