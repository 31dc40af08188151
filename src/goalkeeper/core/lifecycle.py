"""Goal statuses, who may move a goal between them, and the typed reason for every move.

Pure data and one check; no I/O. DESIGN §2 is the source of this table.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

Status = Literal["pursuing", "paused", "achieved", "unmet", "budget_limited"]
Actor = Literal["user", "model", "harness"]
TurnKind = Literal["continuation", "audit_feedback", "nudge", "wrap_up", "user_input"]

STATUSES: tuple[Status, ...] = ("pursuing", "paused", "achieved", "unmet", "budget_limited")
#: Statuses only an explicit user resume (with --force for these two) can leave.
TERMINAL: frozenset[Status] = frozenset({"achieved", "unmet"})


class Reason(StrEnum):
    """Why a goal's status changed. Every status change carries exactly one."""

    GOAL_SET = "goal_set"
    USER_PAUSE = "user_pause"
    USER_RESUME = "user_resume"
    USER_REOPEN = "user_reopen"
    INTERRUPTED = "interrupted"
    STALLED = "stalled"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    PROVIDER_ERROR = "provider_error"
    CONTEXT_TOO_LONG = "context_too_long"
    CHECKS_PASSED = "checks_passed"
    AUDIT_ACCEPTED = "audit_accepted"
    BLOCKED = "blocked"
    STUCK = "stuck"
    MAX_ATTEMPTS = "max_attempts"
    BUDGET_TOKENS = "budget_tokens"
    BUDGET_USD = "budget_usd"
    BUDGET_TIME = "budget_time"
    BUDGET_TURNS = "budget_turns"
    REVIEW_POINT = "review_point"
    REVIEW_REQUESTED = "review_requested"


BUDGET_REASONS = frozenset({Reason.BUDGET_TOKENS, Reason.BUDGET_USD, Reason.BUDGET_TIME, Reason.BUDGET_TURNS})

REASONS = {
    "goal_set": "the goal was set and has not stopped yet",
    "user_pause": "a person paused it",
    "user_resume": "a person resumed it",
    "user_reopen": "a person re-opened it",
    "interrupted": "the runner was interrupted (Ctrl-C or SIGTERM)",
    "stalled": "two text-only turns in a row, and the checks did not pass",
    "provider_unavailable": "the model provider stayed unavailable after retries",
    "provider_error": "the model provider refused the request",
    "context_too_long": "the conversation no longer fit the model's context",
    "checks_passed": "the model requested completion and every check passed and every constraint held",
    "audit_accepted": "no checks: the model's completion audit was accepted (unverified)",
    "blocked": "the model declared itself blocked and reported why",
    "stuck": "no progress, still none after a nudge",
    "max_attempts": "completion was refused more times than max_attempts allows",
    "budget_tokens": "the token budget was used up",
    "budget_usd": "the USD budget was used up",
    "budget_time": "the time budget was used up",
    "budget_turns": "the turn budget was used up",
    "review_point": "a review point of the contract was reached ([review])",
    "review_requested": "the model paused the goal for a review, as the contract allows",
}
"""Each reason code in words, for the report's status line and the notifications."""

#: (from, to) -> the actors allowed to make that move.
TRANSITIONS: dict[tuple[Status, Status], frozenset[Actor]] = {
    ("pursuing", "paused"): frozenset({"user", "harness"}),
    ("paused", "pursuing"): frozenset({"user"}),
    ("pursuing", "achieved"): frozenset({"harness"}),
    ("pursuing", "unmet"): frozenset({"harness"}),
    ("pursuing", "budget_limited"): frozenset({"harness"}),
    ("budget_limited", "pursuing"): frozenset({"user"}),
    ("unmet", "pursuing"): frozenset({"user"}),
    ("achieved", "pursuing"): frozenset({"user"}),
}


UNVERIFIED_ACHIEVED = "achieved (unverified)"
"""How an achieved goal with no checks is labelled everywhere: only the model's audit ended it."""


def status_label(status: str, verified: bool) -> str:
    """The status as people read it: `achieved (unverified)` for a goal that no check could prove."""
    return UNVERIFIED_ACHIEVED if status == "achieved" and not verified else status


def is_allowed(source: Status, target: Status, actor: Actor) -> bool:
    """True when `actor` may move a goal from `source` to `target`."""
    return actor in TRANSITIONS.get((source, target), frozenset())


def exit_code(status: Status) -> int:
    """The process exit code for a run that ended in `status` (DESIGN §7)."""
    return {"achieved": 0, "unmet": 1, "budget_limited": 2, "paused": 3}.get(status, 3)
