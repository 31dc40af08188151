"""Checkpoint commits on the goal branch: commit a turn, enforce the boundaries, diff, roll back, recover.

Every write lands on the goal branch as a new commit: history is never rewritten, nothing is pushed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from goalkeeper.errors import WorkspaceError
from goalkeeper.sandbox.globs import first_path_match
from goalkeeper.workspace.git import (
    Change,
    GoalBranch,
    branch_exists,
    changes,
    commit_all,
    current_branch,
    git,
    list_paths,
    recover_stale_locks,
    status,
    toplevel,
)
from goalkeeper.workspace.tree import tree_hash

ViolationRule = Literal["protect", "paths"]
RollbackTarget = Literal["best", "last-green"] | int
UNMEASURED = "unmeasured"
"""The Checks trailer of a checkpoint whose tree the harness has not run the checks on (yet)."""
RECOVERY_SUBJECT = "goalkeeper: recovery checkpoint after an interrupted turn"
SUBJECT_CHARS = 72
GIT_DIR_GLOB = ".git/"
"""Reported as the protect glob when a change reaches into a `.git` directory (never allowed)."""
MAX_FILE_BYTES = 50 * 1024 * 1024
"""A changed file larger than this is not committed by a checkpoint (`[boundaries] max_file_mb`)."""


@dataclass(frozen=True)
class Violation:
    """A changed path the goal's boundaries forbid; it has been reverted by the time anyone sees this."""

    path: str
    """Relative to the repository top-level."""
    rule: ViolationRule
    glob: str
    """For `protect`: the glob it matched. For `paths`: the allowed globs it matched none of, comma-separated."""

    def describe(self) -> str:
        """One sentence for the model and the report."""
        if self.rule == "protect":
            return f"{self.path} is protected (`{self.glob}`): the change was reverted"
        return f"{self.path} is outside the allowed paths ({self.glob}): the change was reverted"


@dataclass(frozen=True)
class CheckpointResult:
    """What a checkpoint committed and what it reverted."""

    commit: str | None
    """The checkpoint commit, or None when the turn left nothing to commit."""
    files: list[str]
    violations: list[Violation]
    oversized: list[str] = field(default_factory=list)
    """Changed files over the size limit: left on disk, uncommitted."""
    left_branch: str | None = None
    """Where HEAD was when the checkpoint found it off the goal branch (`main`, `a detached HEAD`), or None."""


@dataclass(frozen=True)
class ResumeResult:
    """What resuming found in the working tree."""

    recovered_commit: str | None
    """The recovery checkpoint holding an interrupted turn's changes (tell the model), or None."""
    files: list[str]
    violations: list[Violation] = field(default_factory=list)


def checkpoint(workspace: Path, branch: GoalBranch, goal_id: str, turn: int, checks_passing: int | None,
               checks_total: int, message: str, protect: Sequence[str], paths: Sequence[str],
               max_file_bytes: int = MAX_FILE_BYTES) -> CheckpointResult:
    """Revert changes the boundaries forbid, then commit the rest as turn `turn`'s checkpoint.

    The sandbox is the first line of defence; this is the second, so a violation that got past it (a tool
    bug, a path the sandbox cannot express) never reaches a commit. A checkpoint commits only on the goal
    branch: HEAD found elsewhere (a branch switch under danger-full-access) is put back first. Files over
    `max_file_bytes` stay on disk, uncommitted. `checks_passing` is the result the harness measured on exactly
    this tree, or None when it has not measured it (the trailer then says `unmeasured`, never an older result).
    """
    top = toplevel(workspace)
    recover_stale_locks(top, branch.name)
    # One `git status` serves the branch check, the boundaries, the size limit and the commit; it is taken
    # again only after the harness itself changed something (HEAD put back, a violation reverted).
    found = status(top)
    left_branch = _restore_goal_branch(top, branch, found.branch)
    if left_branch is not None:
        found = status(top)
    violations = _enforce(top, protect, paths, found.changes)
    if violations:
        found = status(top)
    first_line = (message.strip().splitlines() or ["checkpoint"])[0].strip()[:SUBJECT_CHARS]
    subject = f"goal {goal_id} turn {turn}: {first_line}"
    oversized = _oversized(top, found.changes, max_file_bytes)
    checks = UNMEASURED if checks_passing is None else f"{checks_passing}/{checks_total}"
    commit, files = _commit_changes(top, subject, _trailers(goal_id, turn, checks), oversized, found.changes)
    return CheckpointResult(commit=commit, files=files, violations=violations, oversized=oversized,
                            left_branch=left_branch)


def oversized_changes(top: Path, max_file_bytes: int = MAX_FILE_BYTES) -> list[str]:
    """Changed paths whose file is larger than `max_file_bytes` (links and nested repositories are not files)."""
    return _oversized(top, changes(top), max_file_bytes)


def _oversized(top: Path, listed: Sequence[Change], max_file_bytes: int) -> list[str]:
    found = []
    for change in listed:
        target = top / change.path
        with contextlib.suppress(OSError):
            if not target.is_symlink() and target.is_file() and target.stat().st_size > max_file_bytes:
                found.append(change.path)
    return found


def checkpoint_turns(workspace: Path, branch: GoalBranch) -> dict[int, str]:
    """Turn number → its checkpoint commit on the goal branch (the newest one when a turn has two)."""
    top = toplevel(workspace)
    log_format = "%x1e%H%x00%(trailers:key=Turn,valueonly)"
    out = git(top, "log", f"--format={log_format}", f"{branch.base_commit}..refs/heads/{branch.name}")
    turns: dict[int, str] = {}
    for record in out.split("\x1e"):
        commit, _, value = record.partition("\0")
        turn = value.strip().splitlines()[0].strip() if value.strip() else ""
        if turn.isdigit():
            turns.setdefault(int(turn), commit.strip())  # git log lists the newest first
    return turns


def diff(workspace: Path, branch: GoalBranch, turn: int | None = None) -> str:
    """The goal's whole diff, uncommitted and untracked work included, or one turn's checkpoint diff.

    The whole diff starts after the --allow-dirty snapshot: those changes were the user's, not the goal's.
    """
    top = toplevel(workspace)
    if turn is not None:
        commit = _checkpoint_commit(top, branch, turn)
        return git(top, "diff", "--no-color", "--no-ext-diff", f"{commit}^", commit, errors="replace")
    start = branch.snapshot_commit or branch.base_commit
    end = f"refs/heads/{branch.name}"
    if current_branch(top) == branch.name:
        working_tree = tree_hash(top)
        if working_tree is None:
            raise WorkspaceError(f"could not read the working tree of {top}", hint="run `git status` to see why")
        end = working_tree
    return git(top, "diff", "--no-color", "--no-ext-diff", start, end, errors="replace")


def rollback(workspace: Path, branch: GoalBranch, to: RollbackTarget, best_turn: int | None,
             last_green_turn: int | None) -> str:
    """Restore the tree of a turn's checkpoint as a new commit on the goal branch; returns that commit.

    History is kept: the later checkpoints stay reachable, so a rollback can itself be rolled back.
    When the tree already equals that checkpoint's, nothing is committed and HEAD is returned.
    """
    top = _on_goal_branch(workspace, branch)
    turn = _rollback_turn(to, best_turn, last_green_turn)
    # turn 0 is the goal's starting point: the best a metric goal measured may be its baseline
    commit = (branch.snapshot_commit or branch.base_commit) if turn == 0 else _checkpoint_commit(top, branch, turn)
    oversized = oversized_changes(top)
    pending = [change.path for change in changes(top) if change.path not in oversized]
    if pending:
        raise WorkspaceError(f"the goal branch {branch.name} has uncommitted changes a rollback would lose:\n"
                             f"{list_paths(pending)}", hint="checkpoint or discard them, then roll back")
    # one-tree read-tree is a checkout of that tree: files added after it are removed from index and disk
    git(top, "read-tree", "--reset", "-u", commit)
    goal_id = git(top, "log", "-1", "--format=%(trailers:key=Goal-Id,valueonly)", commit).strip()
    trailers = [("Goal-Id", goal_id)] if goal_id else []
    subject = f"goalkeeper: roll back to turn {turn}"
    rolled_back = commit_all(top, subject, [*trailers, ("Rolled-Back-To", str(turn))], exclude=oversized)
    return rolled_back or git(top, "rev-parse", "HEAD").strip()


def resume(workspace: Path, branch: GoalBranch, interrupted_turn: int | None, *, goal_id: str,
           protect: Sequence[str] = (), paths: Sequence[str] = (),
           max_file_bytes: int = MAX_FILE_BYTES) -> ResumeResult:
    """Check out the goal branch and account for whatever the working tree holds.

    `interrupted_turn` is the turn the store says was open when the process died: its leftover changes
    are the goal's own, so they become a recovery checkpoint (boundaries enforced). With no open turn,
    uncommitted changes are someone else's, and resuming over them is refused.
    """
    top = _switch_to_goal_branch(workspace, branch)
    oversized = oversized_changes(top, max_file_bytes)  # the goal's own, left uncommitted by its checkpoints
    pending = [change.path for change in changes(top) if change.path not in oversized]
    if not pending:
        return ResumeResult(recovered_commit=None, files=[])
    if interrupted_turn is None:
        raise WorkspaceError(f"the goal branch {branch.name} has uncommitted changes that no interrupted turn "
                             f"of this goal explains:\n{list_paths(pending)}",
                             hint=f"commit them on {branch.name} yourself if the goal should keep them, "
                                  "or stash (git stash -u) or discard them; then resume")
    violations = _enforce(top, protect, paths)
    commit, files = _commit_changes(top, RECOVERY_SUBJECT, _trailers(goal_id, interrupted_turn, "?/?"),
                                    oversized_changes(top, max_file_bytes))
    return ResumeResult(recovered_commit=commit, files=files, violations=violations)


def _trailers(goal_id: str, turn: int, checks: str) -> list[tuple[str, str]]:
    """The three trailers every checkpoint carries, in this order."""
    return [("Goal-Id", goal_id), ("Turn", str(turn)), ("Checks", checks)]


def _commit_changes(top: Path, subject: str, trailers: list[tuple[str, str]], exclude: Sequence[str] = (),
                    listed: Sequence[Change] | None = None) -> tuple[str | None, list[str]]:
    """Commit every remaining change but `exclude` (`listed`: as a `status` just found them); (None, []) when
    there is none."""
    listed = changes(top) if listed is None else listed
    files = [change.path for change in listed if change.path not in exclude]
    commit = commit_all(top, subject, trailers, exclude=exclude, listed=listed) if files else None
    return commit, (files if commit else [])


def _restore_goal_branch(top: Path, branch: GoalBranch, current: str | None) -> str | None:
    """Put HEAD back on the goal branch when something moved it (`current`: the branch HEAD is on); returns
    where it was, else None.

    Only HEAD and the index change: the working tree stays as the turn left it, so the next commit records
    exactly that, on the goal branch, and the branch HEAD was on never gets a commit.
    """
    if current == branch.name:
        return None
    if not branch_exists(top, branch.name):
        raise WorkspaceError(f"the goal branch {branch.name} no longer exists in {top}",
                             hint="restore it (git branch NAME COMMIT, see git reflog) or set a new goal")
    git(top, "symbolic-ref", "-m", "goalkeeper: back to the goal branch", "HEAD", f"refs/heads/{branch.name}")
    git(top, "reset", "-q", "--mixed")  # index := the goal branch's tree; files untouched
    return current or "a detached HEAD"


def _on_goal_branch(workspace: Path, branch: GoalBranch) -> Path:
    """The top-level, after making sure HEAD is the goal branch: goalkeeper writes to no other branch."""
    top = toplevel(workspace)
    current = current_branch(top)
    if current != branch.name:
        where = f"the branch {current}" if current else "a detached HEAD"
        raise WorkspaceError(f"{top} is on {where}, not the goal branch {branch.name}; "
                             "goalkeeper writes only to its own branch",
                             hint="resume the goal (it checks the branch out), or `git checkout` it yourself")
    return top


def _switch_to_goal_branch(workspace: Path, branch: GoalBranch) -> Path:
    """Check out the goal branch unless HEAD is already on it; never carry another branch's changes over."""
    top = toplevel(workspace)
    recover_stale_locks(top, branch.name)
    if current_branch(top) == branch.name:
        return top
    if not branch_exists(top, branch.name):
        raise WorkspaceError(f"the goal branch {branch.name} no longer exists in {top}",
                             hint="restore it (git branch NAME COMMIT, see git reflog) or set a new goal")
    pending = [change.path for change in changes(top)]
    if pending:
        where = current_branch(top) or "a detached HEAD"
        raise WorkspaceError(f"{top} is on {where} with uncommitted changes, so goalkeeper will not switch to "
                             f"{branch.name}:\n{list_paths(pending)}",
                             hint="commit or stash them (git stash -u), then resume")
    git(top, "checkout", "-q", branch.name)
    return top


def _rollback_turn(to: RollbackTarget, best_turn: int | None, last_green_turn: int | None) -> int:
    """The turn number `to` names."""
    if isinstance(to, int):
        return to
    turn = best_turn if to == "best" else last_green_turn
    if turn is None:
        what = "best verified" if to == "best" else "green"
        raise WorkspaceError(f"there is no {what} checkpoint to roll back to yet",
                             hint="roll back to a turn number instead (gk log lists them)")
    return turn


def _checkpoint_commit(top: Path, branch: GoalBranch, turn: int) -> str:
    """The checkpoint commit of `turn`; a WorkspaceError naming the turns that have one when it has none."""
    turns = checkpoint_turns(top, branch)
    if turn not in turns:
        existing = ", ".join(str(number) for number in sorted(turns)) or "none yet"
        raise WorkspaceError(f"turn {turn} has no checkpoint on {branch.name} (turns with one: {existing})",
                             hint="pick one of those turns; a turn that changed no file has no checkpoint")
    return turns[turn]


def _enforce(top: Path, protect: Sequence[str], paths: Sequence[str],
             listed: Sequence[Change] | None = None) -> list[Violation]:
    """Find changed paths the boundaries forbid (among `listed`, if given) and revert them."""
    found = [violation for change in (changes(top) if listed is None else listed)
             if (violation := _violation(change.path, protect, paths)) is not None]
    if found:
        _revert(top, [violation.path for violation in found])
    return found


def _violation(path: str, protect: Sequence[str], paths: Sequence[str]) -> Violation | None:
    """The boundary `path` breaks, if any: inside a `.git` dir, matching `protect`, or outside non-empty `paths`."""
    if ".git" in path.rstrip("/").split("/"):
        return Violation(path, "protect", GIT_DIR_GLOB)
    glob = first_path_match(protect, path)
    if glob is not None:
        return Violation(path, "protect", glob)
    if paths and first_path_match(paths, path) is None:
        return Violation(path, "paths", ", ".join(paths))
    return None


def _revert(top: Path, reverted: list[str]) -> None:
    """Put `reverted` back as HEAD has them: tracked paths restored, paths HEAD lacks unstaged and deleted."""
    listed = git(top, "--literal-pathspecs", "ls-tree", "-r", "-z", "--name-only", "HEAD", "--", *reverted)
    in_head = set(listed.split("\0")) & set(reverted)
    added = [path for path in reverted if path not in in_head]
    if added:  # first, so a file that became a folder can be restored where the folder was
        git(top, "--literal-pathspecs", "rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", *added)
        for path in added:
            remove_path(top / path)
    if in_head:
        git(top, "--literal-pathspecs", "checkout", "-q", "HEAD", "--", *sorted(in_head))


def remove_path(target: Path) -> None:
    """Delete a file, a link or a directory (a nested repository shows up as one)."""
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif os.path.lexists(target):
        target.unlink()
