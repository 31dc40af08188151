"""The pure decision core: `decide(state, outcome) -> Decision`.

It performs no I/O, never reads the clock and uses no randomness: the runner measures time and cost
and passes them in. That is what lets the local runner, the Temporal workflow and the property tests
drive one and the same logic (DESIGN §3). Its vocabulary lives in outcomes.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from goalkeeper.core.lifecycle import BUDGET_REASONS, TERMINAL, Actor, Reason, Status, TurnKind, is_allowed
from goalkeeper.core.outcomes import (
    Action,
    BudgetCapped,
    CheckResult,
    ChecksRan,
    CheckTrigger,
    Decision,
    GoalCleared,
    GoalSet,
    Interrupted,
    ModelResponded,
    Outcome,
    Proceed,
    ProviderFailed,
    Reject,
    RequestDue,
    ReviewPoint,
    RunChecks,
    StartTurn,
    Stop,
    ToolStepped,
    TurnEnded,
    UserInputQueued,
    UserPaused,
    UserResumed,
    Wait,
)
from goalkeeper.core.state import Best, BudgetRaise, ControlRequest, GoalState, Limits
from goalkeeper.events import (
    AttemptCountedEvent,
    BudgetCappedEvent,
    BudgetExhaustedEvent,
    BudgetRaisedEvent,
    ChecksRequestedEvent,
    Event,
    GoalClearedEvent,
    GoalSetEvent,
    NudgeEvent,
    StatusChangedEvent,
    TurnStartedEvent,
)

#: How many recent tool steps the repeat detector remembers.
REPEAT_WINDOW = 8

#: A request that could not produce even this many output tokens within the budget is not worth sending.
MIN_OUTPUT_TOKENS = 16

#: The endless-turn detector: a turn that makes this many tool calls per `no_progress_turns` without
#: changing the tree is nudged once, then stopped unmet(stuck). With the default 5 that is 40 calls.
STEPS_PER_NO_PROGRESS_TURN = 8

# ---------------------------------------------------------------- the core


def decide(state: GoalState, outcome: Outcome) -> Decision:
    """Decide what happens next after `outcome`. Pure: same inputs, same decision."""
    match outcome:
        case UserPaused() | Interrupted() | UserResumed() | BudgetRaise() | UserInputQueued():
            return _on_person(state, outcome)
        case BudgetCapped():
            return _on_capped(state, outcome)
        case GoalSet() | GoalCleared():
            return _on_goal(state, outcome)
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
        case UserResumed(raise_by=None, force=force, note=note):
            return _on_resume(state, force, note)
        case UserResumed(raise_by=BudgetRaise() as raised, force=force, note=note):
            return _on_resume_raised(state, raised, force, note)
        case BudgetRaise():
            return _on_budget_raised(state, outcome)
        case UserInputQueued():
            return Decision(replace(state, queued_inputs=state.queued_inputs + 1), Wait())
    raise TypeError(f"not a person's outcome: {outcome!r}")  # pragma: no cover


def _on_resume(state: GoalState, force: bool, note: str | None = None) -> Decision:
    if state.status == "pursuing":
        return Decision(state, Reject("the goal is already pursuing; `gk run` drives it"))
    if state.status in TERMINAL and not force:
        return Decision(state, Reject(f"the goal is {state.status}; resume with --force to re-open it"))
    fresh = replace(state, text_only_streak=0, no_progress_streak=0, nudged=False, in_wrap_up=False,
                    recent_steps=(), attempts={} if state.status in TERMINAL else state.attempts,
                    turn_steps=0, spent=replace(state.spent, wrap_up_tokens=0, wrap_up_usd=0.0))
    if state.status == "budget_limited" and budget_exhausted(fresh) is not None:
        return Decision(state, Reject("the budget is still used up; raise it first, e.g. --add-tokens 50000"))
    reason = Reason.USER_REOPEN if state.status in TERMINAL else Reason.USER_RESUME
    return _transition(fresh, "pursuing", "user", reason, {"note": note} if note else None)


def _on_resume_raised(state: GoalState, raised: BudgetRaise, force: bool, note: str | None = None) -> Decision:
    """Raise, then resume, as one decision with both events; a refused resume keeps the raise out too. A
    pursuing goal is only raised (`gk goal resume --add-tokens N` on a running goal)."""
    raising = _on_budget_raised(state, raised)
    if isinstance(raising.action, Reject) or state.status == "pursuing":
        return raising
    resuming = _on_resume(raising.state, force, note)
    if isinstance(resuming.action, Reject):
        return Decision(state, resuming.action)
    return replace(resuming, events=(*raising.events, *resuming.events))


def _on_goal(state: GoalState, outcome: GoalSet | GoalCleared) -> Decision:
    """Setting and clearing: the events that open and close a goal's history."""
    if isinstance(outcome, GoalCleared):
        return Decision(state, Wait(), (GoalClearedEvent(actor=outcome.actor, why=outcome.why),))
    goal_set = GoalSetEvent(outcome=outcome.outcome, verified=state.verified, contract=dict(outcome.contract))
    started = StatusChangedEvent(actor="user", from_status=None, to="pursuing", reason=Reason.GOAL_SET.value)
    return Decision(replace(state, status="pursuing", reason=Reason.GOAL_SET), Wait(), (goal_set, started))


def outcome_of(request: ControlRequest) -> Outcome:
    """The one translation of a person's control request into what `decide` is told, for both paths: the live
    runner's poll of queued requests and the one taken with no runner."""
    match request.action:
        case "pause":
            return UserPaused()
        case "resume":
            return UserResumed(force=request.force, raise_by=request.raise_by, note=request.note)
        case "budget":
            return request.raise_by or BudgetRaise()
        case "cap":
            return BudgetCapped(request.cap or "tokens")
        case "clear":
            return GoalCleared()
    raise ValueError(f"not a control action: {request.action!r}")  # pragma: no cover - the Literal is exhaustive


def _on_budget_raised(state: GoalState, raised: BudgetRaise) -> Decision:
    amounts = (raised.tokens, raised.usd, raised.time_s, raised.turns)
    if any(not amount >= 0 for amount in amounts) or not any(amounts):  # `not >=` also refuses NaN
        return Decision(state, Reject("a budget raise must be positive, e.g. --add-tokens 50000"))

    def add(limit: Any, amount: Any) -> Any:
        return limit + amount if limit is not None and amount else limit

    limits = state.limits
    new = Limits(add(limits.tokens, raised.tokens), add(limits.usd, raised.usd),
                 add(limits.time_s, raised.time_s), add(limits.turns, raised.turns))
    raised_to = BudgetRaisedEvent(tokens=new.tokens, usd=new.usd, time_s=new.time_s, turns=new.turns)
    return Decision(replace(state, limits=new), Wait(), (raised_to,))


_CAPPED: dict[str, Reason] = {"tokens": Reason.BUDGET_TOKENS, "usd": Reason.BUDGET_USD, "time": Reason.BUDGET_TIME}
_CAPPED_FIELD = {"tokens": "tokens", "usd": "usd", "time": "time_s"}


def _on_capped(state: GoalState, capped: BudgetCapped) -> Decision:
    """A batch's global cap is reached: the goal's limit on that budget drops to what it has spent (never
    rises), so every rule that reads the budget sees it used up, a resume included. A goal that is pursuing
    gets its wrap-up turn at once; one already wrapping up or not pursuing keeps its course."""
    name = _CAPPED_FIELD[capped.dimension]  # the same field names in the limits and the spending
    limit, used = getattr(state.limits, name), getattr(state.spent, name)
    new = replace(state.limits, **{name: used if limit is None else min(limit, used)})
    reason = _CAPPED[capped.dimension]
    event = BudgetCappedEvent(reason=reason.value, tokens=new.tokens, usd=new.usd, time_s=new.time_s)
    state = replace(state, limits=new)
    if state.status != "pursuing" or state.in_wrap_up:
        return Decision(state, Wait(), (event,))
    return _begin_wrap_up(state, reason, (event,))


# ---------------------------------------------------------------- inside a turn


def _on_request_due(state: GoalState, due: RequestDue) -> Decision:
    state = replace(state, spent=replace(state.spent, time_s=max(state.spent.time_s, due.elapsed_s)))
    if state.in_wrap_up:
        return _wrap_up_request(state, due)
    exhausted = budget_exhausted(state, starting_turn=False)
    limits, spent = state.limits, state.spent
    room = _output_room(due, limits.tokens, spent.tokens, limits.usd, spent.usd)
    if exhausted is None and room is not None and room < MIN_OUTPUT_TOKENS:
        # This request alone, priced as if nothing were cached, would overrun the token or USD budget.
        token_room = None if limits.tokens is None else limits.tokens - spent.tokens - due.estimated_input_tokens
        exhausted = Reason.BUDGET_TOKENS if token_room is not None and token_room < MIN_OUTPUT_TOKENS \
            else Reason.BUDGET_USD
    if exhausted is not None:
        return _begin_wrap_up(state, exhausted)
    return Decision(state, Proceed(room, limits.time_s))


def _wrap_up_request(state: GoalState, due: RequestDue) -> Decision:
    """The wrap-up's own caps bind each of its requests: tokens, USD and time, estimated pessimistically."""
    spent = state.spent
    room = _output_room(due, state.wrap_up_cap_tokens, spent.wrap_up_tokens, state.wrap_up_cap_usd,
                        spent.wrap_up_usd)
    deadline = spent.wrap_up_started_s + state.wrap_up_cap_s
    if (room is not None and room < MIN_OUTPUT_TOKENS) or spent.time_s >= deadline:
        # The cap is exact: a wrap-up request that would not fit is not sent at all.
        return _transition(state, "budget_limited", "harness", _budget_reason(state),
                           {"wrap_up": "ended: the next request would exceed the wrap-up cap"})
    return Decision(state, Proceed(room, deadline))


def _output_room(due: RequestDue, tokens: int | None, tokens_spent: int, usd: float | None,
                 usd_spent: float) -> int | None:
    """The most output tokens the request may produce so that neither limit is passed (None: no limit)."""
    estimate = max(0, due.estimated_input_tokens)
    rooms = [] if tokens is None else [tokens - tokens_spent - estimate]
    if usd is not None:
        usd_room = usd - usd_spent - max(0.0, due.input_usd)
        if usd_room < 0:
            rooms.append(-1)
        elif due.output_usd_per_token > 0:
            rooms.append(int(usd_room / due.output_usd_per_token))
    return min(rooms) if rooms else None


def _on_response(state: GoalState, response: ModelResponded) -> Decision:
    spent = state.spent
    spent = replace(
        spent,
        tokens=spent.tokens + response.charged_tokens,
        cached_tokens=spent.cached_tokens + response.cached_tokens,
        usd=spent.usd + response.usd,
        time_s=max(spent.time_s, response.elapsed_s),
        wrap_up_tokens=spent.wrap_up_tokens + (response.charged_tokens if state.in_wrap_up else 0),
        wrap_up_usd=spent.wrap_up_usd + (response.usd if state.in_wrap_up else 0.0),
    )
    return Decision(replace(state, spent=spent), Proceed())


def _on_tool_step(state: GoalState, step: ToolStepped) -> Decision:
    recent = (*state.recent_steps, step.signature)[-REPEAT_WINDOW:]
    state = replace(state, recent_steps=recent, turn_steps=state.turn_steps + 1,
                    spent=replace(state.spent, time_s=max(state.spent.time_s, step.elapsed_s)))
    if step.tree_hash is not None and step.tree_hash != state.turn_tree:
        state = replace(state, turn_steps=0, turn_tree=step.tree_hash)  # the tree changed: progress
    if not state.in_wrap_up:
        repeat = _repeating(recent)
        if repeat is not None:
            return _nudge_or_stuck(state, repeat)
        if state.turn_steps >= steps_limit(state):
            return _nudge_or_stuck(state, f"{state.turn_steps} tool calls in this turn without changing the tree")
        exhausted = budget_exhausted(state, starting_turn=False)
        if exhausted is not None:
            return _begin_wrap_up(state, exhausted)
    return Decision(state, Proceed())


def steps_limit(state: GoalState) -> int:
    """How many tool calls one turn may make without changing the tree before it counts as stuck."""
    return STEPS_PER_NO_PROGRESS_TURN * max(1, state.no_progress_turns)


def tree_due(state: GoalState) -> bool:
    """Whether the runner should measure the tree with the next tool step (only when the limit is near,
    so that a long turn costs one tree hash per `steps_limit` calls, not one per call)."""
    return state.turn_steps + 1 >= steps_limit(state)


def time_deadline(state: GoalState) -> float | None:
    """The active time at which the running work (a request, a tool call) must be cut short."""
    if state.in_wrap_up:
        return state.spent.wrap_up_started_s + state.wrap_up_cap_s
    return state.limits.time_s


def _repeating(recent: tuple[str, ...]) -> str | None:
    """Name the repeat pattern at the end of `recent`, if any."""
    if len(recent) >= 3 and recent[-1] == recent[-2] == recent[-3]:
        return "the same tool call (same name and arguments) 3 times in a row"
    if len(recent) >= 4 and recent[-1] == recent[-3] and recent[-2] == recent[-4] and recent[-1] != recent[-2]:
        return "two tool calls alternate (A-B-A-B) with the same arguments"
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
    if ended.signal == "paused":
        # A review the model asked for (the tool refuses it unless the contract allows): never progress, and
        # never an end; the streaks stay as they were for the turns after the resume.
        return _transition(replace(state, tree_hash=ended.tree_hash or state.tree_hash), "paused", "harness",
                           Reason.REVIEW_REQUESTED, {"note": ended.blocker or "", "declared_by": "model"})
    if ended.signal == "complete":
        return Decision(replace(state, text_only_streak=0), RunChecks("completion"), (_checks_event("completion"),))
    if ended.tool_calls == 0:
        state = replace(state, text_only_streak=state.text_only_streak + 1)
        return Decision(state, RunChecks("text_only"), (_checks_event("text_only"),))
    progressed = ended.tree_hash is not None and ended.tree_hash != state.tree_hash
    state = replace(state, text_only_streak=0, tree_hash=ended.tree_hash or state.tree_hash)
    if ended.review_point is not None:
        return _review_point(state, progressed, ended.review_point)
    return _after_progress_check(state, progressed)


def _review_point(state: GoalState, progressed: bool, point: ReviewPoint) -> Decision:
    """Pause for the person at a review point of the contract; the progress the turn made still counts."""
    if progressed:
        state = replace(state, no_progress_streak=0, nudged=False, recent_steps=())
    else:
        state = replace(state, no_progress_streak=state.no_progress_streak + 1)
    return _transition(state, "paused", "harness", Reason.REVIEW_POINT,
                       {"why": point.why, "files": list(point.files),
                        **({"since": point.since} if point.since else {})})


def _after_progress_check(state: GoalState, progressed: bool) -> Decision:
    if progressed:
        return _next_turn(replace(state, no_progress_streak=0, nudged=False, recent_steps=()))
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
        state = replace(state, no_progress_streak=0, nudged=False, recent_steps=())
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
    attempt_event = AttemptCountedEvent(failing=failing, attempts=attempts)
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
    return _start(state, "nudge", (NudgeEvent(why=what),))


def _start(state: GoalState, kind: TurnKind, events: tuple[Event, ...] = ()) -> Decision:
    """Open a turn, unless a budget is used up: then the capped wrap-up turn opens instead."""
    exhausted = budget_exhausted(state)
    if exhausted is not None and kind != "wrap_up":
        return _begin_wrap_up(state, exhausted, events)
    state = replace(state, spent=replace(state.spent, turns=state.spent.turns + 1), turn_steps=0,
                    turn_tree=state.tree_hash)
    started = TurnStartedEvent(turn_kind=kind, turn=state.spent.turns)
    return Decision(state, StartTurn(kind), (*events, started))


def _begin_wrap_up(state: GoalState, reason: Reason, events: tuple[Event, ...] = ()) -> Decision:
    state = replace(state, in_wrap_up=True, reason=reason)
    exhausted = BudgetExhaustedEvent(reason=reason.value, turn=state.spent.turns + 1)
    started = TurnStartedEvent(turn_kind="wrap_up", turn=state.spent.turns + 1)
    state = replace(state, spent=replace(state.spent, turns=state.spent.turns + 1, wrap_up_tokens=0,
                                         wrap_up_usd=0.0, wrap_up_started_s=state.spent.time_s),
                    turn_steps=0, turn_tree=state.tree_hash)
    return Decision(state, StartTurn("wrap_up"), (*events, exhausted, started))


def _budget_reason(state: GoalState) -> Reason:
    if state.reason in BUDGET_REASONS:
        return state.reason
    return budget_exhausted(state) or Reason.BUDGET_TOKENS


def _checks_event(trigger: CheckTrigger) -> Event:
    return ChecksRequestedEvent(trigger=trigger)


def _transition(state: GoalState, target: Status, actor: Actor, reason: Reason,
                detail: Mapping[str, Any] | None = None, events: tuple[Event, ...] = ()) -> Decision:
    """Move the goal to `target`; every status change is an event with an actor and a reason."""
    if not is_allowed(state.status, target, actor):
        return Decision(state, Reject(f"a {actor} cannot move a goal from {state.status} to {target}"))
    changed = StatusChangedEvent(actor=actor, from_status=state.status, to=target, reason=reason.value,
                                 **(detail or {}))
    new = replace(state, status=target, reason=reason, in_wrap_up=state.in_wrap_up and target == "pursuing")
    action: Action = Wait() if target == "pursuing" else Stop(target, reason)
    return Decision(new, action, (*events, changed))
