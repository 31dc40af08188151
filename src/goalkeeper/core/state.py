"""A goal's state and a person's requests of it: the frozen dataclasses the store keeps (`GoalState` with its
`Limits`, `Spent` and `Best`; `ControlRequest` with its `BudgetRaise`), where a new goal starts, and the codecs
of their JSON-ready forms.

They are the part of the decision core's vocabulary that reading a goal needs; the outcomes `decide` is told and
the actions it returns are in outcomes.py, which only changing a goal loads (each frozen dataclass costs its
generated methods' `exec` at import, and a read-only command should not pay for 20 it never makes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from goalkeeper.core.lifecycle import Reason, Status
from goalkeeper.events import ControlRequestEvent


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


@dataclass(frozen=True)
class BudgetRaise:
    """A person raises one or more limits by these amounts (each zero or positive; a negative one is rejected).

    The one shape of a raise: the CLI's `--add-*`, the TUI's `/budget 50k` and the server's body all become
    this, and `decide` is told it directly (raising alone) or inside `UserResumed`."""

    tokens: int = 0
    usd: float = 0.0
    time_s: float = 0.0
    turns: int = 0


CapDimension = Literal["tokens", "usd", "time"]
"""The limits a cap over several goals spans (turns are each goal's own)."""


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


#: The wrap-up turn's time cap: a quarter of the time budget, within these bounds (the upper one also
#: applies when there is no time budget).
WRAP_UP_MIN_S, WRAP_UP_MAX_S = 5.0, 120.0


def initial_state(goal_id: str, limits: Limits, verified: bool, max_attempts: int, no_progress_turns: int,
                  wrap_up_cap_tokens: int) -> GoalState:
    """The state a new goal starts in; `wrap_up_cap_tokens` is the configured cap.

    The wrap-up turn may overrun the token budget by at most a quarter of the budget, within the configured
    cap, so a small budget is not dwarfed by its own wrap-up. The USD and time budgets get the same quarter
    (time within WRAP_UP_MIN_S..WRAP_UP_MAX_S).
    """
    if limits.tokens is not None:
        wrap_up_cap_tokens = min(wrap_up_cap_tokens, max(2_000, limits.tokens // 4))
    wrap_up_s = WRAP_UP_MAX_S if limits.time_s is None else min(WRAP_UP_MAX_S, max(WRAP_UP_MIN_S, limits.time_s / 4))
    return GoalState(goal_id=goal_id, verified=verified, limits=limits, max_attempts=max_attempts,
                     no_progress_turns=no_progress_turns, wrap_up_cap_tokens=wrap_up_cap_tokens,
                     wrap_up_cap_usd=None if limits.usd is None else limits.usd / 4, wrap_up_cap_s=wrap_up_s)


def state_to_dict(state: GoalState) -> dict[str, Any]:
    """A plain dict; sets become sorted lists so the JSON is deterministic.

    Built field by field rather than with `asdict`, whose deep copies cost half a millisecond on every
    commit of the runner's hot path.
    """
    data = {f.name: getattr(state, f.name) for f in fields(state)}
    data["limits"], data["spent"] = asdict(state.limits), asdict(state.spent)
    data["best"] = asdict(state.best) if state.best else None
    data["reason"] = state.reason.value
    data["attempts"] = dict(state.attempts)
    data["passing"] = sorted(state.passing)
    data["recent_steps"] = list(state.recent_steps)
    return data


def state_from_dict(data: dict[str, Any]) -> GoalState:
    """The inverse of `state_to_dict`; unknown keys (from newer versions) are ignored."""
    known = set(GoalState.__dataclass_fields__)
    fields = {key: value for key, value in data.items() if key in known}
    fields["reason"] = Reason(fields.get("reason", Reason.GOAL_SET.value))
    fields["limits"] = Limits(**fields.get("limits", {}))
    fields["spent"] = Spent(**fields.get("spent", {}))
    fields["best"] = Best(**fields["best"]) if fields.get("best") else None
    fields["attempts"] = dict(fields.get("attempts", {}))
    fields["passing"] = frozenset(fields.get("passing", ()))
    fields["recent_steps"] = tuple(fields.get("recent_steps", ()))
    return GoalState(**fields)


def request_event(request: ControlRequest) -> ControlRequestEvent:
    """The `control_request` event that queues `request`: the action, `force`, the raise's `add_*` amounts, and
    the budget a batch's cap reached (asked by the harness)."""
    raised = request.raise_by or BudgetRaise()
    amounts = {"add_tokens": raised.tokens, "add_usd": raised.usd, "add_time_s": raised.time_s,
               "add_turns": raised.turns}
    capped = {"cap": request.cap, "actor": "harness"} if request.cap is not None else {}
    noted = {"note": request.note} if request.note else {}
    return ControlRequestEvent(action=request.action, force=request.force, **noted, **capped,
                               **{key: amount for key, amount in amounts.items() if amount})


def request_of(event: ControlRequestEvent) -> ControlRequest:
    """The inverse of `request_event`; a request that raises nothing has no `raise_by`."""
    raised = BudgetRaise(event.add_tokens or 0, event.add_usd or 0.0, event.add_time_s or 0.0, event.add_turns or 0)
    return ControlRequest(event.action, None if raised == BudgetRaise() else raised, bool(event.force), event.cap,
                          event.note)
