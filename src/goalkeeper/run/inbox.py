"""The runner's side of queued controls: the requests a person left in the store, and the marker that closes one.

A face queues a request while a runner holds the goal's lease (goals/control.py); the runner reads it here at
its next boundary and closes it with `applied_marker`, so the person who asked is told the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from goalkeeper.core.outcomes import Decision, Reject
from goalkeeper.events import ControlAppliedEvent, ControlRequestEvent
from goalkeeper.store import EventRecord, Store


@dataclass
class Inbox:
    """One goal's control requests as a runner has read them: a cursor, and the requests not yet applied.

    Each read asks the store only for the control events after the cursor, so a poll costs the same at the
    goal's first event and at its millionth; a request seen once stays open here until its marker is seen.
    """

    cursor: int = 0
    """Every control event of the goal with a seq up to this one has been seen."""
    open: dict[int, ControlRequestEvent] = field(default_factory=dict)
    """Requests seen and not yet applied, by their seq."""

    def see(self, record: EventRecord) -> None:
        """Fold one of the goal's events in (a replayed one, one this runner committed, one read here)."""
        match record.event:
            case ControlRequestEvent():
                self.open[record.seq] = record.event
            case ControlAppliedEvent(request_seq=int() as seq):
                self.open.pop(seq, None)

    def read(self, store: Store, goal_id: str, thread_id: str) -> list[tuple[int, ControlRequestEvent]]:
        """The requests not yet applied, oldest first, each with its seq, after reading what arrived."""
        # The newest seq is read first: writers commit one at a time in seq order, so everything up to it
        # is committed before the read below starts, which therefore sees every control event up to it.
        newest = store.last_seq(thread_id)
        if newest <= self.cursor:  # nothing since the last read: what a goal waiting on its model sees
            return sorted(self.open.items())
        for record in store.events(thread_id, after_seq=self.cursor, goal_id=goal_id,
                                   kinds=[ControlRequestEvent, ControlAppliedEvent]):
            self.see(record)
            newest = max(newest, record.seq)
        self.cursor = newest
        return sorted(self.open.items())


def applied_marker(request_seq: int, decision: Decision,
                   actor: Literal["user", "harness"] = "harness") -> ControlAppliedEvent:
    """The `control_applied` event that closes a queued request (the runner's actor is the harness); a refused
    one carries the refusal, so the person who asked is told it on either path."""
    rejected = decision.action.message if isinstance(decision.action, Reject) else None
    return ControlAppliedEvent(actor=actor, request_seq=request_seq, rejected=rejected)
