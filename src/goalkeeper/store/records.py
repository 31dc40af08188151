"""The values the store hands out and takes in: threads, goals, events, leases, and their ids.

Plain frozen dataclasses around the typed events of events.py and the goal's value types of spec/; no SQL and
no I/O here. A goal row's JSON is parsed into them here, once (`goal_of`), so nobody above re-parses it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from goalkeeper.core.state import GoalState, Limits, initial_state, state_from_dict
from goalkeeper.events import Event, payload_of
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import GoalSettings

GoalStanding = Literal["current", "replaced", "cleared"]
"""Whether a goal row is its thread's goal. Not a lifecycle status: that lives in the goal's state."""


def dumps(value: dict[str, Any]) -> str:
    """A stored row's JSON text. sort_keys: the same value always gives the same text, so rows compare and hash."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


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
    parent_thread_id: str | None = None
    """The thread this one was forked from (`gk fork`), if any."""


@dataclass(frozen=True)
class Goal:
    """A goal as stored, typed. Replacing a goal makes a new row; the old one stays, marked `replaced`."""

    goal_id: str
    thread_id: str
    contract: Contract
    state: GoalState
    """What `decide` keeps about the goal (status, usage, streaks). The store does not read it."""
    settings: GoalSettings
    version: int
    """Starts at 1 and goes up by one on every commit that changes state or settings."""
    created_at: float
    updated_at: float
    standing: GoalStanding = "current"


def start_state(goal_id: str, contract: Contract, settings: GoalSettings) -> GoalState:
    """The state a new goal starts in: its contract's budget and iteration limits (core.state.initial_state).

    The one place a contract's `Budget` becomes `decide`'s `Limits`: the same four limits, checked here once.
    """
    budget = contract.budget
    return initial_state(goal_id, Limits(budget.tokens, budget.usd, budget.time_s, budget.turns), contract.verified,
                         contract.iteration.max_attempts, contract.iteration.no_progress_turns,
                         settings.run.wrap_up_cap_tokens)


def goal_of(goal_id: str, thread_id: str, contract: dict[str, Any], state: dict[str, Any],
            settings: dict[str, Any], version: int, created_at: float, updated_at: float,
            standing: GoalStanding) -> Goal:
    """A goal row's JSON as a typed Goal. A row whose state was never saved starts from its contract."""
    parsed_contract, parsed_settings = Contract.model_validate(contract), GoalSettings.model_validate(settings)
    parsed_state = state_from_dict(state) if state else start_state(goal_id, parsed_contract, parsed_settings)
    return Goal(goal_id, thread_id, parsed_contract, parsed_state, parsed_settings, version, created_at, updated_at,
                standing)


@dataclass(frozen=True)
class EventRecord:
    """One committed event. `seq` is store-wide, so it orders events across threads and processes."""

    seq: int
    thread_id: str
    goal_id: str | None
    ts: float
    event: Event
    """What happened, typed (events.py); who caused it is `event.actor`."""

    def row(self) -> dict[str, Any]:
        """The event as plain data, as its row stores it: seq, kind, actor and payload (events.payload_of). The
        report and the measured checkpoints read events so, which a glance at the store reads too."""
        return {"seq": self.seq, "kind": self.event.kind, "actor": self.event.actor,
                "payload": payload_of(self.event)}


@dataclass(frozen=True)
class Lease:
    """The claim of one runner process on one goal (DESIGN §5: one runner per goal)."""

    goal_id: str
    host: str
    pid: int
    heartbeat_at: float
    acquired_at: float
