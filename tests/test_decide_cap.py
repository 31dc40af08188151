"""`decide` and a batch's global cap: a `cap` control request lowers the goal's own limit to what it has spent,
so the goal wraps up at once and stops `budget_limited`, and a resume needs a raise like any used-up budget.

Pure tests of the core: the fleet that sends the request is tested in test_batch.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from goalkeeper.core.decide import decide, outcome_of
from goalkeeper.core.lifecycle import Reason
from goalkeeper.core.outcomes import (
    BudgetCapped,
    ModelResponded,
    Reject,
    RequestDue,
    StartTurn,
    Stop,
    TurnEnded,
    UserResumed,
    Wait,
)
from goalkeeper.core.state import (
    BudgetRaise,
    CapDimension,
    ControlRequest,
    GoalState,
    Limits,
    Spent,
    request_event,
    request_of,
)
from goalkeeper.events import payload_of

RUNNING = GoalState("g", limits=Limits(tokens=50_000), spent=Spent(tokens=1200, usd=0.3, time_s=40.0, turns=3))


@pytest.mark.parametrize(("dimension", "reason", "limits"), [
    ("tokens", Reason.BUDGET_TOKENS, Limits(tokens=1200)),
    ("usd", Reason.BUDGET_USD, Limits(tokens=50_000, usd=0.3)),
    ("time", Reason.BUDGET_TIME, Limits(tokens=50_000, time_s=40.0)),
])
def test_a_cap_lowers_the_limit_to_what_was_spent_and_opens_the_wrap_up(dimension: CapDimension, reason: Reason,
                                                                         limits: Limits) -> None:
    decision = decide(RUNNING, BudgetCapped(dimension))
    assert decision.state.limits == limits
    assert decision.action == StartTurn("wrap_up") and decision.state.in_wrap_up
    assert [event.kind for event in decision.events] == ["budget_capped", "budget_exhausted", "turn_started"]
    assert payload_of(decision.events[0])["reason"] == reason.value
    assert decision.state.spent.turns == 4


def test_the_capped_wrap_up_ends_the_goal_budget_limited() -> None:
    wrapping = decide(RUNNING, BudgetCapped("tokens")).state
    charged = decide(wrapping, ModelResponded(300, 0, 0.0, 45.0)).state
    ended = decide(charged, TurnEnded(tool_calls=0, elapsed_s=46.0))
    assert ended.action == Stop("budget_limited", Reason.BUDGET_TOKENS)


def test_a_cap_never_raises_a_lower_limit() -> None:
    tight = replace(RUNNING, limits=Limits(tokens=1000))
    assert decide(tight, BudgetCapped("tokens")).state.limits.tokens == 1000


@pytest.mark.parametrize("status", ["paused", "budget_limited", "achieved", "unmet"])
def test_a_goal_not_pursuing_is_capped_but_not_restarted(status: str) -> None:
    state = replace(RUNNING, status=status)  # type: ignore[arg-type]
    decision = decide(state, BudgetCapped("tokens"))
    assert isinstance(decision.action, Wait) and decision.state.status == status
    assert decision.state.limits.tokens == 1200 and [e.kind for e in decision.events] == ["budget_capped"]


def test_a_goal_already_wrapping_up_keeps_its_one_wrap_up() -> None:
    wrapping = decide(RUNNING, BudgetCapped("tokens")).state
    again = decide(wrapping, BudgetCapped("usd"))
    assert isinstance(again.action, Wait) and again.state.spent.turns == wrapping.spent.turns


def test_after_a_cap_the_next_request_is_the_wrap_ups_and_a_resume_needs_a_raise() -> None:
    capped = decide(replace(RUNNING, status="paused"), BudgetCapped("tokens")).state
    resumed = decide(capped, UserResumed()).state
    due = decide(resumed, RequestDue(estimated_input_tokens=500, elapsed_s=41.0))
    assert due.action == StartTurn("wrap_up")  # its own budget is used up now: the wrap-up, not more work
    raised = decide(capped, UserResumed(raise_by=BudgetRaise(tokens=5000)))
    assert not isinstance(raised.action, Reject) and raised.state.limits.tokens == 6200


def test_a_cap_request_round_trips_through_its_event_and_is_the_harness_asking() -> None:
    asked = ControlRequest("cap", cap="usd")
    event = request_event(asked)
    assert (event.action, event.cap, event.actor) == ("cap", "usd", "harness")
    assert request_of(event) == asked
    assert outcome_of(asked) == BudgetCapped("usd")
