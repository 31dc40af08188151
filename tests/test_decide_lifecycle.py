"""`decide` mints every lifecycle event: setting, clearing, resuming with a raise and refusing.

Pure tests of the core: no store, no runner. The two control paths (a live runner and none) are tested over
the real store in test_goal_service.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from goalkeeper.core.decide import decide, outcome_of
from goalkeeper.core.lifecycle import Reason
from goalkeeper.core.outcomes import GoalCleared, GoalSet, Reject, UserPaused, UserResumed, Wait
from goalkeeper.core.state import (
    BudgetRaise,
    ControlAction,
    ControlRequest,
    GoalState,
    Limits,
    Spent,
    initial_state,
    request_event,
    request_of,
)
from goalkeeper.events import payload_of

LIMITED = GoalState("g", status="budget_limited", reason=Reason.BUDGET_TOKENS, limits=Limits(tokens=1000),
                    spent=Spent(tokens=1000))
"""A goal its token budget stopped at 1000 of 1000."""


def kinds(state: GoalState, outcome: object) -> list[str]:
    return [event.kind for event in decide(state, outcome).events]  # type: ignore[arg-type]


def test_setting_a_goal_records_goal_set_then_the_move_to_pursuing() -> None:
    state = initial_state("g", Limits(tokens=8000), verified=False, max_attempts=3, no_progress_turns=5,
                          wrap_up_cap_tokens=4000)
    decision = decide(state, GoalSet("Fix it", {"outcome": "Fix it"}))
    goal_set, started = decision.events
    assert (goal_set.kind, goal_set.actor, payload_of(goal_set)["outcome"]) == ("goal_set", "user", "Fix it")
    assert payload_of(goal_set)["verified"] is False and payload_of(goal_set)["contract"] == {"outcome": "Fix it"}
    assert (started.kind, payload_of(started)) == ("status_changed",
                                                      {"from": None, "to": "pursuing", "reason": "goal_set"})
    assert decision.state.status == "pursuing" and isinstance(decision.action, Wait)


def test_a_new_goals_wrap_up_caps_are_a_quarter_of_its_budget_within_bounds() -> None:
    small = initial_state("g", Limits(tokens=8000, usd=2.0, time_s=8.0), True, 3, 5, wrap_up_cap_tokens=4000)
    assert (small.wrap_up_cap_tokens, small.wrap_up_cap_usd, small.wrap_up_cap_s) == (2000, 0.5, 5.0)
    unlimited = initial_state("g", Limits(), True, 3, 5, wrap_up_cap_tokens=4000)
    assert (unlimited.wrap_up_cap_tokens, unlimited.wrap_up_cap_usd, unlimited.wrap_up_cap_s) == (4000, None, 120.0)


@pytest.mark.parametrize("status", ["pursuing", "paused", "budget_limited", "achieved", "unmet"])
def test_clearing_is_never_refused_and_records_goal_cleared(status: str) -> None:
    state = replace(LIMITED, status=status)  # type: ignore[arg-type]
    decision = decide(state, GoalCleared("harness", "no branch"))
    [cleared] = decision.events
    assert (cleared.kind, cleared.actor, payload_of(cleared)) == ("goal_cleared", "harness", {"why": "no branch"})
    assert not isinstance(decision.action, Reject)


def test_resuming_with_a_raise_records_budget_raised_and_status_changed_in_one_decision() -> None:
    decision = decide(LIMITED, UserResumed(raise_by=BudgetRaise(tokens=5000)))
    assert [e.kind for e in decision.events] == ["budget_raised", "status_changed"]
    assert payload_of(decision.events[0])["tokens"] == 6000
    assert (decision.state.status, decision.state.limits.tokens) == ("pursuing", 6000)


def test_a_refused_resume_keeps_its_raise_out_too() -> None:
    decision = decide(LIMITED, UserResumed(raise_by=BudgetRaise(turns=5)))  # tokens are still used up
    assert isinstance(decision.action, Reject) and "still used up" in decision.action.message
    assert decision.state == LIMITED and decision.events == ()


def test_resuming_a_pursuing_goal_with_a_raise_only_raises_it() -> None:
    pursuing = replace(LIMITED, status="pursuing", spent=Spent())
    assert kinds(pursuing, UserResumed(raise_by=BudgetRaise(tokens=10))) == ["budget_raised"]
    assert isinstance(decide(pursuing, UserResumed()).action, Reject)


@pytest.mark.parametrize(("action", "expected"), [
    ("pause", UserPaused()), ("clear", GoalCleared()), ("budget", BudgetRaise(turns=2)),
    ("resume", UserResumed(force=True, raise_by=BudgetRaise(turns=2))),
])
def test_one_translation_serves_both_paths_and_survives_the_queue(action: ControlAction, expected: object) -> None:
    asked = ControlRequest(action, BudgetRaise(turns=2) if action in ("budget", "resume") else None,
                           force=action == "resume")
    assert outcome_of(asked) == expected
    assert request_of(request_event(asked)) == asked  # what the runner reads is what was asked
