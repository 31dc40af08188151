"""The decision core: each rule of DESIGN §3, and properties that hold over random runs."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from goalkeeper.core.decide import begin, decide, steps_limit, tree_due
from goalkeeper.core.lifecycle import TERMINAL, Reason
from goalkeeper.core.outcomes import (
    Action,
    CheckResult,
    ChecksRan,
    Decision,
    Interrupted,
    ModelResponded,
    Outcome,
    Proceed,
    ProviderFailed,
    Reject,
    RequestDue,
    RunChecks,
    StartTurn,
    Stop,
    ToolStepped,
    TurnEnded,
    UserPaused,
    UserResumed,
)
from goalkeeper.core.state import BudgetRaise, GoalState, Limits
from goalkeeper.events import payload_of

GOAL = "goal_1"


def passing(*names: str) -> tuple[CheckResult, ...]:
    return tuple(CheckResult(name, "check", True) for name in names)


def failing(*names: str) -> tuple[CheckResult, ...]:
    return tuple(CheckResult(name, "check", False) for name in names)


def status_changes(decision: Decision) -> list[dict[str, object]]:
    return [payload_of(e) | {"actor": e.actor} for e in decision.events if e.kind == "status_changed"]


# ---------------------------------------------------------------- rules, one by one


def test_completion_request_runs_checks_and_passing_checks_achieve() -> None:
    state = GoalState(GOAL)
    asked = decide(state, TurnEnded(tool_calls=1, signal="complete"))
    assert asked.action == RunChecks("completion")
    done = decide(asked.state, ChecksRan(GOAL, "completion", passing("tests"), turn=1))
    assert done.action == Stop("achieved", Reason.CHECKS_PASSED)


def test_false_completion_gets_audit_feedback_and_counts_an_attempt() -> None:
    state = GoalState(GOAL, max_attempts=2)
    decision = decide(state, ChecksRan(GOAL, "completion", failing("tests"), turn=1))
    assert decision.action == StartTurn("audit_feedback")
    assert decision.state.attempts == {"tests": 1}
    second = decide(decision.state, ChecksRan(GOAL, "completion", failing("tests"), turn=2))
    assert second.action == Stop("unmet", Reason.MAX_ATTEMPTS)


def test_a_broken_constraint_blocks_achievement() -> None:
    results = (*passing("tests"), CheckResult("ruff check .", "constraint", False))
    decision = decide(GoalState(GOAL), ChecksRan(GOAL, "completion", results, turn=1))
    assert decision.state.status == "pursuing"
    assert decision.action == StartTurn("audit_feedback")


def test_evidence_for_another_goal_never_counts() -> None:
    decision = decide(GoalState(GOAL), ChecksRan("goal_old", "completion", passing("tests"), turn=1))
    assert decision.state.status == "pursuing"


def test_text_only_turn_runs_checks_and_second_in_a_row_stalls() -> None:
    first = decide(GoalState(GOAL), TurnEnded(tool_calls=0))
    assert first.action == RunChecks("text_only")
    again = decide(first.state, ChecksRan(GOAL, "text_only", failing("tests"), turn=1))
    assert isinstance(again.action, StartTurn)
    second = decide(again.state, TurnEnded(tool_calls=0))
    stalled = decide(second.state, ChecksRan(GOAL, "text_only", failing("tests"), turn=2))
    assert stalled.action == Stop("paused", Reason.STALLED)


def test_text_only_turn_with_passing_checks_is_achieved() -> None:
    first = decide(GoalState(GOAL), TurnEnded(tool_calls=0))
    done = decide(first.state, ChecksRan(GOAL, "text_only", passing("tests"), turn=1))
    assert done.action == Stop("achieved", Reason.CHECKS_PASSED)


def test_unverified_goal_is_achieved_only_by_a_completion_request() -> None:
    state = GoalState(GOAL, verified=False)
    text_only = decide(decide(state, TurnEnded(tool_calls=0)).state, ChecksRan(GOAL, "text_only", (), turn=1))
    assert text_only.state.status == "pursuing"
    done = decide(state, ChecksRan(GOAL, "completion", (), turn=1))
    assert done.action == Stop("achieved", Reason.AUDIT_ACCEPTED)


def test_same_tool_call_three_times_nudges_then_stops_stuck() -> None:
    state = GoalState(GOAL)
    for _ in range(2):
        state = decide(state, ToolStepped("same", 0)).state
    nudge = decide(state, ToolStepped("same", 0))
    assert nudge.action == StartTurn("nudge")
    state = nudge.state
    for _ in range(2):
        state = decide(state, ToolStepped("same", 0)).state
    assert decide(state, ToolStepped("same", 0)).action == Stop("unmet", Reason.STUCK)


def test_oscillation_is_a_repeat() -> None:
    state = GoalState(GOAL)
    for signature in "aba":
        state = decide(state, ToolStepped(signature, 0)).state
    assert decide(state, ToolStepped("b", 0)).action == StartTurn("nudge")


def test_no_progress_turns_nudge_then_unmet() -> None:
    state = GoalState(GOAL, no_progress_turns=2, tree_hash="t0")
    state = decide(state, TurnEnded(tool_calls=1, tree_hash="t0")).state
    nudge = decide(state, TurnEnded(tool_calls=1, tree_hash="t0"))
    assert nudge.action == StartTurn("nudge")
    assert decide(nudge.state, TurnEnded(tool_calls=1, tree_hash="t0")).action == Stop("unmet", Reason.STUCK)


def test_progress_after_nudge_clears_it() -> None:
    state = GoalState(GOAL, no_progress_turns=1, tree_hash="t0")
    nudge = decide(state, TurnEnded(tool_calls=1, tree_hash="t0"))
    moved = decide(nudge.state, TurnEnded(tool_calls=1, tree_hash="t1"))
    assert moved.action == StartTurn("continuation")
    assert not moved.state.nudged


def test_blocked_report_is_unmet_by_the_model() -> None:
    decision = decide(GoalState(GOAL), TurnEnded(tool_calls=1, signal="blocked", blocker="no credentials"))
    assert decision.action == Stop("unmet", Reason.BLOCKED)
    change = status_changes(decision)[0]
    assert change["declared_by"] == "model" and change["blocker"] == "no credentials"


def test_exhausted_budget_gives_one_wrap_up_turn_then_budget_limited() -> None:
    state = GoalState(GOAL, limits=Limits(tokens=1000))
    state = decide(state, ModelResponded(1000, 0, 0.0, 1.0)).state
    wrap = decide(state, RequestDue(100, 1.0))
    assert wrap.action == StartTurn("wrap_up")
    deadline = 1.0 + wrap.state.wrap_up_cap_s  # the wrap-up's own time cap counts from its start
    assert decide(wrap.state, RequestDue(100, 1.0)).action == Proceed(wrap.state.wrap_up_cap_tokens - 100, deadline)
    ended = decide(wrap.state, TurnEnded(tool_calls=1))
    assert ended.action == Stop("budget_limited", Reason.BUDGET_TOKENS)


def test_turn_budget_stops_before_the_next_turn() -> None:
    state = GoalState(GOAL, limits=Limits(turns=1), tree_hash="a")
    first = begin(state)
    assert first.action == StartTurn("continuation")
    after = decide(first.state, TurnEnded(tool_calls=1, tree_hash="b"))
    assert after.action == StartTurn("wrap_up")


def test_resume_after_budget_needs_a_raise() -> None:
    state = GoalState(GOAL, status="budget_limited", reason=Reason.BUDGET_TOKENS, limits=Limits(tokens=10))
    state = replace(state, spent=replace(state.spent, tokens=12))
    assert isinstance(decide(state, UserResumed()).action, Reject)
    raised = decide(state, BudgetRaise(tokens=100)).state
    assert decide(raised, UserResumed()).state.status == "pursuing"


def test_terminal_goals_reopen_only_with_force() -> None:
    state = GoalState(GOAL, status="achieved", reason=Reason.CHECKS_PASSED)
    assert isinstance(decide(state, UserResumed()).action, Reject)
    assert decide(state, UserResumed(force=True)).state.status == "pursuing"


def test_provider_failure_pauses_never_unmet() -> None:
    decision = decide(GoalState(GOAL), ProviderFailed("connection refused"))
    assert decision.action == Stop("paused", Reason.PROVIDER_UNAVAILABLE)


def test_pause_then_no_request_until_resume() -> None:
    paused = decide(GoalState(GOAL), UserPaused()).state
    assert decide(paused, RequestDue(10, 0)).action == Stop("paused", Reason.USER_PAUSE)
    assert decide(paused, UserResumed()).state.status == "pursuing"


def test_metric_best_checkpoint_is_kept() -> None:
    def run(value: float, turn: int) -> ChecksRan:
        return ChecksRan(GOAL, "text_only", (CheckResult("p95", "check", False, value, True),), turn, f"t{turn}")

    state = GoalState(GOAL)
    for value, turn in ((200.0, 1), (150.0, 2), (170.0, 3)):
        state = decide(decide(state, TurnEnded(0)).state, run(value, turn)).state
        state = replace(state, text_only_streak=0)
    assert state.best is not None and state.best.turn == 2 and state.best.metric == 150.0


# ---------------------------------------------------------------- properties over random runs

everyone = st.sampled_from(["pause", "resume", "resume_force", "raise", "interrupt", "provider_failed"])
#: People who can stop a goal but never give it more budget or re-open it.
no_resumes = st.sampled_from(["pause", "interrupt", "provider_failed"])


class World:
    """A random but lawful world: what happens after each action (the runner's side of the loop)."""

    def __init__(self, data: st.DataObject, people: st.SearchStrategy[str] = everyone,
                 prices: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        self.data = data
        self.people = people
        self.prices = prices
        """USD per token: uncached input, cached input, output."""
        self.estimate: int | None = None
        """Set by a RequestDue; a response may follow only then, and never exceeds estimate + cap."""

    def draw(self, strategy: st.SearchStrategy[object]) -> object:
        return self.data.draw(strategy)

    def reply(self, action: Action) -> Outcome:
        # A response may follow only the RequestDue just answered, and only when it said Proceed.
        estimate, self.estimate = self.estimate, None
        if self.draw(st.integers(0, 9)) == 0:
            return self.person()
        match action:
            case Proceed(max_output_tokens=cap) if estimate is not None:
                out = int(self.draw(st.integers(0, 400 if cap is None else max(0, min(400, cap)))))  # type: ignore[call-overload]
                # The provider may count fewer input tokens than estimated, and cache any of them.
                sent = int(self.draw(st.integers(0, estimate)))  # type: ignore[call-overload]
                cached = int(self.draw(st.integers(0, sent)))  # type: ignore[call-overload]
                fresh = sent - cached
                usd = fresh * self.prices[0] + cached * self.prices[1] + out * self.prices[2]
                return ModelResponded(fresh + out, cached, usd, 0.0)
            case StartTurn() | Proceed():
                return self.inside_turn()
            case RunChecks(trigger=trigger):
                ok, which = self.draw(st.booleans()), self.draw(st.sampled_from([GOAL, "goal_other"]))
                return ChecksRan(str(which), trigger, passing("tests") if ok else failing("tests"), turn=1)
        return self.request()

    def request(self) -> RequestDue:
        self.estimate = int(self.draw(st.integers(1, 300)))  # type: ignore[call-overload]
        return RequestDue(self.estimate, 0.0, self.estimate * self.prices[0], self.prices[2])

    def inside_turn(self) -> Outcome:
        choice = self.draw(st.sampled_from(["request", "tool", "end"]))
        if choice == "request":
            return self.request()
        if choice == "tool":
            return ToolStepped(str(self.draw(st.sampled_from("abc"))), 0.0)
        signal = self.draw(st.sampled_from([None, "complete", "blocked"]))
        return TurnEnded(int(self.draw(st.integers(0, 2))), signal,  # type: ignore[call-overload, arg-type]
                         tree_hash=str(self.draw(st.sampled_from(["t1", "t2"]))))

    def person(self) -> Outcome:
        self.estimate = None
        kind = self.draw(self.people)
        outcomes: dict[str, Outcome] = {
            "pause": UserPaused(), "resume": UserResumed(), "resume_force": UserResumed(force=True),
            "raise": BudgetRaise(tokens=200, turns=1), "interrupt": Interrupted(),
            "provider_failed": ProviderFailed("down")}
        return outcomes[str(kind)]


PRICES = (2e-6, 0.5e-6, 8e-6)
"""USD per token (uncached input, cached input, output), like gpt-4.1."""


def drive(data: st.DataObject, steps: int, people: st.SearchStrategy[str] = everyone, usd: bool = False,
          ) -> list[tuple[GoalState, Outcome, Decision]]:
    limits = Limits(tokens=data.draw(st.integers(500, 5000)), turns=data.draw(st.integers(1, 6)),
                    usd=data.draw(st.floats(0.0005, 0.02)) if usd else None)
    state = GoalState(GOAL, limits=limits, max_attempts=2, no_progress_turns=2, wrap_up_cap_tokens=800,
                      wrap_up_cap_usd=limits.usd / 4 if limits.usd else None)
    decision, world = begin(state), World(data, people, PRICES if usd else (0.0, 0.0, 0.0))
    trace = []
    for _ in range(steps):
        outcome = world.reply(decision.action)
        before = decision.state
        decision = decide(before, outcome)
        trace.append((before, outcome, decision))
    return trace


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_nothing_leaves_a_terminal_status_without_a_forced_user_resume(data: st.DataObject) -> None:
    for before, outcome, decision in drive(data, 50):
        if before.status in TERMINAL and decision.state.status != before.status:
            assert outcome == UserResumed(force=True)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_achieved_only_right_after_passing_checks_for_this_goal(data: st.DataObject) -> None:
    for before, outcome, decision in drive(data, 50):
        if decision.state.status == "achieved" and before.status != "achieved":
            assert isinstance(outcome, ChecksRan)
            assert outcome.goal_id == before.goal_id
            assert all(result.passed for result in outcome.results)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_no_model_request_while_paused(data: st.DataObject) -> None:
    for before, outcome, decision in drive(data, 50):
        if before.status != "pursuing" and isinstance(outcome, RequestDue):
            assert not isinstance(decision.action, Proceed | StartTurn)
        if before.status != "pursuing" and not isinstance(outcome, UserResumed):
            assert not isinstance(decision.action, Proceed | StartTurn | RunChecks)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_token_budget_is_exceeded_by_at_most_the_wrap_up_cap(data: st.DataObject) -> None:
    # A person may grant a new budget (and so a new wrap-up turn); without that, the cap is the bound.
    for _before, _outcome, decision in drive(data, 50, no_resumes):
        state = decision.state
        assert state.limits.tokens is not None
        assert state.spent.tokens <= state.limits.tokens + state.wrap_up_cap_tokens


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_every_status_change_has_an_actor_and_a_reason(data: st.DataObject) -> None:
    for before, _outcome, decision in drive(data, 50):
        changes = status_changes(decision)
        if decision.state.status != before.status:
            assert len(changes) == 1
        for change in changes:
            assert change["actor"] in ("user", "model", "harness")
            assert change["reason"] in {reason.value for reason in Reason}


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 3), st.booleans())
def test_two_text_only_turns_never_lead_to_a_third_request(tool_turns: int, checks_pass_first: bool) -> None:
    state = GoalState(GOAL, tree_hash="t")
    for _ in range(tool_turns):
        state = decide(state, TurnEnded(1, tree_hash=f"t{_}")).state
    first = decide(state, TurnEnded(0))
    after_first = decide(first.state, ChecksRan(GOAL, "text_only", failing("tests"), turn=1))
    second = decide(after_first.state, TurnEnded(0))
    results = passing("tests") if checks_pass_first else failing("tests")
    final = decide(second.state, ChecksRan(GOAL, "text_only", results, turn=2))
    assert isinstance(final.action, Stop)
    assert not isinstance(decide(final.state, RequestDue(10, 0)).action, Proceed)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_usd_and_tokens_are_exceeded_by_at_most_their_wrap_up_caps_whatever_is_cached(data: st.DataObject) -> None:
    for _before, _outcome, decision in drive(data, 60, no_resumes, usd=True):
        state = decision.state
        assert state.limits.usd is not None and state.wrap_up_cap_usd is not None and state.limits.tokens
        assert state.spent.usd <= state.limits.usd + state.wrap_up_cap_usd + 1e-12
        assert state.spent.tokens <= state.limits.tokens + state.wrap_up_cap_tokens


@settings(max_examples=200, deadline=None)
@given(st.floats(1, 100), st.floats(0, 300), st.booleans())
def test_no_request_outlives_the_time_budget_or_the_wrap_up_time_cap(limit: float, elapsed: float,
                                                                     wrap_up: bool) -> None:
    state = GoalState(GOAL, limits=Limits(time_s=limit), wrap_up_cap_s=5.0)
    if wrap_up:
        state = decide(replace(state, spent=replace(state.spent, time_s=limit)), RequestDue(10, limit)).state
        assert state.in_wrap_up
    decision = decide(state, RequestDue(10, elapsed))
    ends = limit + 5.0 if wrap_up else limit
    if isinstance(decision.action, Proceed):
        assert elapsed < ends and decision.action.deadline_s == ends
    else:
        assert elapsed >= ends or wrap_up or decision.action == StartTurn("wrap_up")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=200), st.integers(1, 4))
def test_tool_calls_without_a_tree_change_end_stuck_without_any_budget(calls: list[str], turns: int) -> None:
    state = GoalState(GOAL, no_progress_turns=turns, tree_hash="t")
    decision, nudges = begin(state), 0
    for signature in itertools.islice(itertools.cycle(calls), 2 * steps_limit(state)):
        decision = decide(decision.state, ToolStepped(signature, 0.0, "t" if tree_due(decision.state) else None))
        nudges += sum(e.kind == "nudge" for e in decision.events)
        if isinstance(decision.action, Stop):
            break
    assert decision.action == Stop("unmet", Reason.STUCK)  # within 2 × steps_limit calls
    assert nudges == 1


@settings(max_examples=200, deadline=None)
@given(st.integers(-10**6, 10**6), st.one_of(st.floats(-10, 10), st.just(math.nan)), st.floats(-1e4, 1e4),
       st.integers(-50, 50))
def test_a_raise_is_applied_only_when_every_amount_is_positive_or_zero(tokens: int, usd: float, time_s: float,
                                                                       turns: int) -> None:
    state = GoalState(GOAL, limits=Limits(tokens=1000, usd=1.0, time_s=60.0, turns=5))
    raised = BudgetRaise(tokens, usd, time_s, turns)
    decision = decide(state, raised)
    amounts = (tokens, usd, time_s, turns)
    if all(amount >= 0 for amount in amounts) and any(amounts):
        limits = decision.state.limits
        assert limits.tokens is not None and limits.tokens >= 1000 and limits.turns is not None and limits.turns >= 5
    else:
        assert isinstance(decision.action, Reject) and decision.state == state
