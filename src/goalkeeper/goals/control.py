"""The person's control path: set a goal, pause, resume, clear, raise the budget.

Every change goes through `decide`, like the runner's own. While a runner holds the goal's lease the
request is queued in the store and the runner applies it at its next boundary; otherwise it is
applied here at once. The CLI, the TUI and the server all call these functions.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from goalkeeper.config import GoalSettings
from goalkeeper.contract import Contract, parse_duration
from goalkeeper.core.decide import (
    BudgetRaised,
    Decision,
    GoalState,
    Limits,
    Outcome,
    Reject,
    UserPaused,
    UserResumed,
    decide,
)
from goalkeeper.core.lifecycle import Reason
from goalkeeper.core.state import state_from_dict, state_to_dict
from goalkeeper.errors import ConfigError, ContractError, GoalkeeperError, GoalNotFoundError
from goalkeeper.events import (
    ControlAppliedEvent,
    ControlRequestEvent,
    Event,
    GoalClearedEvent,
    GoalSetEvent,
    StatusChangedEvent,
)
from goalkeeper.store import GoalRecord, Store, ThreadRecord, lease_is_live
from goalkeeper.verify.checks import missing_commands
from goalkeeper.workspace.git import preflight

ControlAction = Literal["pause", "resume", "clear", "budget"]

#: How long a control request waits for a live runner to apply it.
CONTROL_WAIT_S = 5.0

#: The wrap-up turn's time cap: a quarter of the time budget, within these bounds (the upper one also
#: applies when there is no time budget).
WRAP_UP_MIN_S, WRAP_UP_MAX_S = 5.0, 120.0

#: The detail keys of a budget raise.
RAISE_KEYS = ("add_tokens", "add_usd", "add_time_s", "add_turns")


class GoalExistsError(GoalkeeperError):
    """Setting a goal would replace one that exists."""


class ControlRejected(GoalkeeperError):
    """The goal's status does not allow what was asked."""


class BudgetAmountError(ConfigError):
    """A budget raise (`/budget AMOUNT`) that is not one of the accepted forms."""


BUDGET_FORMS = ("tokens `50000`, `50k`, `1.5M`, `50K tok`; USD `$2`, `$0.50`; time `30m`, `1h`, `90s`, "
                "`1h30m`; turns `10 turns`")
"""The amounts `parse_budget_raise` accepts, for its error message and for help texts."""

_NUMBER = r"(\d[\d_,]*(?:\.\d+)?|\.\d+)"
_TOKENS = re.compile(rf"{_NUMBER}\s*([kKM]?)\s*(?i:tok|toks|token|tokens)?")
_USD = re.compile(rf"\$\s*{_NUMBER}|{_NUMBER}\s*(?:\$|usd)", re.IGNORECASE)
_TURNS = re.compile(rf"{_NUMBER}\s*turns?", re.IGNORECASE)
_TIME = re.compile(r"(?:\s*(?:\d+(?:\.\d*)?|\.\d+)\s*[dhms])+\s*")  # lower-case units: `M` is millions
_TOKEN_SCALE = {"": 1, "k": 1_000, "K": 1_000, "M": 1_000_000}


@dataclass(frozen=True)
class ControlResult:
    """What happened to a control request."""

    applied_by: Literal["here", "runner", "queued"]
    status: str | None
    """The goal's status afterwards (None once cleared)."""


def initial_state(goal_id: str, contract: Contract, settings: GoalSettings) -> GoalState:
    """The state a new goal starts in."""
    budget = contract.budget
    # The wrap-up turn may overrun the token budget by at most this much: a quarter of the budget, within
    # the configured cap, so a small budget is not dwarfed by its own wrap-up. The USD and time budgets
    # get the same quarter (time within WRAP_UP_MIN_S..WRAP_UP_MAX_S).
    wrap_up_cap = settings.run.wrap_up_cap_tokens
    if budget.tokens is not None:
        wrap_up_cap = min(wrap_up_cap, max(2_000, budget.tokens // 4))
    wrap_up_s = WRAP_UP_MAX_S if budget.time_s is None else min(WRAP_UP_MAX_S, max(WRAP_UP_MIN_S, budget.time_s / 4))
    return GoalState(
        goal_id=goal_id,
        verified=contract.verified,
        limits=Limits(budget.tokens, budget.usd, budget.time_s, budget.turns),
        max_attempts=contract.iteration.max_attempts,
        no_progress_turns=contract.iteration.no_progress_turns,
        wrap_up_cap_tokens=wrap_up_cap,
        wrap_up_cap_usd=None if budget.usd is None else budget.usd / 4,
        wrap_up_cap_s=wrap_up_s,
    )


def load_state(goal: GoalRecord) -> GoalState:
    """The goal's decision state (rebuilt from its contract if it was never saved)."""
    if not goal.state:
        return initial_state(goal.goal_id, Contract.model_validate(goal.contract),
                             GoalSettings.model_validate(goal.settings))
    return state_from_dict(goal.state)


def thread_for(store: Store, workspace: Path, thread_id: str | None = None, create: bool = False) -> ThreadRecord:
    """The thread named, or the workspace's current one (created on request)."""
    if thread_id:
        return store.get_thread(thread_id)
    thread = store.current_thread(workspace)
    if thread is None:
        if not create:
            raise GoalNotFoundError(f"no goal in {workspace}", 'set one with `gk goal "<objective>" --check ...`')
        thread = store.create_thread(workspace)
    return thread


def current_goal(store: Store, workspace: Path, thread_id: str | None = None) -> GoalRecord:
    """The goal of the workspace's current thread, or a clear error."""
    thread = thread_for(store, workspace, thread_id)
    goal = store.get_goal(thread.thread_id)
    if goal is None:
        raise GoalNotFoundError(f"no goal in {workspace}", 'set one with `gk goal "<objective>" --check ...`')
    return goal


def check_settable(workspace: Path, contract: Contract, allow_dirty: bool = False, unverified: bool = False) -> None:
    """What every UI checks before setting a goal: checks (or `unverified` said out loud), a clean git repository
    (unless `allow_dirty`) and every check's program present. A ConfigError (or the preflight's error) says what
    to fix."""
    if not contract.verified and not unverified:
        raise ConfigError("the goal has no checks, so nothing the harness runs can tell when it is done",
                          "add a check (--check NAME=COMMAND or [[checks]] in goal.toml), or pass --unverified to "
                          "let the model's own completion audit end it (labelled `achieved (unverified)`)")
    preflight(workspace, allow_dirty)  # the branch itself is made when the goal first runs
    missing = missing_commands(contract, workspace)
    if missing:
        name, word = missing[0]
        raise ConfigError(f"check `{name}` runs `{word}`, which is not a command here",
                          "fix the check's command (or install the tool) and set the goal again")


def set_goal(store: Store, workspace: Path, contract: Contract, settings: GoalSettings,
             replace_existing: bool = False, thread_id: str | None = None) -> GoalRecord:
    """Make `contract` the thread's goal (status pursuing). Replacing needs `replace_existing`."""
    thread = thread_for(store, workspace, thread_id, create=True)
    existing = store.get_goal(thread.thread_id)
    if existing is not None and not replace_existing:
        raise GoalExistsError(
            f"this workspace already has a goal ({existing.goal_id}, {existing.state.get('status')})",
            "confirm the replacement, pass --replace, or `gk goal clear` first")
    started = StatusChangedEvent(actor="user", from_status=None, to="pursuing", reason=Reason.GOAL_SET.value)
    goal_set = GoalSetEvent(outcome=contract.outcome, verified=contract.verified,
                            contract=contract.model_dump(mode="json"))
    record, _ = store.put_goal(thread.thread_id, contract.model_dump(mode="json"),
                               {}, settings.model_dump(mode="json"), [goal_set, started])
    state = initial_state(record.goal_id, contract, settings)
    store.commit(record.goal_id, [], state=state_to_dict(state), expected_version=record.version)
    return store.get_goal_by_id(record.goal_id)


def request(store: Store, goal: GoalRecord, action: ControlAction, wait_s: float = CONTROL_WAIT_S,
            **detail: Any) -> ControlResult:
    """Pause, resume, clear or raise the budget of `goal`, through its runner when one is live."""
    if action in ("resume", "budget"):
        check_raise(detail, required=action == "budget")
    lease = store.lease(goal.goal_id)
    if lease is None or not lease_is_live(lease):
        return apply_here(store, goal, action, detail)
    [queued] = store.append_events(goal.thread_id, [ControlRequestEvent(action=action, **detail)], goal_id=goal.goal_id)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if queued.seq in applied_requests(store, goal):
            return ControlResult("runner", _status_now(store, goal))
        lease = store.lease(goal.goal_id)
        if lease is None or not lease_is_live(lease):
            # The runner ended before it saw the request: apply it here, exactly once.
            if queued.seq in applied_requests(store, goal):
                return ControlResult("runner", _status_now(store, goal))
            return apply_here(store, goal, action, detail, request_seq=queued.seq)
        time.sleep(0.05)
    return ControlResult("queued", _status_now(store, goal))


def apply_here(store: Store, goal: GoalRecord, action: ControlAction, detail: dict[str, Any],
               request_seq: int | None = None) -> ControlResult:
    """Apply a control request in this process (no live runner holds the goal)."""
    goal = store.get_goal_by_id(goal.goal_id)
    marker: list[Event] = [ControlAppliedEvent(actor="user", request_seq=request_seq)] if request_seq else []
    if action == "clear":
        store.delete_goal(goal.goal_id, [*marker, GoalClearedEvent()])
        return ControlResult("here", None)
    decision = decide_control(load_state(goal), action, detail)
    if isinstance(decision.action, Reject):
        raise ControlRejected(decision.action.message)
    store.commit(goal.goal_id, [*decision.events, *marker],
                 state=state_to_dict(decision.state), expected_version=goal.version)
    return ControlResult("here", decision.state.status)


def decide_control(state: GoalState, action: ControlAction, detail: dict[str, Any]) -> Decision:
    """The decision for a person's control request (clear is handled by the caller)."""
    outcome: Outcome
    if action == "pause":
        outcome = UserPaused()
    elif action == "resume":
        raised = _raise_of(detail)
        if raised is not None:
            state = decide(state, raised).state
        outcome = UserResumed(force=bool(detail.get("force")))
    elif action == "budget":
        outcome = _raise_of(detail) or BudgetRaised()
    else:
        raise ValueError(f"not a decision-core control: {action}")
    return decide(state, outcome)


def outcome_of_request(request: ControlRequestEvent) -> Outcome | None:
    """What a queued control request means to `decide` (None for clear, which deletes the goal)."""
    if request.action == "pause":
        return UserPaused()
    if request.action == "budget":
        raised = BudgetRaised(request.add_tokens or 0, request.add_usd or 0.0, request.add_time_s or 0.0,
                              request.add_turns or 0)
        return raised
    if request.action == "resume":
        return UserResumed(force=bool(request.force))
    return None


def parse_budget_raise(text: str) -> dict[str, Any]:
    """The budget raise `text` asks for, as the detail `request(..., "budget" | "resume", **detail)` takes:
    `{"add_tokens": int}`, `{"add_usd": float}`, `{"add_time_s": float}` or `{"add_turns": int}`.

    A bare number is tokens; `k`/`K` is thousands and a capital `M` millions of tokens, while a lower-case
    `m` is minutes. A leading `+` is allowed. Anything else raises BudgetAmountError naming the forms.
    """
    amount = text.strip().removeprefix("+").strip()
    if match := _TURNS.fullmatch(amount):
        detail: dict[str, Any] = {"add_turns": _number(match.group(1))}
    elif match := _USD.fullmatch(amount):
        detail = {"add_usd": _number(match.group(1) or match.group(2))}
    elif match := _TOKENS.fullmatch(amount):
        detail = {"add_tokens": _number(match.group(1)) * _TOKEN_SCALE[match.group(2)]}
    elif _TIME.fullmatch(amount):
        try:
            detail = {"add_time_s": parse_duration(amount)}
        except ContractError:
            detail = {}
    else:
        detail = {}
    [(key, value)] = detail.items() or [("", 0.0)]
    whole = key in ("add_tokens", "add_turns")
    if not detail or not math.isfinite(value) or value <= 0 or (whole and value != int(value)):
        raise BudgetAmountError(f"not a budget amount: {text!r}; accepted: {BUDGET_FORMS}",
                                "give one amount, e.g. 50k, $2, 30m or 10 turns")
    return {key: int(value) if whole else float(value)}


def raise_budget(store: Store, goal: GoalRecord, detail: dict[str, Any],
                 wait_s: float = CONTROL_WAIT_S) -> ControlResult:
    """Raise `goal`'s budget by `detail` (`parse_budget_raise`'s); a budget_limited goal is resumed as well,
    as `gk goal resume --add-tokens N` does. Blocks up to `wait_s` while a live runner applies it (call it
    off an event loop). A USD raise needs the goal's model to have a known price."""
    stored = GoalSettings.model_validate(goal.settings).model
    if detail.get("add_usd") and stored is not None and stored.price is None:
        raise ConfigError(f"no price is known for model {stored.model}, so a USD budget cannot be enforced",
                          f'add [model_pricing."{stored.model}"] input/cached_input/output to config.toml, '
                          "set the goal again, or raise another budget")
    status = store.get_goal_by_id(goal.goal_id).state.get("status")
    return request(store, goal, "resume" if status == "budget_limited" else "budget", wait_s, **detail)


def check_raise(detail: dict[str, Any], required: bool = False) -> None:
    """Refuse a raise that is negative, not finite or not whole where it must be (tokens, turns); with
    `required`, also one that raises nothing. Zero means "not raised"; every UI goes through here."""
    for key in RAISE_KEYS:
        value = detail.get(key)
        if value is None or value == 0:
            continue
        whole = key in ("add_tokens", "add_turns")
        if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
                or value < 0 or (whole and value != int(value))):
            raise raise_error(key, value)
    if required and not any(detail.get(key) for key in RAISE_KEYS):
        raise BudgetAmountError("no budget raise given", f"raise one of them, e.g. {BUDGET_FORMS}")


def raise_error(key: str, value: object) -> BudgetAmountError:
    """The one error for a raise that is not positive, naming the flag and a good amount."""
    flag = "--add-" + key.removeprefix("add_").removesuffix("_s")
    return BudgetAmountError(f"{flag} must be a positive amount, not {value!r}",
                             f"raise by a positive amount, e.g. {flag} {_EXAMPLE.get(key, '1')}")


_EXAMPLE = {"add_tokens": "50000", "add_usd": "2", "add_time_s": "30m", "add_turns": "10"}


def _number(text: str) -> float:
    return float(text.replace("_", "").replace(",", ""))


def _raise_of(detail: dict[str, Any]) -> BudgetRaised | None:
    raised = BudgetRaised(int(detail.get("add_tokens") or 0), float(detail.get("add_usd") or 0.0),
                          float(detail.get("add_time_s") or 0.0), int(detail.get("add_turns") or 0))
    return raised if raised != BudgetRaised() else None


def applied_requests(store: Store, goal: GoalRecord, after_seq: int = 0) -> set[int]:
    """Sequence numbers of control requests that have been applied."""
    records = store.events(goal.thread_id, after_seq=after_seq, goal_id=goal.goal_id, kinds=[ControlAppliedEvent])
    return {record.event.request_seq for record in records
            if isinstance(record.event, ControlAppliedEvent) and record.event.request_seq}


def pending_requests(store: Store, goal_id: str, thread_id: str,
                     after_seq: int = 0) -> list[tuple[int, ControlRequestEvent]]:
    """Control requests not yet applied, oldest first, each with its seq."""
    records = store.events(thread_id, after_seq=after_seq, goal_id=goal_id,
                           kinds=[ControlRequestEvent, ControlAppliedEvent])
    applied = {r.event.request_seq for r in records if isinstance(r.event, ControlAppliedEvent)}
    return [(r.seq, r.event) for r in records if isinstance(r.event, ControlRequestEvent) and r.seq not in applied]


def _status_now(store: Store, goal: GoalRecord) -> str | None:
    current = store.get_goal(goal.thread_id)
    if current is None or current.goal_id != goal.goal_id:
        return None
    return str(current.state.get("status"))
