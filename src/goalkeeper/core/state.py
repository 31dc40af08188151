"""A goal's state: where a new goal starts, and the codecs of the JSON-ready dicts the store keeps (the
`GoalState` and a person's `ControlRequest`)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from goalkeeper.core.lifecycle import Reason
from goalkeeper.core.outcomes import Best, BudgetRaise, ControlRequest, GoalState, Limits, Spent
from goalkeeper.events import ControlRequestEvent

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
