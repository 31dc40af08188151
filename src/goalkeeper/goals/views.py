"""Read-only views over the store: a goal's summary, its checkpoints and its evidence.

Readers never write; the status line, `gk status`, the report and (later) the dashboard all use these.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from goalkeeper.core.digest import GoalDigest
from goalkeeper.core.figures import format_duration
from goalkeeper.core.lifecycle import status_label
from goalkeeper.core.state import GoalState
from goalkeeper.events import (
    BaselineEvent,
    CheckpointEvent,
    Event,
    Evidence,
    EvidenceEvent,
    SubagentEndedEvent,
    SubagentStartedEvent,
    WaitStartedEvent,
    payload_of,
)
from goalkeeper.spec.contract import Contract
from goalkeeper.store import EventRecord, Goal, Store, lease_is_live
from goalkeeper.workspace.measured import best_and_green, measured_checkpoints


class Waiting(BaseModel):
    """The wait a pursuing goal is in (the `wait` tool): no model request is made until it ends."""

    model_config = ConfigDict(frozen=True)

    until: str
    """The command probed; the wait is over when it exits 0."""
    interval_s: float
    deadline: float
    """Epoch seconds: the wait ends by then at the latest."""


class GoalFigures(BaseModel):
    """A goal's standing in figures: its status, its checks, and what it has spent of each budget. `gk goal`,
    `gk status` (GoalSummary) and the server's GoalOut all carry them, so they are declared once, here."""

    # Built on first use, as the event models are: `gk log` and `gk threads` never make one, and building it
    # builds the checkpoint and evidence models it holds.
    model_config = ConfigDict(defer_build=True)

    goal_id: str
    thread_id: str
    workspace: str
    objective: str
    status: str
    reason: str
    verified: bool
    checks_passing: int
    checks_total: int
    tokens_used: int
    tokens_budget: int | None
    usd_used: float
    usd_budget: float | None
    elapsed_s: float
    time_budget_s: float | None
    turns: int
    turns_budget: int | None
    waiting: Waiting | None = None
    """The wait the goal is in while it is pursuing (shown as `waiting`); None when it is not waiting."""


class ChildAgent(BaseModel):
    """One child agent a goal's model started (`spawn_agent`), as `gk status`, the TUI and the dashboard list it."""

    model_config = ConfigDict(frozen=True)

    thread_id: str
    depth: int
    task: str
    paths: list[str]
    status: str
    """running, done, stopped or failed; `unfinished` when the run that started it ended first (a crash)."""
    summary: str = ""
    files_changed: int = 0
    charged_tokens: int = 0
    """Tokens charged to the goal for its requests (already inside the goal's own totals)."""

    def line(self) -> str:
        """One line: `thr_1a2b… done · 2 files · 1,234 tok · docs/: fix the API docs`."""
        paths = ", ".join(path.lstrip("/") for path in self.paths)
        return (f"{self.thread_id} {self.status} · {self.files_changed} file(s) · {self.charged_tokens:,} tok · "
                f"{paths}: {self.task.strip().splitlines()[0][:60] if self.task.strip() else ''}")


class GoalSummary(GoalFigures):
    """Everything `gk goal` and `gk status` show."""

    model_config = ConfigDict(frozen=True)

    last_checkpoint: CheckpointEvent | None
    runner: str | None
    """`host:pid` of the live runner, if one holds the goal."""
    evidence: list[Evidence] = Field(default_factory=list)
    baseline: list[Evidence] = Field(default_factory=list)
    keep_green_dropped: list[str] = Field(default_factory=list)
    pinned: list[str] = Field(default_factory=list)
    """Files of the verification surface pinned at baseline."""
    surface: dict[str, Any] | None = None
    """The surface's state at the newest check run: unchanged, extended or modified."""
    observed_surface: dict[str, Any] | None = None
    """The verification surface recorded at baseline (verify.observed.surface_summary): its size, its
    notable paths, and whether it was observed or only inferred."""
    checklist: list[dict[str, Any]] = Field(default_factory=list)
    """The contract's checklist: each item's number, text and whether a checkpoint marked it done."""
    review_point: dict[str, Any] | None = None
    """While the goal waits at a review point: why, the files changed since the last one, the commit they
    count from, and the model's note when the model asked for the review."""
    instructions: list[dict[str, Any]] = Field(default_factory=list)
    """The project instruction files (AGENTS.md, CLAUDE.md) found for the goal: path, size, loaded, cut, skipped."""
    children: list[ChildAgent] = Field(default_factory=list)
    """The child agents its model started, oldest first."""

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = {name: getattr(self, name) for name in type(self).model_fields}
        data["evidence"] = [e.model_dump() for e in self.evidence]
        data["baseline"] = [e.model_dump() for e in self.baseline]
        data["last_checkpoint"] = payload_of(self.last_checkpoint) if self.last_checkpoint else None
        data["waiting"] = self.waiting.model_dump() if self.waiting else None
        data["children"] = [child.model_dump() for child in self.children]
        return data

    def status_line(self) -> str:
        """One line, e.g. `pursuing · 3/4 checks · 40,000/50,000 tok · $0.42 · 12m · turn 7` (`waiting` for
        pursuing while the goal waits)."""
        tokens = f"{self.tokens_used:,}" + (f"/{self.tokens_budget:,}" if self.tokens_budget else "") + " tok"
        checks = f"{self.checks_passing}/{self.checks_total} checks" if self.verified else "unverified"
        label = status_label(self.status, self.verified)
        status = "waiting" if self.waiting else label if self.status == "pursuing" else f"{label} ({self.reason})"
        return " · ".join([status, checks, tokens, f"${self.usd_used:.2f}", format_duration(self.elapsed_s),
                           f"turn {self.turns}"])


def goal_events(store: Store, goal: Goal, kinds: list[type[Event]] | None = None) -> list[EventRecord]:
    """A goal's events in order."""
    return store.events(goal.thread_id, goal_id=goal.goal_id, kinds=kinds)


def goal_event_pages(store: Store, goal: Goal) -> Iterator[list[EventRecord]]:
    """A goal's events in order, a page at a time (`gk log` prints each page as it comes)."""
    return store.event_pages(goal.thread_id, goal_id=goal.goal_id)


def checklist(contract: Contract, digest: GoalDigest) -> list[dict[str, Any]]:
    """Each checklist item with its number and whether a checkpoint marked it done (out-of-range marks ignored)."""
    return [{"number": number, "item": item, "done": number in digest.checklist_done}
            for number, item in enumerate(contract.checklist, 1)]


def rollback_turns(store: Store, goal: Goal) -> tuple[int | None, int | None]:
    """The best measured checkpoint's turn and the last green one's, for `gk rollback` (0: the goal's base).

    A check run counts for the checkpoint whose tree it measured, so "best" always names a commit that exists.
    """
    contract = goal.contract
    metric = next((c.metric for c in contract.checks if c.metric is not None), None)
    measured = measured_checkpoints([record.row() for record in goal_events(
        store, goal, [BaselineEvent, EvidenceEvent, CheckpointEvent])])
    return best_and_green(measured, metric.lower_is_better if metric else True)


def summarize(store: Store, goal: Goal, digest: GoalDigest | None = None) -> GoalSummary:
    """The summary of one goal, read from the store: its row, its digest row (unless given) and its lease."""
    contract = goal.contract
    state: GoalState = goal.state
    facts = digest if digest is not None else store.digest(goal.goal_id)
    baseline = facts.baseline
    lease = store.lease(goal.goal_id)
    runner = f"{lease.host}:{lease.pid}" if lease and lease_is_live(lease) else None
    checks = [e for e in facts.evidence if e.is_check]
    return GoalSummary(
        goal_id=goal.goal_id, thread_id=goal.thread_id, workspace=store.get_thread(goal.thread_id).workspace,
        objective=contract.outcome, status=state.status, reason=state.reason.value, verified=contract.verified,
        checks_passing=sum(e.passed for e in checks), checks_total=len(contract.checks),
        tokens_used=state.spent.tokens, tokens_budget=state.limits.tokens, usd_used=state.spent.usd,
        usd_budget=state.limits.usd, elapsed_s=state.spent.time_s, time_budget_s=state.limits.time_s,
        turns=state.spent.turns, turns_budget=state.limits.turns, last_checkpoint=facts.last_checkpoint,
        runner=runner, evidence=facts.evidence, baseline=list(baseline.evidence) if baseline else [],
        keep_green_dropped=list(baseline.keep_green_dropped) if baseline else [], pinned=facts.pinned,
        surface=facts.run_surface, observed_surface=facts.observed_surface, checklist=checklist(contract, facts),
        review_point=facts.review_point if state.status == "paused" and state.reason.value.startswith("review_")
        else None,
        instructions=facts.instructions,
        waiting=_waiting(facts.waiting) if state.status == "pursuing" else None,
        # A goal whose settings allow no children has none: its summary asks the store for nothing more.
        children=child_agents(store, goal, lease.acquired_at if lease and runner else None)
        if goal.settings.run.agents.max_threads > 0 else [],
    )


def _waiting(started: WaitStartedEvent | None) -> Waiting | None:
    return None if started is None else Waiting(until=started.until, interval_s=started.interval_s,
                                                deadline=started.deadline)


def child_agents(store: Store, goal: Goal, run_since: float | None) -> list[ChildAgent]:
    """The goal's child agents from its `subagent_started` and `subagent_ended` events. One with no end is
    running when the live runner (holding the goal since `run_since`) started it, else unfinished: the run that
    started it ended first."""
    children: dict[str, ChildAgent] = {}
    for record in goal_events(store, goal, [SubagentStartedEvent, SubagentEndedEvent]):
        match record.event:
            case SubagentStartedEvent() as started:
                running = run_since is not None and record.ts >= run_since
                children[started.child_thread_id] = ChildAgent(
                    thread_id=started.child_thread_id, depth=started.depth, task=started.task, paths=started.paths,
                    status="running" if running else "unfinished")
            case SubagentEndedEvent() as ended if ended.child_thread_id in children:
                children[ended.child_thread_id] = children[ended.child_thread_id].model_copy(update={
                    "status": ended.status, "summary": ended.summary, "files_changed": len(ended.files_changed),
                    "charged_tokens": ended.charged_tokens})
    return list(children.values())
