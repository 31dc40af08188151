"""The goal's git side as the runner sees it: open the goal branch, commit a checkpoint per turn, recover.

It turns git results into events (with the notices the model must hear); the runner records them.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from goalkeeper.events import GoalBranchEvent, RecoveryCheckpointEvent
from goalkeeper.store import EventRecord
from goalkeeper.workspace.checkpoints import MAX_FILE_BYTES, CheckpointResult, Violation, checkpoint, resume
from goalkeeper.workspace.git import GoalBranch, git, probe, start_goal, toplevel


def branch_of(records: list[EventRecord]) -> GoalBranch | None:
    """The goal branch recorded in the store, if the goal has started."""
    for record in records:
        if isinstance(record.event, GoalBranchEvent):
            return GoalBranch(record.event.name, record.event.base_commit, record.event.snapshot_commit)
    return None


def open_branch(workspace: Path, goal_id: str, outcome: str, branch: GoalBranch | None, allow_dirty: bool,
                interrupted_turn: int | None, protect: list[str], paths: list[str],
                max_file_bytes: int = MAX_FILE_BYTES) -> GoalBranchEvent | RecoveryCheckpointEvent | None:
    """First run: preflight and create the goal branch. Later runs: check it out and recover a crash's edits."""
    if branch is None:
        created = start_goal(workspace, goal_id, outcome, allow_dirty)  # its preflight refuses what cannot start
        return GoalBranchEvent(**asdict(created), notice=None)
    recovered = resume(workspace, branch, interrupted_turn, goal_id=goal_id, protect=protect, paths=paths,
                       max_file_bytes=max_file_bytes)
    if recovered.recovered_commit is None:
        return None
    notice = (f"The harness restarted after turn {interrupted_turn} was interrupted. Changes it left were "
              f"committed as a recovery checkpoint: {', '.join(recovered.files) or '(none)'}. Re-inspect the "
              "workspace before continuing." + violations_notice(recovered.violations))
    return RecoveryCheckpointEvent(commit=recovered.recovered_commit, files=recovered.files, turn=interrupted_turn,
                                   violations=[asdict(v) for v in recovered.violations], notice=notice)


def leave_goal_branch(workspace: Path, branch: GoalBranch) -> None:
    """Undo `open_branch` for a goal refused before its first turn: HEAD goes back to the branch (or the
    detached commit) the goal was set from, the goal branch is deleted, and the working tree is left as it is
    (an --allow-dirty snapshot's changes are uncommitted changes again). Nothing of the model's is lost: the
    model never ran."""
    top = toplevel(workspace)
    previous = probe(top, "rev-parse", "--symbolic-full-name", "@{-1}").stdout.strip()
    if previous.startswith("refs/heads/") and previous != f"refs/heads/{branch.name}":
        git(top, "symbolic-ref", "-m", "goalkeeper: the goal was refused", "HEAD", previous)
    else:
        git(top, "update-ref", "--no-deref", "-m", "goalkeeper: the goal was refused", "HEAD", branch.base_commit)
    git(top, "reset", "-q", "--mixed")  # index := that commit's tree; files untouched
    git(top, "branch", "-q", "-D", branch.name)


def commit_turn(workspace: Path, branch: GoalBranch, goal_id: str, turn: int, passing: int | None, total: int,
                message: str, protect: list[str], paths: list[str],
                max_file_bytes: int = MAX_FILE_BYTES) -> dict[str, Any]:
    """The turn's checkpoint commit (reverting boundary violations first), as fields of its checkpoint event.

    What the model must hear besides the violations (a file too large to commit, HEAD found off the goal
    branch) goes in `notice`.
    """
    result = checkpoint(workspace, branch, goal_id, turn, passing, total, message, protect, paths,
                        max_file_bytes)
    committed: dict[str, Any] = {"commit": result.commit, "files_committed": result.files,
                               "violations": [asdict(v) for v in result.violations]}
    notice = checkpoint_notice(branch, result, max_file_bytes)
    if result.oversized:
        committed["oversized"] = result.oversized
    if result.left_branch is not None:
        committed["left_branch"] = result.left_branch
    if notice:
        committed["notice"] = notice
    return committed


def checkpoint_notice(branch: GoalBranch, result: CheckpointResult, max_file_bytes: int) -> str:
    """What the model is told about files left uncommitted and about a branch switch that was undone."""
    parts = []
    if result.oversized:
        limit = f"{max_file_bytes / (1024 * 1024):g} MB"
        parts.append(f"These files are larger than {limit} and were not committed; they stay on disk, "
                     f"uncommitted: {', '.join(result.oversized)}. Make them smaller or remove them if the goal "
                     "does not need them.")
    if result.left_branch is not None:
        parts.append(f"HEAD was on {result.left_branch}, not on the goal branch {branch.name}: the harness put it "
                     "back and committed the working tree there. Branches other than the goal's are not yours to "
                     "use; do not switch branches.")
    return " ".join(parts)


def violations_notice(violations: list[Violation]) -> str:
    """What the model is told about reverted changes."""
    if not violations:
        return ""
    lines = "; ".join(v.describe() for v in violations)
    return f" These changes broke the goal's boundaries and were reverted: {lines}. Do not make them again."
