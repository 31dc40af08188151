"""`gk fork` and `/fork`: a new thread that carries on from another's current checkpoint.

The fork gets its own git worktree (beside $GOALKEEPER_HOME, like a batch goal's) on a new branch made at the
parent's goal branch head, its own thread (which names its parent) and, optionally, its own goal. Its goals
open with the parent's conversation so far, as the same hand-off a compaction writes. Nothing of the parent
changes: its thread, goal, branch, lease and budget stay as they were, so both can run at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from goalkeeper.context.handoff import fallback_summary, handoff_message
from goalkeeper.context.render import contract_block, evidence_lines
from goalkeeper.context.replay import replay
from goalkeeper.context.tokens import ESTIMATE_CHARS_PER_TOKEN, auto_compact_limit
from goalkeeper.errors import WorkspaceError
from goalkeeper.events import CompactedEvent, ForkedEvent, GoalBranchEvent
from goalkeeper.store import Goal, Store, ThreadRecord
from goalkeeper.workspace.git import branch_exists, commit_of, git, toplevel
from goalkeeper.workspace.worktrees import worktrees_root

HANDOFF_SHARE = 0.3
"""The part of the parent's compaction limit the hand-off may fill (as a compaction's does)."""


@dataclass(frozen=True)
class Fork:
    """What `fork` made: the new thread, its worktree, and the branch it starts on."""

    thread: ThreadRecord
    workspace: Path
    branch: str
    commit: str
    parent: ThreadRecord


def fork(store: Store, workspace: Path, thread_id: str | None = None) -> Fork:
    """Fork the workspace's current thread (or `thread_id`): a new worktree, branch and thread, the parent's
    conversation so far recorded in it as a hand-off. The caller may then set the fork's own goal in it."""
    if thread_id is None and store.current_thread(workspace) is None:
        raise WorkspaceError(f"no thread to fork in {workspace}", "set a goal first (gk goal ...), or pass --thread ID")
    parent = store.thread_for(workspace, thread_id)
    goal = store.get_goal(parent.thread_id)
    top = toplevel(Path(parent.workspace))
    commit = _checkpoint_of(store, top, goal)
    thread_dir = worktrees_root() / "forks"
    thread_dir.mkdir(parents=True, exist_ok=True)
    name = f"fork-{uuid.uuid4().hex[:12]}"
    branch, path = f"goalkeeper/{name}", thread_dir / name
    if branch_exists(top, branch) or path.exists():
        raise WorkspaceError(f"the branch {branch} or the folder {path} already exists", "fork again")
    git(top, "worktree", "add", "-q", "-b", branch, str(path), commit)
    child = store.create_thread(path, parent_thread_id=parent.thread_id)
    handoff = _handoff(store, goal, parent, branch, commit) if goal is not None else ""
    store.append_events(child.thread_id, [ForkedEvent(parent_thread_id=parent.thread_id,
                                                      parent_goal_id=goal.goal_id if goal else None,
                                                      branch=branch, commit=commit, handoff=handoff)])
    return Fork(child, path, branch, commit, parent)


def _checkpoint_of(store: Store, top: Path, goal: Goal | None) -> str:
    """The parent's current checkpoint: its goal branch's head, else (no goal, or not run yet) HEAD."""
    if goal is not None:
        made = store.events(goal.thread_id, goal_id=goal.goal_id, kinds=[GoalBranchEvent], limit=1)
        if made and isinstance(made[0].event, GoalBranchEvent) and branch_exists(top, made[0].event.name):
            return commit_of(top, f"refs/heads/{made[0].event.name}")
    return commit_of(top, "HEAD")


def _handoff(store: Store, goal: Goal, parent: ThreadRecord, branch: str, commit: str) -> str:
    """The parent goal's conversation so far as one message: its newest compaction summary (or the harness's own
    from its records), its contract, checkpoints, evidence, files and failed approaches."""
    records = store.events(goal.thread_id, goal_id=goal.goal_id)
    facts = replay(records)
    compactions = [r.event for r in records if isinstance(r.event, CompactedEvent)]
    summary = compactions[-1].summary if compactions else fallback_summary(
        facts.handoff, f"this thread was forked from thread {parent.thread_id}")
    limit = int(auto_compact_limit(goal.settings.model) * HANDOFF_SHARE * ESTIMATE_CHARS_PER_TOKEN)
    responses = sum(1 for r in records if r.event.kind == "model_response")
    text = handoff_message(summary, contract_block(goal.contract), facts.handoff, evidence_lines(facts.evidence),
                           responses, facts.turn.number, limit)
    return (f"This thread was forked from thread {parent.thread_id} (goal {goal.goal_id}, "
            f"{goal.state.status}) at commit {commit[:12]}, on the new branch {branch}. What follows is that "
            "thread's work so far, as a hand-off. It is context, not your goal: your goal is the contract above.\n\n"
            + text)


def forked_from(store: Store, thread_id: str) -> ForkedEvent | None:
    """The thread's fork record (its first event), if it is a fork."""
    if store.get_thread(thread_id).parent_thread_id is None:
        return None
    first = store.events(thread_id, limit=1)
    return first[0].event if first and isinstance(first[0].event, ForkedEvent) else None
