"""The event store: threads, goals, events, blobs, leases and each goal's digest (summaries), shared by
processes (DESIGN §5): a SQLite file, or a PostgreSQL database a fleet's machines share (postgres.py).

The seam is `Store`; the records it takes and returns are frozen dataclasses from `records`. A read-only
command's glance (glance.py) reads the SQLite file's rows as plain dicts instead, so this package's names load
on first use: importing `goalkeeper.store.glance` must not build the typed records (and load pydantic).
May import: spec, core, events and errors only (import contract).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from goalkeeper.store.db import MIGRATIONS, SCHEMA_VERSION
    from goalkeeper.store.leases import lease_is_live
    from goalkeeper.store.records import EventRecord, Goal, GoalStanding, Lease, ThreadRecord, new_id, start_state
    from goalkeeper.store.store import Store, default_store_path

_HOMES = {"MIGRATIONS": "db", "SCHEMA_VERSION": "db", "lease_is_live": "leases", "EventRecord": "records",
          "Goal": "records", "GoalStanding": "records", "Lease": "records", "ThreadRecord": "records",
          "new_id": "records", "start_state": "records", "Store": "store", "default_store_path": "store"}
"""Each exported name and the module of this package that defines it."""

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "EventRecord", "Goal", "GoalStanding", "Lease", "Store", "ThreadRecord",
           "default_store_path", "lease_is_live", "new_id", "start_state"]


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
