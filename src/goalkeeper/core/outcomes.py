"""The decision core's vocabulary: the outcomes it is told and the actions it returns, about the goal state it
reads (state.py holds `GoalState`, and `BudgetRaise` and `ControlRequest`, which a person's request carries).

Plain frozen dataclasses; no logic and no I/O (decide.py holds the logic).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from goalkeeper.core.lifecycle import Actor, Reason, Status, TurnKind
from goalkeeper.core.state import BudgetRaise, CapDimension, GoalState
from goalkeeper.events import Event

CheckTrigger = Literal["completion", "text_only"]


# ---------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class RequestDue:
    """A model request is about to be sent (checked before every request, the wrap-up's included).

    The estimate is pessimistic: every input token is counted as uncached and priced at the uncached input
    price, and the response may use all of the output the decision allows.
    """

    estimated_input_tokens: int
    elapsed_s: float
    input_usd: float = 0.0
    """The whole input at the uncached input price."""
    output_usd_per_token: float = 0.0


@dataclass(frozen=True)
class ModelResponded:
    """A response arrived; charge it."""

    charged_tokens: int
    cached_tokens: int
    usd: float
    elapsed_s: float


@dataclass(frozen=True)
class ToolStepped:
    """One tool call finished inside a turn (a tool boundary)."""

    signature: str
    """A digest of the call's name and arguments: equal signatures are the same call, whatever it printed."""
    elapsed_s: float
    tree_hash: str | None = None
    """The tree after the call, when the runner measured it (it does when `tree_due` says so)."""


@dataclass(frozen=True)
class TurnEnded:
    """The model answered with no tool call (or asked for completion / declared blocked)."""

    tool_calls: int
    signal: Literal["complete", "blocked", "paused"] | None = None
    blocker: str | None = None
    """For "blocked": what blocks the model; for "paused": what it wants reviewed."""
    tree_hash: str | None = None
    elapsed_s: float = 0.0
    review_point: ReviewPoint | None = None
    """The contract's review point this turn's end reached (the runner matched the checkpoint to `[review]`)."""


@dataclass(frozen=True)
class ReviewPoint:
    """Why a turn's end is a review point, and what changed since the last one (for the person)."""

    why: str
    files: tuple[str, ...] = ()
    since: str | None = None
    """The commit the changes are counted from: the last review point's checkpoint, else the goal's base."""


@dataclass(frozen=True)
class CheckResult:
    """The part of a piece of evidence that the decision core needs."""

    name: str
    kind: Literal["check", "constraint", "artifact", "hook"]
    passed: bool
    metric: float | None = None
    lower_is_better: bool | None = None


@dataclass(frozen=True)
class ChecksRan:
    """The harness ran the verification surface."""

    goal_id: str
    trigger: CheckTrigger
    results: tuple[CheckResult, ...]
    turn: int
    tree_hash: str | None = None


@dataclass(frozen=True)
class UserPaused:
    """A person paused the goal."""


@dataclass(frozen=True)
class Interrupted:
    """Ctrl-C or SIGTERM reached the runner."""


@dataclass(frozen=True)
class UserResumed:
    """A person resumed the goal; `force` re-opens an achieved or unmet goal; `raise_by` raises the budget
    first (one decision records both). On a pursuing goal a resume with a raise is the raise alone."""

    force: bool = False
    raise_by: BudgetRaise | None = None
    note: str | None = None
    """The person's feedback, given with the resume: the model reads it in its next turn."""


@dataclass(frozen=True)
class GoalSet:
    """A person set the goal; `decide` answers with the `goal_set` event and the move to pursuing."""

    outcome: str
    contract: Mapping[str, Any]
    """The contract's JSON form, recorded whole in the `goal_set` event."""


@dataclass(frozen=True)
class GoalCleared:
    """The goal is cleared: its thread has no goal afterwards (never refused)."""

    actor: Actor = "user"
    why: str | None = None


@dataclass(frozen=True)
class BudgetCapped:
    """A cap spanning several goals (a batch's global budget) is reached. The goal's own limit on `dimension`
    drops to what it has spent, so it gets its wrap-up turn now and stops `budget_limited`, like any budget."""

    dimension: CapDimension

@dataclass(frozen=True)
class UserInputQueued:
    """A person queued a message; it goes before any continuation."""


@dataclass(frozen=True)
class ProviderFailed:
    """The provider failed: retries ran out, the request could not fit, or it refused the request."""

    message: str
    reason: Reason = Reason.PROVIDER_UNAVAILABLE


Outcome = (
    RequestDue | ModelResponded | ToolStepped | TurnEnded | ChecksRan | UserPaused | Interrupted
    | UserResumed | BudgetRaise | BudgetCapped | UserInputQueued | ProviderFailed | GoalSet | GoalCleared
)


# ---------------------------------------------------------------- decisions


@dataclass(frozen=True)
class StartTurn:
    """Open a new turn of this kind."""

    kind: TurnKind


@dataclass(frozen=True)
class Proceed:
    """Carry on inside the current turn; the next request may produce at most this many tokens, and is
    abandoned when the goal's active time reaches `deadline_s`."""

    max_output_tokens: int | None = None
    deadline_s: float | None = None


@dataclass(frozen=True)
class RunChecks:
    """Run the verification surface now."""

    trigger: CheckTrigger


@dataclass(frozen=True)
class Wait:
    """Nothing to do until a person acts."""


@dataclass(frozen=True)
class Stop:
    """The run ends with the goal in this status."""

    status: Status
    reason: Reason


@dataclass(frozen=True)
class Reject:
    """A person asked for something this status does not allow."""

    message: str


Action = StartTurn | Proceed | RunChecks | Wait | Stop | Reject


@dataclass(frozen=True)
class Decision:
    """What happens next, the events that record why, and the goal's new state."""

    state: GoalState
    action: Action
    events: tuple[Event, ...] = ()
    """The events to append before acting on the decision."""
