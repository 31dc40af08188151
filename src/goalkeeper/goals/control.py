"""The person's control path: set a goal, pause, resume, clear, raise the budget.

Every change goes through `decide`, like the runner's own, which mints every event (setting and clearing
included). While a runner holds the goal's lease the request is queued in the store and the runner
applies it at its next boundary (run/inbox.py); otherwise it is applied here at
once. Either way a refusal raises ControlRejected. The faces reach this through goals/service.py.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from goalkeeper.core.outcomes import Decision, GoalCleared, GoalSet, Reject
from goalkeeper.core.state import BudgetRaise, ControlRequest, GoalState, request_event
from goalkeeper.errors import ConfigError, ContractError, GoalkeeperError
from goalkeeper.events import ControlAppliedEvent, Event
from goalkeeper.run.inbox import applied_marker
from goalkeeper.spec.contract import Contract, parse_duration
from goalkeeper.spec.settings import GoalSettings
from goalkeeper.store import Goal, Store, lease_is_live, new_id, start_state
from goalkeeper.workspace.git import keep_untracked, person_files, preflight

#: How long a control request waits for a live runner to apply it.
CONTROL_WAIT_S = 5.0

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
    action: str = ""
    before: str | None = None
    """The goal's status when the request was made."""
    note: str | None = None
    """Something the person should hear (a Temporal goal's workflow that could not be woken)."""

    @property
    def applied(self) -> str:
        """What was applied, for a face to say: the action, or `budget` for a resume of a pursuing goal with a
        raise (`decide` raises its budget and nothing else)."""
        return "budget" if self.action == "resume" and self.before == "pursuing" else self.action


def check_settable(workspace: Path, contract: Contract, allow_dirty: bool = False, unverified: bool = False,
                   goal_file: Sequence[str] = ()) -> dict[str, str]:
    """What every UI checks before setting a goal: checks (or `unverified` said out loud), a clean git repository
    (unless `allow_dirty`) and every check's program present. A ConfigError (or the preflight's error) says what
    to fix. The person's own untracked files do not make the tree dirty: the goal file (`goal_file`, relative to
    the top-level) and what is under `.goalkeeper/`; they are returned with their hashes, for
    GoalSettings.own_files."""
    from goalkeeper.verify.checks import missing_commands  # it loads the sandbox: only a new goal needs it

    if not contract.verified and not unverified:
        raise ConfigError("the goal has no checks, so nothing the harness runs can tell when it is done",
                          "add a check (--check NAME=COMMAND or [[checks]] in goal.toml), or pass --unverified to "
                          "let the model's own completion audit end it (labelled `achieved (unverified)`)")
    kept, seen = person_files(workspace, goal_file)
    keep_untracked(workspace, kept)
    preflight(workspace, allow_dirty, seen)  # the branch itself is made when the goal first runs
    missing = missing_commands(contract, workspace)
    if missing:
        name, word = missing[0]
        raise ConfigError(f"check `{name}` runs `{word}`, which is not a command here",
                          "fix the check's command (or install the tool) and set the goal again")
    return kept


def set_goal(store: Store, workspace: Path, contract: Contract, settings: GoalSettings,
             replace_existing: bool = False, thread_id: str | None = None) -> Goal:
    """Make `contract` the thread's goal (status pursuing). Replacing needs `replace_existing`."""
    thread = store.thread_for(workspace, thread_id, create=True)
    existing = store.get_goal(thread.thread_id)
    if existing is not None and not replace_existing:
        raise GoalExistsError(
            f"this workspace already has a goal ({existing.goal_id}, {existing.state.status})",
            "confirm the replacement, pass --replace, or `gk goal clear` first")
    from goalkeeper.core.decide import decide  # the transition table: a reader of the goal never needs it

    goal_id = new_id("goal")
    decision = decide(start_state(goal_id, contract, settings),
                      GoalSet(contract.outcome, contract.model_dump(mode="json")))
    record, _ = store.put_goal(thread.thread_id, contract, decision.state, settings, list(decision.events),
                               goal_id=goal_id)
    return record


def request(store: Store, goal: Goal, asked: ControlRequest, wait_s: float = CONTROL_WAIT_S) -> ControlResult:
    """Pause, resume, clear or raise the budget of `goal`, through its runner when one is live. A request
    either path refuses raises ControlRejected."""
    if asked.action == "budget" and asked.raise_by is None:
        raise BudgetAmountError("no budget raise given", f"raise one of them, e.g. {BUDGET_FORMS}")
    result = _request(store, goal, asked, wait_s)
    return replace(result, action=asked.action, before=goal.state.status)


def _request(store: Store, goal: Goal, asked: ControlRequest, wait_s: float) -> ControlResult:
    """Queue `asked` for a live runner and wait up to `wait_s` for its answer; with none, apply it here."""
    lease = store.lease(goal.goal_id)
    if lease is None or not lease_is_live(lease):
        return apply_here(store, goal, asked)
    [queued] = store.append_events(goal.thread_id, [request_event(asked)],
                                   goal_id=goal.goal_id)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if (result := _applied_by_runner(store, goal, queued.seq)) is not None:
            return result
        lease = store.lease(goal.goal_id)
        if lease is None or not lease_is_live(lease):
            # The runner ended before it saw the request: apply it here, exactly once.
            if (result := _applied_by_runner(store, goal, queued.seq)) is not None:
                return result
            return apply_here(store, goal, asked, request_seq=queued.seq)
        time.sleep(0.05)
    return ControlResult("queued", _status_now(store, goal))


def apply_here(store: Store, goal: Goal, asked: ControlRequest, request_seq: int | None = None) -> ControlResult:
    """Apply a control request in this process (no live runner holds the goal)."""
    from goalkeeper.core.decide import decide, outcome_of

    goal = store.get_goal_by_id(goal.goal_id)
    decision = decide(goal.state, outcome_of(asked))
    marker = [applied_marker(request_seq, decision, "user")] if request_seq else []
    if isinstance(decision.action, Reject):
        if marker:
            store.append_events(goal.thread_id, marker, goal_id=goal.goal_id)
        raise ControlRejected(decision.action.message)
    if asked.action == "clear":
        store.delete_goal(goal.goal_id, [*marker, *decision.events])
        return ControlResult("here", None)
    commit_decision(store, goal, decision, marker)
    return ControlResult("here", decision.state.status)


def commit_decision(store: Store, goal: Goal, decision: Decision, extra: Sequence[Event] | None = None) -> int:
    """Commit `decision`'s events (then `extra`) and its state, guarded by the goal's version; the new version."""
    version, _ = store.commit(goal.goal_id, [*decision.events, *(extra or [])],
                              state=decision.state, expected_version=goal.version)
    return version


def clear_events(why: str | None = None, actor: Literal["user", "harness"] = "user") -> list[Event]:
    """The events that clear a goal (`decide` mints them), for `Store.delete_goal`."""
    from goalkeeper.core.decide import decide

    return list(decide(GoalState(goal_id=""), GoalCleared(actor, why)).events)


def parse_budget_raise(text: str) -> BudgetRaise:
    """The budget raise `text` asks for: tokens, USD, seconds or turns.

    A bare number is tokens; `k`/`K` is thousands and a capital `M` millions of tokens, while a lower-case
    `m` is minutes. A leading `+` is allowed. Anything else raises BudgetAmountError naming the forms.
    """
    amount = text.strip().removeprefix("+").strip()
    if match := _TURNS.fullmatch(amount):
        detail: dict[str, float] = {"add_turns": _number(match.group(1))}
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
    raised = budget_raise(**{key: value})
    assert raised is not None  # the amount is positive: checked above
    return raised


def budget_raise(add_tokens: float | None = None, add_usd: float | None = None, add_time_s: float | None = None,
                 add_turns: float | None = None) -> BudgetRaise | None:
    """The raise these amounts ask for (None when none is given); one that is given but not positive, not
    finite or not whole where it must be (tokens, turns) is refused, naming its flag. Every face parses here."""
    given = {"add_tokens": add_tokens, "add_usd": add_usd, "add_time_s": add_time_s, "add_turns": add_turns}
    for key, value in given.items():
        whole = key in ("add_tokens", "add_turns")
        if value is not None and (isinstance(value, bool) or not math.isfinite(value) or not value > 0
                                  or (whole and value != int(value))):
            raise raise_error(key, value)
    if not any(given.values()):
        return None
    return BudgetRaise(int(add_tokens or 0), float(add_usd or 0.0), float(add_time_s or 0.0), int(add_turns or 0))


def raise_error(key: str, value: object) -> BudgetAmountError:
    """The one error for a raise that is not positive, naming the flag and a good amount."""
    flag = "--add-" + key.removeprefix("add_").removesuffix("_s")
    return BudgetAmountError(f"{flag} must be a positive amount, not {value!r}",
                             f"raise by a positive amount, e.g. {flag} {_EXAMPLE.get(key, '1')}")


_EXAMPLE = {"add_tokens": "50000", "add_usd": "2", "add_time_s": "30m", "add_turns": "10"}


def _number(text: str) -> float:
    return float(text.replace("_", "").replace(",", ""))


def _applied_by_runner(store: Store, goal: Goal, request_seq: int) -> ControlResult | None:
    """How a live runner answered the queued request `request_seq`; None while it has not."""
    for record in store.events(goal.thread_id, goal_id=goal.goal_id, kinds=[ControlAppliedEvent]):
        if isinstance(applied := record.event, ControlAppliedEvent) and applied.request_seq == request_seq:
            if applied.rejected:
                raise ControlRejected(applied.rejected)
            return ControlResult("runner", _status_now(store, goal))
    return None


def _status_now(store: Store, goal: Goal) -> str | None:
    current = store.get_goal(goal.thread_id)
    if current is None or current.goal_id != goal.goal_id:
        return None
    return current.state.status
