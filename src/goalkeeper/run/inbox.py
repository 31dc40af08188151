"""The runner's side of queued controls: the requests a person left in the store, and the marker that closes one.

A face queues a request while a runner holds the goal's lease (goals/control.py); the runner reads it here at
its next boundary and closes it with `applied_marker`, so the person who asked is told the outcome.
"""

from __future__ import annotations

from typing import Literal

from goalkeeper.core.outcomes import Decision, Reject
from goalkeeper.events import ControlAppliedEvent, ControlRequestEvent
from goalkeeper.store import Store


def pending_requests(store: Store, goal_id: str, thread_id: str,
                     after_seq: int = 0) -> list[tuple[int, ControlRequestEvent]]:
    """Control requests not yet applied, oldest first, each with its seq."""
    records = store.events(thread_id, after_seq=after_seq, goal_id=goal_id,
                           kinds=[ControlRequestEvent, ControlAppliedEvent])
    applied = {r.event.request_seq for r in records if isinstance(r.event, ControlAppliedEvent)}
    return [(r.seq, r.event) for r in records if isinstance(r.event, ControlRequestEvent) and r.seq not in applied]


def applied_marker(request_seq: int, decision: Decision,
                   actor: Literal["user", "harness"] = "harness") -> ControlAppliedEvent:
    """The `control_applied` event that closes a queued request (the runner's actor is the harness); a refused
    one carries the refusal, so the person who asked is told it on either path."""
    rejected = decision.action.message if isinstance(decision.action, Reject) else None
    return ControlAppliedEvent(actor=actor, request_seq=request_seq, rejected=rejected)
