"""The pure decision core: `decide(state, outcome) -> Decision`.

It performs no I/O, never reads the clock and uses no randomness: the runner measures time and cost
and passes them in. That is what lets the local runner, the Temporal workflow and the property tests
drive one and the same logic (DESIGN §3). Its vocabulary lives in outcomes.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from goalkeeper.lifecycle import BUDGET_REASONS, TERMINAL, Actor, Reason, Status, TurnKind, is_allowed
from goalkeeper.outcomes import (
    Action,
    Best,
    BudgetRaised,
    CheckResult,
    ChecksRan,
    CheckTrigger,
    Decision,
    Event,
    GoalState,
    Interrupted,
    Limits,
    ModelResponded,
    Outcome,
    Proceed,
    ProviderFailed,
    Reject,
    RequestDue,
    RunChecks,
    Spent,
    StartTurn,
    Stop,
    ToolStepped,
    TurnEnded,
    UserInputQueued,
    UserPaused,
    UserResumed,
    Wait,
)

#: How many recent tool steps the repeat detector remembers.
REPEAT_WINDOW = 8

__all__ = [
    "REPEAT_WINDOW",
    "Action",
    "Best",
    "BudgetRaised",
    "CheckResult",
    "CheckTrigger",
    "ChecksRan",
    "Decision",
    "Event",
    "GoalState",
    "Interrupted",
    "Limits",
    "ModelResponded",
    "Outcome",
    "Proceed",
    "ProviderFailed",
    "Reject",
    "RequestDue",
    "RunChecks",
    "Spent",
    "StartTurn",
    "Stop",
    "ToolStepped",
    "TurnEnded",
    "UserInputQueued",
    "UserPaused",
    "UserResumed",
    "Wait",
    "begin",
    "budget_exhausted",
    "decide",
    "with_baseline",
]


# ---------------------------------------------------------------- the core


def decide(state: GoalState, outcome: Outcome) -> Decision:
    """Decide what happens next after `outcome`. Pure: same inputs, same decision."""
    match outcome:
        case UserPaused() | Interrupted() | UserResumed() | BudgetRaised() | UserInputQueued():
            return _on_person(state, outcome)
    if state.status != "pursuing":
        # Nothing the model or harness reports can restart a goal that is not pursued.
        return Decision(state, Stop(state.status, state.reason))
    match outcome:
        case RequestDue():
            return _on_request_due(state, outcome)
        case ModelResponded():
            return _on_response(state, outcome)
        case ToolStepped():
            return _on_tool_step(state, outcome)
        case TurnEnded():
            return _on_turn_end(state, outcome)
        case ChecksRan():
            return _on_checks(state, outcome)
        case ProviderFailed():
            # A provider's failure never makes a goal unmet: the work is not the model's fault.
            return _transition(state, "paused", "harness", outcome.reason, {"error": outcome.message})
    raise TypeError(f"unknown outcome {outcome!r}")  # pragma: no cover - exhaustive above


def budget_exhausted(state: GoalState, starting_turn: bool = True) -> Reason | None:
    """The first limit that is used up, if any.

    The turn limit counts turns already started, so it only matters when a new turn would start: inside
    the last allowed turn, requests go on until another limit or the turn's end.
    """
    limits, spent = state.limits, state.spent
    if limits.tokens is not None and spent.tokens >= limits.tokens:
        return Reason.BUDGET_TOKENS
    if limits.usd is not None and spent.usd >= limits.usd:
        return Reason.BUDGET_USD
    if limits.time_s is not None and spent.time_s >= limits.time_s:
        return Reason.BUDGET_TIME
    if starting_turn and limits.turns is not None and spent.turns >= limits.turns:
        return Reason.BUDGET_TURNS
    return None


def begin(state: GoalState) -> Decision:
    """Where a runner starts when no turn is open and no check run is pending (a fresh start or a restart)."""
    if state.status != "pursuing":
        return Decision(state, Stop(state.status, state.reason))
    if state.in_wrap_up:
        return _start(state, "wrap_up")
    return _next_turn(state)


def with_baseline(state: GoalState, results: tuple[CheckResult, ...], tree_hash: str | None) -> GoalState:
    """Fold the baseline check run into the progress marks (it never achieves anything by itself)."""
    baseline = ChecksRan(state.goal_id, "text_only", results, turn=0, tree_hash=tree_hash)
    state, _ = _record_evidence(state, baseline)
    return replace(state, tree_hash=tree_hash)


# ---------------------------------------------------------------- people


def _on_person(state: GoalState, outcome: Outcome) -> Decision:
    match outcome:
        case UserPaused() | Interrupted():
            if state.status != "pursuing":
                return Decision(state, Reject(f"the goal is {state.status}, not pursuing; nothing to pause"))
            reason = Reason.USER_PAUSE if isinstance(outcome, UserPaused) else Reason.INTERRUPTED
            actor: Actor = "user" if isinstance(outcome, UserPaused) else "harness"
            return _transition(state, "paused", actor, reason)
        case UserResumed(force=force):
            return _on_resume(state, force)
        case BudgetRaised():
            return _on_budget_raised(state, outcome)
        case UserInputQueued():
            return Decision(replace(state, queued_inputs=state.queued_inputs + 1), Wait())
    raise TypeError(f"not a person's outcome: {outcome!r}")  # pragma: no cover


def _on_resume(state: GoalState, force: bool) -> Decision:
    if state.status == "pursuing":
        return Decision(state, Reject("the goal is already pursuing; `gk run` drives it"))
    if state.status in TERMINAL and not force:
        return Decision(state, Reject(f"the goal is {state.status}; resume with --force to re-open it"))
    fresh = replace(state, text_only_streak=0, no_progress_streak=0, nudged=False, in_wrap_up=False,
                    recent_steps=(), attempts={} if state.status in TERMINAL else state.attempts,
                    spent=replace(state.spent, wrap_up_tokens=0))
    if state.status == "budget_limited" and budget_exhausted(fresh) is not None:
        return Decision(state, Reject("the budget is still used up; raise it first, e.g. --add-tokens 50000"))
    reason = Reason.USER_REOPEN if state.status in TERMINAL else Reason.USER_RESUME
    return _transition(fresh, "pursuing", "user", reason)


def _on_budget_raised(state: GoalState, raised: BudgetRaised) -> Decision:
    def add(limit: Any, amount: Any) -> Any:
        return limit + amount if limit is not None and amount else limit

    limits = state.limits
    new = Limits(add(limits.tokens, raised.tokens), add(limits.usd, raised.usd),
                 add(limits.time_s, raised.time_s), add(limits.turns, raised.turns))
    payload = {"tokens": new.tokens, "usd": new.usd, "time_s": new.time_s, "turns": new.turns}
    return Decision(replace(state, limits=new), Wait(), (Event("budget_raised", "user", payload),))


# ---------------------------------------------------------------- inside a turn


def _on_request_due(state: GoalState, due: RequestDue) -> Decision:
    state = replace(state, spent=replace(state.spent, time_s=max(state.spent.time_s, due.elapsed_s)))
    estimate = max(0, due.estimated_input_tokens)
    if state.in_wrap_up:
        wrap_room = state.wrap_up_cap_tokens - state.spent.wrap_up_tokens - estimate
        if wrap_room <= 0:
            # The cap is exact: a wrap-up request that would not fit is not sent at all.
            return _transition(state, "budget_limited", "harness", _budget_reason(state),
                               {"wrap_up": "ended: the next request would exceed the wrap-up cap"})
        return Decision(state, Proceed(wrap_room))
    exhausted = budget_exhausted(state, starting_turn=False)
    room = None if state.limits.tokens is None else state.limits.tokens - state.spent.tokens - estimate
    if exhausted is None and room is not None and room <= 0:
        exhausted = Reason.BUDGET_TOKENS  # this request alone would overrun the token budget
    if exhausted is not None:
        return _begin_wrap_up(state, exhausted)
    return Decision(state, Proceed(room))


def _on_response(state: GoalState, response: ModelResponded) -> Decision:
    spent = state.spent
    spent = replace(
        spent,
        tokens=spent.tokens + response.charged_tokens,
        cached_tokens=spent.cached_tokens + response.cached_tokens,
        usd=spent.usd + response.usd,
        time_s=max(spent.time_s, response.elapsed_s),
        wrap_up_tokens=spent.wrap_up_tokens + (response.charged_tokens if state.in_wrap_up else 0),
    )
    return Decision(replace(state, spent=spent), Proceed())


def _on_tool_step(state: GoalState, step: ToolStepped) -> Decision:
    recent = (*state.recent_steps, step.signature)[-REPEAT_WINDOW:]
    state = replace(state, recent_steps=recent,
                    spent=replace(state.spent, time_s=max(state.spent.time_s, step.elapsed_s)))
    repeat = _repeating(recent)
    if repeat is not None and not state.in_wrap_up:
        return _nudge_or_stuck(state, repeat)
    exhausted = budget_exhausted(state, starting_turn=False)
    if exhausted is not None and not state.in_wrap_up:
        return _begin_wrap_up(state, exhausted)
    return Decision(state, Proceed())


def _repeating(recent: tuple[str, ...]) -> str | None:
    """Name the repeat pattern at the end of `recent`, if any."""
    if len(recent) >= 3 and recent[-1] == recent[-2] == recent[-3]:
        return "the same tool call returned the same result 3 times in a row"
    if len(recent) >= 4 and recent[-1] == recent[-3] and recent[-2] == recent[-4] and recent[-1] != recent[-2]:
        return "two tool calls alternate (A-B-A-B) with the same results"
    return None


# ---------------------------------------------------------------- turn boundaries


def _on_turn_end(state: GoalState, ended: TurnEnded) -> Decision:
    state = replace(state, spent=replace(state.spent, time_s=max(state.spent.time_s, ended.elapsed_s)))
    if state.in_wrap_up:
        if ended.signal == "complete":
            return Decision(state, RunChecks("completion"), (_checks_event("completion"),))
        return _transition(state, "budget_limited", "harness", _budget_reason(state))
    if ended.signal == "blocked":
        # The harness makes the move (DESIGN §2) on the model's declaration, which the event names.
        return _transition(state, "unmet", "harness", Reason.BLOCKED,
                           {"blocker": ended.blocker or "", "declared_by": "model"})
    if ended.signal == "complete":
        return Decision(replace(state, text_only_streak=0), RunChecks("completion"), (_checks_event("completion"),))
    if ended.tool_calls == 0:
        state = replace(state, text_only_streak=state.text_only_streak + 1)
        return Decision(state, RunChecks("text_only"), (_checks_event("text_only"),))
    progressed = ended.tree_hash is not None and ended.tree_hash != state.tree_hash
    state = replace(state, text_only_streak=0, tree_hash=ended.tree_hash or state.tree_hash)
    return _after_progress_check(state, progressed)


def _after_progress_check(state: GoalState, progressed: bool) -> Decision:
    if progressed:
        return _next_turn(replace(state, no_progress_streak=0, nudged=False))
    state = replace(state, no_progress_streak=state.no_progress_streak + 1)
    if state.nudged:
        return _transition(state, "unmet", "harness", Reason.STUCK,
                           {"why": "no progress after the nudge turn"})
    if state.no_progress_streak >= state.no_progress_turns:
        return _nudge_or_stuck(state, f"no progress (same tree, checks, metric) for "
                                      f"{state.no_progress_streak} turns")
    return _next_turn(state)


def _on_checks(state: GoalState, ran: ChecksRan) -> Decision:
    if ran.goal_id != state.goal_id:
        # Evidence for a replaced goal never counts toward this one.
        return Decision(state, Wait())
    state, improved = _record_evidence(state, ran)
    failing = [r.name for r in ran.results if not r.passed]
    if ran.trigger == "completion" and not failing:
        reason = Reason.CHECKS_PASSED if state.verified else Reason.AUDIT_ACCEPTED
        return _transition(state, "achieved", "harness", reason, {"turn": ran.turn})
    if ran.trigger == "completion":
        if state.in_wrap_up:
            return _transition(state, "budget_limited", "harness", _budget_reason(state))
        return _count_attempt(state, failing)
    if not failing and state.verified:
        return _transition(state, "achieved", "harness", Reason.CHECKS_PASSED, {"turn": ran.turn})
    if state.text_only_streak >= 2:
        return _transition(state, "paused", "harness", Reason.STALLED,
                           {"why": "two text-only turns in a row and the checks do not pass"})
    if improved:
        state = replace(state, no_progress_streak=0, nudged=False)
    return _next_turn(state)


def _record_evidence(state: GoalState, ran: ChecksRan) -> tuple[GoalState, bool]:
    """Fold a check run into the progress marks and the best checkpoint; report whether it improved."""
    passing = frozenset(r.name for r in ran.results if r.passed and r.kind == "check")
    metric = next((r for r in ran.results if r.kind == "check" and r.metric is not None), None)
    better_metric = metric is not None and metric.metric is not None and (
        state.best_metric is None
        or (metric.metric < state.best_metric if metric.lower_is_better else metric.metric > state.best_metric)
    )
    improved = bool(passing - state.passing) or better_metric
    best_metric = metric.metric if better_metric and metric is not None else state.best_metric
    candidate = Best(ran.turn, ran.tree_hash, len(passing), metric.metric if metric else None)
    best = state.best
    if best is None or candidate.passing > best.passing or (candidate.passing == best.passing and better_metric):
        best = candidate
    return replace(state, passing=passing, best_metric=best_metric, best=best), improved


def _count_attempt(state: GoalState, failing: list[str]) -> Decision:
    attempts = dict(state.attempts)
    for name in failing:
        attempts[name] = attempts.get(name, 0) + 1
    state = replace(state, attempts=attempts)
    used_up = sorted(name for name in failing if attempts[name] >= state.max_attempts)
    attempt_event = Event("attempt_counted", "harness", {"failing": failing, "attempts": attempts})
    if used_up:
        return _transition(state, "unmet", "harness", Reason.MAX_ATTEMPTS,
                           {"checks": used_up, "max_attempts": state.max_attempts}, (attempt_event,))
    return _start(state, "audit_feedback", (attempt_event,))


def _next_turn(state: GoalState) -> Decision:
    if state.plan_mode:
        return Decision(state, Wait())  # plan mode never continues by itself
    if state.queued_inputs:
        return _start(replace(state, queued_inputs=state.queued_inputs - 1), "user_input")
    return _start(state, "continuation")


def _nudge_or_stuck(state: GoalState, what: str) -> Decision:
    if state.nudged:
        return _transition(state, "unmet", "harness", Reason.STUCK, {"why": what})
    state = replace(state, nudged=True, recent_steps=(), no_progress_streak=0)
    return _start(state, "nudge", (Event("nudge", "harness", {"why": what}),))


def _start(state: GoalState, kind: TurnKind, events: tuple[Event, ...] = ()) -> Decision:
    """Open a turn, unless a budget is used up: then the capped wrap-up turn opens instead."""
    exhausted = budget_exhausted(state)
    if exhausted is not None and kind != "wrap_up":
        return _begin_wrap_up(state, exhausted, events)
    state = replace(state, spent=replace(state.spent, turns=state.spent.turns + 1))
    started = Event("turn_started", "harness", {"kind": kind, "turn": state.spent.turns})
    return Decision(state, StartTurn(kind), (*events, started))


def _begin_wrap_up(state: GoalState, reason: Reason, events: tuple[Event, ...] = ()) -> Decision:
    state = replace(state, in_wrap_up=True, reason=reason)
    exhausted = Event("budget_exhausted", "harness", {"reason": reason.value, "turn": state.spent.turns + 1})
    started = Event("turn_started", "harness", {"kind": "wrap_up", "turn": state.spent.turns + 1})
    state = replace(state, spent=replace(state.spent, turns=state.spent.turns + 1))
    return Decision(state, StartTurn("wrap_up"), (*events, exhausted, started))


def _budget_reason(state: GoalState) -> Reason:
    if state.reason in BUDGET_REASONS:
        return state.reason
    return budget_exhausted(state) or Reason.BUDGET_TOKENS


def _checks_event(trigger: CheckTrigger) -> Event:
    return Event("checks_requested", "harness", {"trigger": trigger})


def _transition(state: GoalState, target: Status, actor: Actor, reason: Reason,
                detail: Mapping[str, Any] | None = None, events: tuple[Event, ...] = ()) -> Decision:
    """Move the goal to `target`; every status change is an event with an actor and a reason."""
    if not is_allowed(state.status, target, actor):
        return Decision(state, Reject(f"a {actor} cannot move a goal from {state.status} to {target}"))
    changed = Event("status_changed", actor,
                    {"from": state.status, "to": target, "reason": reason.value, **(detail or {})})
    new = replace(state, status=target, reason=reason, in_wrap_up=state.in_wrap_up and target == "pursuing")
    action: Action = Wait() if target == "pursuing" else Stop(target, reason)
    return Decision(new, action, (*events, changed))
