"""A goal's digest: what its summary shows, folded event by event, and its JSON form.

The newest evidence, the baseline, the last checkpoint, the checklist items marked done, the pinned files, the
surfaces, the metric trend, the goal a PRD implementation came from, the project instructions read, the newest
review point and the wait the goal is in. The store keeps one digest per goal, brought up to date in the
transaction that commits the goal's events, so `gk status`, `gk threads` and `GET /threads` read one row per goal
instead of replaying its events. The runner's GoalFacts (context/replay.py) folds these through a GoalDigest too,
so the two never disagree.

Pure: typed events in, a JSON-ready dict out (and back).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from goalkeeper.core.figures import metric_point
from goalkeeper.events import (
    BaselineEvent,
    CheckpointEvent,
    Event,
    Evidence,
    EvidenceEvent,
    ImplementsEvent,
    InstructionsLoadedEvent,
    StatusChangedEvent,
    TurnStartedEvent,
    VerificationPinsEvent,
    VerificationSurfaceEvent,
    WaitEndedEvent,
    WaitStartedEvent,
    parse_event,
    payload_of,
)

DIGEST_KINDS: frozenset[str] = frozenset(kind.model_fields["kind"].default for kind in (
    BaselineEvent, EvidenceEvent, CheckpointEvent, VerificationPinsEvent, VerificationSurfaceEvent, ImplementsEvent,
    InstructionsLoadedEvent, StatusChangedEvent, WaitStartedEvent, WaitEndedEvent, TurnStartedEvent))
"""The kinds of event a digest reads; a commit of none of them leaves the stored digest as it was."""


@dataclass
class GoalDigest:
    """What a goal's events say for its summary."""

    evidence: list[Evidence] = field(default_factory=list)
    """The newest check run's evidence (the baseline's when no run followed it)."""
    baseline: BaselineEvent | None = None
    last_checkpoint: CheckpointEvent | None = None
    checklist_done: set[int] = field(default_factory=set)
    """Checklist items some checkpoint's note listed in `checklist_done`."""
    pinned: list[str] = field(default_factory=list)
    """Files of the verification surface pinned at baseline."""
    run_surface: dict[str, Any] | None = None
    """The surface's state at the newest check run that recorded one: unchanged, extended or modified."""
    observed_surface: dict[str, Any] | None = None
    """The baseline surface's summary (verify.observed.surface_summary)."""
    metric_trend: list[dict[str, Any]] = field(default_factory=list)
    """Each check run's metric point (`metric_point`), oldest first; runs that read no metric are left out."""
    implements: str | None = None
    """The spike goal whose PRD this goal implements (`gk implement`)."""
    review_point: dict[str, Any] | None = None
    """The newest review point's pause (the contract's or the model's): why, the files changed since the last
    one and the commit they count from, the model's note."""
    instructions: list[dict[str, Any]] = field(default_factory=list)
    """The project instruction files found for the goal (InstructionFile's fields each), in the order read."""
    waiting: WaitStartedEvent | None = None
    """The wait the goal is in: started, not yet ended (a new turn ends any wait its old one left open)."""

    def apply(self, event: Event) -> None:
        """Fold one event in; an event of a kind outside DIGEST_KINDS changes nothing."""
        match event:
            case BaselineEvent():
                self.baseline, self.evidence = event, list(event.evidence)
            case EvidenceEvent():
                self.evidence = list(event.evidence)
                self.run_surface = event.surface or self.run_surface
                if (point := metric_point(event.turn, ((e.name, e.metric) for e in event.evidence))) is not None:
                    self.metric_trend.append(point)
            case CheckpointEvent():
                self.last_checkpoint = event
                numbers: Any = event.note.get("checklist_done") or []
                self.checklist_done.update(n for n in numbers if isinstance(n, int))
            case VerificationPinsEvent():
                self.pinned = list(event.files)
            case VerificationSurfaceEvent():
                self.observed_surface = event.summary
            case ImplementsEvent():
                self.implements = event.spike_goal_id
            case StatusChangedEvent(reason="review_point" | "review_requested"):
                self.review_point = payload_of(event)
            case InstructionsLoadedEvent():
                self.instructions = [item.model_dump(mode="json") for item in event.files]
            case WaitStartedEvent():
                self.waiting = event
            case WaitEndedEvent() | TurnStartedEvent():
                self.waiting = None

    def to_json(self) -> dict[str, Any]:
        """The digest as the store keeps it."""
        return {"evidence": [e.model_dump(mode="json") for e in self.evidence],
                "baseline": _event_json(self.baseline), "last_checkpoint": _event_json(self.last_checkpoint),
                "checklist_done": sorted(self.checklist_done), "pinned": self.pinned,
                "run_surface": self.run_surface, "observed_surface": self.observed_surface,
                "metric_trend": self.metric_trend, "implements": self.implements, "review_point": self.review_point,
                "instructions": self.instructions, "waiting": _event_json(self.waiting)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GoalDigest:
        """A digest as `to_json` wrote it."""
        baseline, checkpoint = _event_of(data["baseline"]), _event_of(data["last_checkpoint"])
        waiting = _event_of(data.get("waiting"))  # rows written before waits were digested have no key: no wait
        assert baseline is None or isinstance(baseline, BaselineEvent)
        assert checkpoint is None or isinstance(checkpoint, CheckpointEvent)
        assert waiting is None or isinstance(waiting, WaitStartedEvent)
        return cls(evidence=[Evidence.model_validate(e) for e in data["evidence"]], baseline=baseline,
                   last_checkpoint=checkpoint, checklist_done=set(data["checklist_done"]),
                   pinned=list(data["pinned"]), run_surface=data["run_surface"],
                   observed_surface=data["observed_surface"], metric_trend=list(data["metric_trend"]),
                   implements=data["implements"], review_point=data.get("review_point"),
                   # Rows written before instructions were read have no key: those goals read none.
                   instructions=list(data.get("instructions") or []), waiting=waiting)


def digest_of(events: Iterable[Event]) -> GoalDigest:
    """Fold a goal's events, oldest first."""
    digest = GoalDigest()
    for event in events:
        digest.apply(event)
    return digest


def _event_json(event: Event | None) -> dict[str, Any] | None:
    return None if event is None else {"kind": event.kind, "actor": event.actor, "payload": payload_of(event)}


def _event_of(data: dict[str, Any] | None) -> Event | None:
    return None if data is None else parse_event(data["kind"], data["actor"], data["payload"])
