"""The HTTP API's request and response bodies, as pydantic models, so the OpenAPI spec is exact.

Shapes only; the values come from views.py and report.py (server/build.py turns records into these).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from goalkeeper.core.lifecycle import Status
from goalkeeper.core.state import BudgetRaise
from goalkeeper.events import EvidenceKind
from goalkeeper.goals.batch import BatchRow
from goalkeeper.goals.control import budget_raise
from goalkeeper.goals.views import ChildAgent, GoalFigures


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(_Out):
    """Every error response (401, 404, 409, 422, 503): what happened and, where known, how to fix it."""

    detail: str
    hint: str | None = None
    errors: list[dict[str, Any]] | None = None
    """For a request that failed validation: pydantic's error list (field location, message)."""


class ChecklistItemOut(_Out):
    """One item of the contract's checklist."""

    number: int
    item: str
    done: bool
    """A checkpoint's note listed it in `checklist_done`."""


class EvidenceOut(_Out):
    """One check's (or keep_green constraint's) newest result, as the harness ran it."""

    name: str
    kind: EvidenceKind
    passed: bool
    exit_code: int
    metric: float | None = None
    target: str | None = None
    duration_s: float
    error: str | None = None


# The figures are views.GoalFigures: `reason` is the typed reason code of the last status change
# (lifecycle.Reason); `verified` is false for a goal with no checks, whose completion rests on the model's audit.
class GoalOut(_Out, GoalFigures):
    """A goal as the dashboard's table and goal page show it (views.summarize plus the report's trend)."""

    status: Status
    reason_text: str
    """The reason in words."""
    label: str = ""
    """The status as people read it: `achieved (unverified)` for an achieved goal with no checks."""
    last_checkpoint: str | None
    """One line: `turn N: <what the model said it did>`; None before the first checkpoint."""
    runner: str | None
    """`host:pid` of the live runner holding the goal; None when nothing runs it (the server never does)."""
    run_command: str | None = None
    """While the goal is pursuing and nothing runs it: the command that runs it, `gk run --cwd <workspace>`."""
    contract: dict[str, Any]
    """The goal contract as JSON (goalkeeper.spec.contract.Contract)."""
    checklist: list[ChecklistItemOut]
    evidence: list[EvidenceOut]
    """The newest check run (the baseline until a later run)."""
    children: list[ChildAgent] = []
    """The child agents the goal's model started (`spawn_agent`), oldest first."""
    metric_baseline: dict[str, float | int] | None
    """The metrics at baseline: `{"turn": 0, NAME: value, ...}`."""
    metric_trend: list[dict[str, float | int]]
    """Each check run that read a metric: `{"turn": N, NAME: value, ...}`."""
    review_point: dict[str, Any] | None = None
    """While the goal waits at a review point: `why` (or the model's `note`), the `files` changed since the last
    one and the commit they count `since`."""
    updated_at: float


class ThreadOut(_Out):
    """A thread (one conversation in one workspace) and its current goal, if it has one."""

    thread_id: str
    workspace: str
    created_at: float
    parent_thread_id: str | None = None
    """The thread this one was forked from (`gk fork`), if any."""
    goal: GoalOut | None


class EventOut(_Out):
    """One store event. `seq` is store-wide and only grows: the cursor for paging and for SSE resume."""

    seq: int
    thread_id: str
    goal_id: str | None
    kind: str
    actor: str | None
    ts: float
    payload: dict[str, Any]


class EventPage(_Out):
    """A page of a thread's events, oldest first; pass `next_after` as `after` for the next page."""

    events: list[EventOut]
    next_after: int
    """The seq of the last event in this page (the `after` given when the page is empty)."""


class BatchCapsOut(_Out):
    """A batch's global caps (`gk batch --cap-tokens/--cap-usd/--cap-time`); null: no cap on that budget."""

    tokens: int | None
    usd: float | None
    time_s: float | None


class BatchTotalsOut(_Out):
    """A batch summed up: its goals, how many ended (neither waiting nor pursuing), each status's count,
    the tokens and dollars over every goal, and the batch's own running time (what the time cap reads)."""

    goals: int
    ended: int
    counts: dict[str, int]
    tokens: int
    usd: float
    elapsed_s: float


class BatchOut(_Out):
    """One batch (`gk batch`) as the batch list shows it."""

    batch_id: str
    repository: str
    created_at: float
    parallel: int
    caps: BatchCapsOut
    totals: BatchTotalsOut


# The row's fields are goals.batch.BatchRow's, the one read model of a batch; the thread links it to the goal page.
class BatchRowOut(_Out, BatchRow):
    """One goal of a batch: `status` is the goal's, or `waiting` before it starts and `crashed` when its runner
    raised (`error` says what); `running` is true while a live runner holds it."""

    thread_id: str | None
    """The goal's thread (`GET /threads/{id}`), once the goal has started."""


class BatchDetailOut(BatchOut):
    """A batch and one row per goal, in the order the goals were given."""

    rows: list[BatchRowOut]


class CheckpointOut(_Out):
    """One turn's checkpoint: the model's note, the files and commands, the tree hash."""

    seq: int
    goal_id: str | None
    turn: int
    kind: str
    """The turn's kind: continuation, audit_feedback, nudge, wrap_up or user_input."""
    note: dict[str, Any]
    """The model's `checkpoint` note: done, verified, remaining, next, assumptions, checklist_done."""
    files_touched: list[str]
    commands: list[str]
    tokens: int | None = None
    tree_hash: str | None = None


class EvidenceRunOut(_Out):
    """One run of the checks: the baseline or a later run, with what triggered it."""

    seq: int
    goal_id: str | None
    kind: Literal["baseline", "evidence"]
    trigger: str | None
    """What asked for the run (completion, text_only, ...); None for the baseline."""
    turn: int
    evidence: list[EvidenceOut]
    surface: dict[str, Any] | None = None
    """The verification surface's state at this run: unchanged, extended or modified."""


class DiffOut(_Out):
    """The goal branch's changes (the whole goal, or one turn's checkpoint)."""

    branch: str | None
    """The goal branch; None before the goal first ran (then `diff` is empty)."""
    base: str | None
    """The commit the diff starts from (the --allow-dirty snapshot when there is one)."""
    head: str | None
    """The goal branch's commit (uncommitted work in the workspace is included in `diff`)."""
    diff: str


class ControlOut(_Out):
    """What a pause, resume, clear or budget raise did."""

    status: Status | None
    """The goal's status afterwards; None once cleared."""
    applied: bool
    """True: applied now. False: queued for the live runner, which applies it at its next boundary."""
    applied_by: Literal["here", "runner", "queued"]
    """here: no runner held the goal, so the server applied it; runner: the live runner applied it while the
    request waited; queued: the runner has not reached a boundary yet."""


class SetGoalIn(BaseModel):
    """A goal to set: the flags of `gk goal`, or a whole goal.toml in `toml` (the flags are laid over it)."""

    model_config = ConfigDict(extra="forbid")

    objective: str | None = None
    """The objective; needed unless `toml` gives an outcome."""
    toml: str | None = None
    """A whole goal.toml; the other fields are laid over it as `gk goal --file` does."""
    checks: list[str] = []
    """Checks as `NAME=COMMAND` (or a bare command, named after its program)."""
    keep_green: list[str] = []
    protect: list[str] = []
    paths: list[str] = []
    budget_tokens: int | None = Field(None, gt=0)
    budget_usd: float | None = Field(None, gt=0)
    budget_time: str | None = None
    """A duration such as `2h`, `90m` or `1h30m`."""
    budget_turns: int | None = Field(None, gt=0)
    replace: bool = False
    """Replace the thread's existing goal (otherwise 409)."""
    allow_dirty: bool = False
    """Snapshot uncommitted changes onto the goal branch instead of refusing."""
    force: bool = False
    """Set it even if the contract lint finds errors."""
    unverified: bool = False
    """Allow a goal with no checks (otherwise 422): only the model's audit ends it, as `achieved (unverified)`."""


class BudgetIn(BaseModel):
    """How much to add to the goal's budget. A budget_limited goal is resumed as well."""

    model_config = ConfigDict(extra="forbid")

    add_tokens: int = Field(0, ge=0)
    add_usd: float = Field(0.0, ge=0)
    add_time_s: float = Field(0.0, ge=0)
    add_turns: int = Field(0, ge=0)

    def raise_by(self) -> BudgetRaise | None:
        """The raise asked for (None when every amount is zero), the value every face passes on."""
        return budget_raise(self.add_tokens or None, self.add_usd or None, self.add_time_s or None,
                            self.add_turns or None)


class ResumeIn(BudgetIn):
    """Resume options: `force` re-opens an achieved or unmet goal; the budget may be raised at once; `note` is the
    person's feedback, which the model reads when its next turn opens."""

    force: bool = False
    note: str | None = Field(None, max_length=20_000)
