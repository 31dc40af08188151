"""Store records turned into the API's response models, through views.py and report.py.

No logic of its own: a goal's numbers are views.summarize's, its trend the report's; this only reshapes.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from goalkeeper.core.lifecycle import REASONS, status_label
from goalkeeper.events import BaselineEvent, CheckpointEvent, Evidence, EvidenceEvent, payload_of
from goalkeeper.goals.report import metric_points
from goalkeeper.goals.views import GoalSummary, summarize
from goalkeeper.server.models import CheckpointOut, EventOut, EvidenceOut, EvidenceRunOut, GoalOut, ThreadOut

if TYPE_CHECKING:
    from goalkeeper.store import EventRecord, Goal, Store, ThreadRecord

_RESHAPED = frozenset({"last_checkpoint", "evidence"})
"""GoalSummary fields that GoalOut sends in its own shape (a line, evidence without its output)."""

SUMMARY_FIELDS = tuple(name for name in GoalOut.model_fields if name in GoalSummary.model_fields
                       and name not in _RESHAPED)
"""What a GoalOut takes from views.summarize as it stands; the rest is reshaped here."""


def thread_out(store: Store, thread: ThreadRecord) -> ThreadOut:
    """A thread with its current goal."""
    goal = store.get_goal(thread.thread_id)
    return ThreadOut(thread_id=thread.thread_id, workspace=thread.workspace, created_at=thread.created_at,
                     parent_thread_id=thread.parent_thread_id, goal=goal_out(store, goal) if goal is not None else None)


def goal_out(store: Store, goal: Goal) -> GoalOut:
    """The goal's summary (views.summarize) with the report's metric trend."""
    digest = store.digest(goal.goal_id)
    summary = summarize(store, goal, digest)
    baseline = metric_points([(0, [e.model_dump() for e in summary.baseline])])
    checkpoint = summary.last_checkpoint
    last = None
    if checkpoint is not None:
        last = f"turn {checkpoint.turn}: {checkpoint.note.get('done') or '(no note)'}"
    return GoalOut(**{name: getattr(summary, name) for name in SUMMARY_FIELDS},
                   reason_text=REASONS.get(summary.reason, summary.reason),
                   label=status_label(summary.status, summary.verified), last_checkpoint=last,
                   contract=goal.contract.model_dump(mode="json"),
                   evidence=[evidence_out(e) for e in summary.evidence],
                   metric_baseline=baseline[0] if baseline else None, metric_trend=digest.metric_trend,
                   run_command=_run_command(store, goal, summary), updated_at=goal.updated_at)


def _run_command(store: Store, goal: Goal, summary: GoalSummary) -> str | None:
    """How to run a pursuing goal that nothing runs (the server never does): what the TUI's status line says."""
    if summary.status != "pursuing" or summary.runner is not None:
        return None
    return f"gk run --cwd {shlex.quote(store.get_thread(goal.thread_id).workspace)}"


def evidence_out(item: Evidence) -> EvidenceOut:
    """One Evidence without its command and output tail."""
    return EvidenceOut(name=item.name, kind=item.kind, passed=item.passed, exit_code=item.exit_code,
                       metric=item.metric, target=item.target, duration_s=item.duration_s, error=item.error)


def event_out(record: EventRecord) -> EventOut:
    """An event as the API sends it: its stored payload, so clients read the keys they always did."""
    return EventOut(seq=record.seq, thread_id=record.thread_id, goal_id=record.goal_id, kind=record.event.kind,
                    actor=record.event.actor, ts=record.ts, payload=payload_of(record.event))


def checkpoint_out(record: EventRecord, checkpoint: CheckpointEvent) -> CheckpointOut:
    return CheckpointOut(seq=record.seq, goal_id=record.goal_id, turn=checkpoint.turn, kind=checkpoint.turn_kind,
                         note=checkpoint.note, files_touched=checkpoint.files_touched, commands=checkpoint.commands,
                         tokens=checkpoint.tokens, tree_hash=checkpoint.tree_hash)


def evidence_run_out(record: EventRecord, run: BaselineEvent | EvidenceEvent) -> EvidenceRunOut:
    if isinstance(run, BaselineEvent):
        return EvidenceRunOut(seq=record.seq, goal_id=record.goal_id, kind=run.kind, trigger=None, turn=0,
                              evidence=[evidence_out(e) for e in run.evidence])
    return EvidenceRunOut(seq=record.seq, goal_id=record.goal_id, kind=run.kind, trigger=run.trigger,
                          turn=run.turn, evidence=[evidence_out(e) for e in run.evidence], surface=run.surface)
