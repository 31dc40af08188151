"""The decision core's vocabulary: the goal state it reads, the outcomes it is told, the actions it returns.

Plain frozen dataclasses; no logic and no I/O (decide.py holds the logic).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from goalkeeper.core.lifecycle import Actor, Reason, Status, TurnKind
from goalkeeper.events import Event

CheckTrigger = Literal["completion", "text_only"]


# ---------------------------------------------------------------- state


@dataclass(frozen=True)
class Limits:
    """Budget limits; None means unlimited."""

    tokens: int | None = None
    usd: float | None = None
    time_s: float | None = None
    turns: int | None = None


@dataclass(frozen=True)
class Spent:
    """What the goal has used so far."""

    tokens: int = 0
    """Charged tokens: non-cached input plus output."""
    cached_tokens: int = 0
    usd: float = 0.0
    time_s: float = 0.0
    turns: int = 0
    wrap_up_tokens: int = 0
    """Tokens spent inside the wrap-up turn, capped separately."""
    wrap_up_usd: float = 0.0
    """USD spent inside the wrap-up turn, capped separately."""
    wrap_up_started_s: float = 0.0
    """The active time at which the wrap-up turn began (its time cap counts from here)."""


@dataclass(frozen=True)
class Best:
    """The best verified checkpoint so far (for rollback at the end of a metric goal)."""

    turn: int
    tree_hash: str | None
    passing: int
    metric: float | None


@dataclass(frozen=True)
class GoalState:
    """Everything `decide` needs to know about one goal. Serialised whole into the store."""

    goal_id: str
    status: Status = "pursuing"
    reason: Reason = Reason.GOAL_SET
    verified: bool = True
    """False for a goal with no checks; it is labelled unverified everywhere."""
    limits: Limits = Limits()
    spent: Spent = Spent()
    max_attempts: int = 3
    no_progress_turns: int = 5
    wrap_up_cap_tokens: int = 4000
    """The wrap-up turn may charge at most this many tokens (estimated before each of its requests)."""
    wrap_up_cap_usd: float | None = None
    """... and at most this many USD (None: no USD budget, so no USD cap)."""
    wrap_up_cap_s: float = 120.0
    """... and may run for at most this many seconds."""
    attempts: Mapping[str, int] = field(default_factory=dict)
    """Failed completion attempts per failing check."""
    text_only_streak: int = 0
    no_progress_streak: int = 0
    nudged: bool = False
    """A nudge turn was given and no progress has been seen since."""
    in_wrap_up: bool = False
    plan_mode: bool = False
    queued_inputs: int = 0
    tree_hash: str | None = None
    passing: frozenset[str] = frozenset()
    best_metric: float | None = None
    best: Best | None = None
    recent_steps: tuple[str, ...] = ()
    """Signatures (name + arguments) of the latest tool steps, for the repeat detector."""
    turn_steps: int = 0
    """Tool calls in the open turn since it began or last changed the tree (the endless-turn detector)."""
    turn_tree: str | None = None
    """The tree as last measured inside the open turn."""


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
class BudgetRaise:
    """A person raises one or more limits by these amounts (each zero or positive; a negative one is rejected).

    The one shape of a raise: the CLI's `--add-*`, the TUI's `/budget 50k` and the server's body all become
    this, and `decide` is told it directly (raising alone) or inside `UserResumed`."""

    tokens: int = 0
    usd: float = 0.0
    time_s: float = 0.0
    turns: int = 0


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


CapDimension = Literal["tokens", "usd", "time"]
"""The limits a cap over several goals spans (turns are each goal's own)."""


@dataclass(frozen=True)
class BudgetCapped:
    """A cap spanning several goals (a batch's global budget) is reached. The goal's own limit on `dimension`
    drops to what it has spent, so it gets its wrap-up turn now and stops `budget_limited`, like any budget."""

    dimension: CapDimension

ControlAction = Literal["pause", "resume", "clear", "budget", "cap"]


@dataclass(frozen=True)
class ControlRequest:
    """What a person asked of a goal, on any face; `decide.outcome_of` translates it, once, for both paths
    (a live runner's poll of the queue, and no runner)."""

    action: ControlAction
    raise_by: BudgetRaise | None = None
    force: bool = False
    cap: CapDimension | None = None
    """For `cap`: which limit the cap over the goals reached."""
    note: str | None = None
    """For `resume`: the person's feedback to the model."""


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
