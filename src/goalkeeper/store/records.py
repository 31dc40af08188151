"""The values the store hands out and takes in: threads, goals, events, leases, and their ids.

Plain frozen dataclasses around the typed events of events.py; no SQL and no I/O here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from goalkeeper.events import Event

JSONObject = dict[str, Any]
"""A JSON-serializable mapping: a goal's contract, state or settings."""

GoalStanding = Literal["current", "replaced", "cleared"]
"""Whether a goal row is its thread's goal. Not a lifecycle status: that lives in the goal's state."""


def new_id(prefix: str) -> str:
    """A fresh id such as `thr_1a2b3c4d5e6f`: the prefix, an underscore and 12 hex chars of a uuid4."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class ThreadRecord:
    """One conversation with the model: an append-only log of events in one workspace."""

    thread_id: str
    workspace: str
    """The resolved workspace path the thread was created in."""
    created_at: float


@dataclass(frozen=True)
class GoalRecord:
    """A goal as stored. Replacing a goal makes a new row; the old one stays, marked `replaced`."""

    goal_id: str
    thread_id: str
    contract: JSONObject
    state: JSONObject
    """Whatever the runner keeps about the goal (status, usage, streaks). The store does not read it."""
    settings: JSONObject
    version: int
    """Starts at 1 and goes up by one on every commit that changes state or settings."""
    created_at: float
    updated_at: float
    standing: GoalStanding = "current"


@dataclass(frozen=True)
class EventRecord:
    """One committed event. `seq` is store-wide, so it orders events across threads and processes."""

    seq: int
    thread_id: str
    goal_id: str | None
    ts: float
    event: Event
    """What happened, typed (events.py); who caused it is `event.actor`."""


@dataclass(frozen=True)
class Lease:
    """The claim of one runner process on one goal (DESIGN §5: one runner per goal)."""

    goal_id: str
    host: str
    pid: int
    heartbeat_at: float
    acquired_at: float
