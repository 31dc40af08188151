"""One replay of a goal's events into what they say for certain, the newest turn included: the runner, the views
and the side question all read this fold (the messages the model sees are history.py's).

Pure: typed events in, one `GoalFacts` value out; `apply` keeps it in step as a runner commits new events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from goalkeeper.context.handoff import Facts
from goalkeeper.context.history import tool_calls_of
from goalkeeper.core.digest import GoalDigest
from goalkeeper.core.lifecycle import TurnKind
from goalkeeper.core.outcomes import CheckTrigger
from goalkeeper.core.state import GoalState
from goalkeeper.events import (
    ApprovalRuleEvent,
    BaselineEvent,
    BaselineMirrorEvent,
    CheckpointEvent,
    ChecksRequestedEvent,
    Event,
    Evidence,
    EvidenceEvent,
    GoalBranchEvent,
    InstructionsLoadedEvent,
    MessageEvent,
    ModelResponseEvent,
    NudgeEvent,
    RecoveryCheckpointEvent,
    StatusChangedEvent,
    ToolIntentEvent,
    ToolResultEvent,
    TurnEndedEvent,
    TurnStartedEvent,
    VerificationPinsEvent,
    VerificationSurfaceEvent,
    WaitEndedEvent,
    WaitStartedEvent,
)
from goalkeeper.models.base import ToolCall
from goalkeeper.spec.contract import Contract
from goalkeeper.store import EventRecord
from goalkeeper.verify.observed import Surface
from goalkeeper.verify.pins import Pins
from goalkeeper.workspace.checkpoints import Violation
from goalkeeper.workspace.git import GoalBranch
from goalkeeper.workspace.goal import violations_notice


@dataclass
class OpenTurn:
    """What the store says about the newest turn: enough to resume it after a crash, and to write its checkpoint.

    The checkpoint's figures are running totals, not the turn's events: a long turn keeps only what it needs,
    and a replay after a crash folds the same events into the same totals.
    """

    kind: TurnKind = "continuation"
    number: int = 0
    opened: bool = False
    """The turn's opening message has been written."""
    ended: bool = True
    pending_checks: CheckTrigger | None = None
    """A check run was requested (with this trigger) and has no evidence yet."""
    unanswered: list[ToolCall] = field(default_factory=list)
    """Tool calls of the newest response that have no result yet."""
    signal: dict[str, Any] | None = None
    """The update_goal report (complete or blocked) made in this turn; it ends the turn."""
    intended: set[str] = field(default_factory=set)
    """Call ids with an intent event (started, maybe finished before a crash)."""
    tools_intended: set[str] = field(default_factory=set)
    """The names of the tools the turn started (whether it may have written files)."""
    calls: int = 0
    """Tool calls its responses made."""
    shell_arguments: list[str] = field(default_factory=list)
    """The arguments of each shell call it started, in order."""
    files_touched: set[str] = field(default_factory=set)
    note: dict[str, Any] = field(default_factory=dict)
    """The newest `checkpoint` tool call's note."""
    tokens: int = 0
    """Charged tokens of its responses."""
    waiting: WaitStartedEvent | None = None
    """A wait that started and has neither ended nor a result: a resume carries it on (run/waiting.py)."""

    def apply(self, event: Event) -> None:
        """Fold one event of this turn in."""
        match event:
            case ChecksRequestedEvent(trigger=trigger):
                self.pending_checks = trigger
            case EvidenceEvent():
                self.pending_checks = None
            case TurnEndedEvent():
                self.ended = True
            case MessageEvent():
                self.opened = True
            case ModelResponseEvent(usage=usage):
                self.unanswered, self.intended = list(tool_calls_of(event)), set()
                self.calls += len(event.tool_calls)
                self.tokens += usage.charged_tokens
            case ToolIntentEvent(call_id=call_id, name=name, arguments=arguments):
                self.intended.add(call_id)
                self.tools_intended.add(name)
                if name == "shell":
                    self.shell_arguments.append(arguments)
            case ToolResultEvent():
                self._result(event)
            case WaitStartedEvent():
                self.waiting = event
            case WaitEndedEvent():
                self.waiting = None

    def _result(self, event: ToolResultEvent) -> None:
        if event.signal:
            self.signal = event.data
        self.unanswered = [c for c in self.unanswered if c.id != event.call_id]
        if self.waiting is not None and self.waiting.call_id == event.call_id:
            self.waiting = None
        self.files_touched.update(event.files_touched)
        if event.name == "checkpoint":
            self.note = event.data.get("note", self.note)


@dataclass
class ReviewMarks:
    """What changed since the goal's last review point: the checkpoint commits and their files."""

    since: str | None = None
    """The checkpoint commit of the last review point (None: none yet, count from the goal's base)."""
    commits: int = 0
    files: set[str] = field(default_factory=set)
    last_commit: str | None = None

    def apply(self, event: Event) -> None:
        if isinstance(event, CheckpointEvent) and event.commit:
            self.commits += 1
            self.files.update(event.files_committed or ())
            self.last_commit = event.commit
        elif isinstance(event, StatusChangedEvent) and event.reason in ("review_point", "review_requested"):
            self.since, self.commits, self.files = self.last_commit or self.since, 0, set()


@dataclass
class GoalFacts:
    """What a goal's events say: its evidence, baseline, pins, surface, branch and what the model must be told."""

    turn: OpenTurn = field(default_factory=OpenTurn)
    """The newest turn, as far as the store knows it."""
    digest: GoalDigest = field(default_factory=GoalDigest)
    """The summary's part of the fold (core/digest.py): evidence, baseline, pins, surfaces, last checkpoint."""
    why: str = ""
    """The newest nudge's reason."""
    mirror: BaselineMirrorEvent | None = None
    """The baseline mirror and the environment snapshot."""
    pins: Pins | None = None
    surface: Surface | None = None
    """The verification surface observed at baseline (None for goals stored before it was recorded)."""
    branch: GoalBranch | None = None
    notice: str = ""
    """Something the harness must tell the model in the next opening message (reverted edits, recovery)."""
    approved: list[str] = field(default_factory=list)
    """Command patterns a person approved and asked to remember."""
    instructions: InstructionsLoadedEvent | None = None
    """The project instructions read for the goal (None when it had none, or has not prepared yet)."""
    handoff: Facts = field(default_factory=Facts)
    """What a compaction's hand-off says for certain: checkpoints, files, failed approaches, repeats."""
    review: ReviewMarks = field(default_factory=ReviewMarks)
    """What changed since the last review point (the contract's `[review]`)."""

    @property
    def evidence(self) -> list[Evidence]:
        """The newest check run's evidence (the baseline's when no run followed it)."""
        return self.digest.evidence

    @property
    def baseline(self) -> BaselineEvent | None:
        """The baseline run: each check's tests are judged against its evidence (verify/tests.py)."""
        return self.digest.baseline

    @property
    def last_checkpoint(self) -> CheckpointEvent | None:
        return self.digest.last_checkpoint

    @property
    def pinned(self) -> list[str]:
        """Files of the verification surface pinned at baseline."""
        return self.digest.pinned

    @property
    def keep_green(self) -> list[str] | None:
        """The keep_green commands green at baseline (None before the baseline ran)."""
        return None if self.baseline is None else list(self.baseline.keep_green_active)

    @property
    def baseline_evidence(self) -> list[Evidence]:
        return [] if self.baseline is None else list(self.baseline.evidence)

    def apply(self, event: Event) -> None:
        """Fold one event in."""
        self.handoff.apply(event)
        self.digest.apply(event)
        self.review.apply(event)
        if isinstance(event, TurnStartedEvent):
            self.turn = OpenTurn(kind=event.turn_kind, number=event.turn, ended=False)  # type: ignore[arg-type]
        self.turn.apply(event)
        match event:
            case NudgeEvent():
                self.why = event.why
            case BaselineMirrorEvent():
                self.mirror = event
            case VerificationPinsEvent():
                self.pins = Pins.from_json(event.pins)
            case VerificationSurfaceEvent():
                self.surface = Surface.from_json(event.surface)
            case GoalBranchEvent():
                self.branch = GoalBranch(event.name, event.base_commit, event.snapshot_commit)
            case CheckpointEvent():
                self._checkpoint(event)
            case RecoveryCheckpointEvent():
                self.notice += " " + event.notice if event.notice else ""
            case MessageEvent():
                self.notice = ""  # told
            case StatusChangedEvent(to="pursuing", actor="user", note=str() as note) if note:
                self.notice += f" The person resumed the goal with this feedback:\n<feedback>\n{note}\n</feedback>"
            case ApprovalRuleEvent():
                self.approved.append(event.match)
            case InstructionsLoadedEvent():
                self.instructions = event

    def _checkpoint(self, event: CheckpointEvent) -> None:
        violations = [Violation(**v) for v in event.violations or []]
        self.notice += (" " + event.notice if event.notice else "") + violations_notice(violations)


def replay(records: Iterable[EventRecord]) -> GoalFacts:
    """Fold a goal's events, oldest first."""
    facts = GoalFacts()
    for record in records:
        facts.apply(record.event)
    return facts


def goal_view(contract: Contract, state: GoalState, facts: GoalFacts) -> dict[str, Any]:
    """What the `get_goal` tool shows, for the runner's model and a side question's alike."""
    return {"objective": contract.outcome, "status": state.status, "verified": contract.verified,
            "checks": {e.name: "pass" if e.passed else "fail" for e in facts.evidence},
            "spent": asdict(state.spent), "limits": asdict(state.limits),
            "checklist": list(contract.checklist), "model_may_pause": contract.review.model_may_pause}
