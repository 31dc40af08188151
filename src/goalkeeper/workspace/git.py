"""The goal's git workspace: preflight, the goal branch, and the git plumbing that checkpoints build on.

It never pushes, and it never writes to a branch other than the goal's own (the one it creates).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from goalkeeper.errors import WorkspaceError

GIT_TIMEOUT_S = 120.0
"""Upper bound on one git command; a hung hook or a stale lock becomes an error instead of a stall."""

HARNESS_NAME = "goalkeeper"
HARNESS_EMAIL = "goalkeeper@localhost"
SNAPSHOT_SUBJECT = "goalkeeper: snapshot of uncommitted changes"
DIRTY_HINT = "commit or stash them, or pass --allow-dirty to snapshot them onto the goal branch"
LISTED_PATHS = 10
"""How many paths an error message lists before it says "and N more"."""


@dataclass(frozen=True)
class Preflight:
    """What preflight found: the repository and the commit a goal would start from."""

    top: Path
    """The git top-level directory; every path below is relative to it."""
    head_branch: str | None
    """The branch HEAD is on, or None for a detached HEAD."""
    head_commit: str
    dirty: list[str]
    """Uncommitted paths (staged, unstaged, untracked and not ignored); empty for a clean tree."""


@dataclass(frozen=True)
class GoalBranch:
    """The goal's own branch; the store keeps these three values so a resumed goal finds it again."""

    name: str
    """`goal/<8 hex of the goal id>-<slug of the outcome>`."""
    base_commit: str
    """The HEAD the goal branch was created from."""
    snapshot_commit: str | None = None
    """The commit holding the user's uncommitted changes (--allow-dirty), or None."""


@dataclass(frozen=True)
class Change:
    """One uncommitted path, as `git status --porcelain` reports it."""

    status: str
    """The two-letter porcelain code: `??` untracked, ` M` modified, `D ` deleted and staged, ..."""
    path: str
    """Relative to the top-level, `/`-separated; a nested repository ends with `/`."""


def git(top: Path, *args: str, stdin: str | None = None, errors: str = "surrogateescape") -> str:
    """Run `git args` in `top` and return its stdout; any failure is a WorkspaceError that says which."""
    done = probe(top, *args, stdin=stdin, errors=errors)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise WorkspaceError(f"`git {' '.join(args)}` failed in {top}: {detail}",
                             hint="fix the repository state git reports, then try again")
    return done.stdout


def probe(top: Path, *args: str, stdin: str | None = None,
          errors: str = "surrogateescape") -> subprocess.CompletedProcess[str]:
    """Run `git args` in `top` and return the finished process, whatever its exit code."""
    try:
        # surrogateescape: paths that are not UTF-8 survive the round trip back to git and the file system
        return subprocess.run(["git", *args], cwd=top, input=stdin, capture_output=True, text=True,
                              encoding="utf-8", errors=errors, timeout=GIT_TIMEOUT_S)
    except FileNotFoundError as err:
        raise WorkspaceError("git is not installed (or not on PATH)", hint="install git") from err
    except subprocess.TimeoutExpired as err:
        raise WorkspaceError(f"`git {args[0]}` took longer than {GIT_TIMEOUT_S:.0f}s in {top}",
                             hint="look for a stale .git/index.lock or a hook that hangs") from err


def toplevel(workspace: Path) -> Path:
    """The git top-level directory of `workspace`; a WorkspaceError when there is none."""
    if not workspace.is_dir():
        raise WorkspaceError(f"{workspace} is not a directory", hint="pass --cwd to an existing repository")
    done = probe(workspace, "rev-parse", "--show-toplevel")
    if done.returncode != 0 or not done.stdout.strip():
        raise WorkspaceError(f"{workspace} is not a git repository",
                             hint="git init && git add -A && git commit -m init, or pass --cwd to a repository")
    return Path(done.stdout.strip())


def current_branch(workspace: Path) -> str | None:
    """The branch HEAD is on (`goal/…`, `main`), or None when HEAD is detached."""
    done = probe(toplevel(workspace), "symbolic-ref", "-q", "HEAD")
    ref = done.stdout.strip()
    return ref.removeprefix("refs/heads/") if done.returncode == 0 and ref else None


def head_commit(top: Path) -> str | None:
    """The commit HEAD points at, or None in a repository with no commits yet."""
    done = probe(top, "rev-parse", "--verify", "-q", "HEAD^{commit}")
    return done.stdout.strip() if done.returncode == 0 else None


def branch_exists(top: Path, name: str) -> bool:
    """Whether the local branch `name` exists."""
    return probe(top, "rev-parse", "--verify", "-q", f"refs/heads/{name}").returncode == 0


def changes(top: Path) -> list[Change]:
    """Every uncommitted path: staged, unstaged and untracked (ignored files are not changes)."""
    out = git(top, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames")
    return [Change(entry[:2], entry[3:]) for entry in out.split("\0") if len(entry) > 3]


def list_paths(paths: Sequence[str]) -> str:
    """Up to LISTED_PATHS paths, one per indented line, for an error message."""
    shown = [f"  {path}" for path in paths[:LISTED_PATHS]]
    if len(paths) > LISTED_PATHS:
        shown.append(f"  … and {len(paths) - LISTED_PATHS} more")
    return "\n".join(shown)


def identity_flags(top: Path) -> list[str]:
    """`-c user.name=… -c user.email=…` for whichever of the two the repository has not configured."""
    flags: list[str] = []
    for key, value in (("user.name", HARNESS_NAME), ("user.email", HARNESS_EMAIL)):
        if probe(top, "config", "--get", key).returncode != 0:
            flags += ["-c", f"{key}={value}"]
    return flags


def commit_all(top: Path, subject: str, trailers: Sequence[tuple[str, str]]) -> str | None:
    """Stage every change and commit it on the current branch; returns the new commit, or None if nothing staged.

    Nothing stages when the only change is inside a submodule (`git add` does not reach into it).

    Hooks are skipped (--no-verify): a harness checkpoint must record the tree exactly as the turn left it,
    and a formatter hook rewriting files would make the commit disagree with the checks that just ran.
    """
    git(top, "add", "-A")
    if probe(top, "diff", "--cached", "--quiet").returncode == 0:
        return None
    body = "\n".join(f"{key}: {value}" for key, value in trailers)
    message = f"{subject}\n\n{body}\n" if body else f"{subject}\n"
    git(top, *identity_flags(top), "commit", "-q", "--no-verify", "--cleanup=whitespace", "-F", "-",
        stdin=message)
    return git(top, "rev-parse", "HEAD").strip()


def preflight(workspace: Path, allow_dirty: bool) -> Preflight:
    """Check that `workspace` is a git repository with at least one commit and (unless allowed) a clean tree."""
    top = toplevel(workspace)
    head = head_commit(top)
    if head is None:
        raise WorkspaceError(f"{top} has no commits yet, so there is nothing to branch a goal from",
                             hint="git add -A && git commit -m init")
    _refuse_operation_in_progress(top)
    dirty = [change.path for change in changes(top)]
    if dirty and not allow_dirty:
        raise WorkspaceError(f"the working tree of {top} has uncommitted changes:\n{list_paths(dirty)}",
                             hint=DIRTY_HINT)
    return Preflight(top=top, head_branch=current_branch(top), head_commit=head, dirty=dirty)


def refuse_stale_lock(top: Path) -> None:
    """A process killed mid-commit leaves `index.lock` behind, and every later git write fails on it."""
    lock = top / git(top, "rev-parse", "--git-path", "index.lock").strip()
    if lock.exists():
        raise WorkspaceError(f"{lock} exists: another git command is running, or one was killed mid-write",
                             hint=f"if no git command is running, delete {lock} and try again")


def _refuse_operation_in_progress(top: Path) -> None:
    """A half-done merge, rebase or cherry-pick is the user's to finish: a goal never starts in the middle of one."""
    for marker, operation in (("MERGE_HEAD", "merge"), ("rebase-merge", "rebase"), ("rebase-apply", "rebase"),
                              ("CHERRY_PICK_HEAD", "cherry-pick"), ("REVERT_HEAD", "revert")):
        path = Path(git(top, "rev-parse", "--git-path", marker).strip())
        if (top / path).exists():
            raise WorkspaceError(f"a git {operation} is in progress in {top}",
                                 hint=f"finish or abort it (git {operation} --continue / --abort) first")


def goal_branch_name(goal_id: str, outcome: str) -> str:
    """`goal/<first 8 hex of the id after its prefix>-<slug of the outcome, at most 40 chars>`."""
    digits = re.sub(r"[^0-9a-f]", "", goal_id.rpartition("_")[2].lower())[:8]
    short_id = digits or hashlib.sha1(goal_id.encode()).hexdigest()[:8]
    ascii_outcome = unicodedata.normalize("NFKD", outcome).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_outcome.lower()).strip("-")[:40].rstrip("-")
    return f"goal/{short_id}-{slug or 'goal'}"


def start_goal(workspace: Path, goal_id: str, outcome: str, allow_dirty: bool, *, base: str | None = None,
               snapshot_subject: str = SNAPSHOT_SUBJECT) -> GoalBranch:
    """Create the goal branch from HEAD (or from the commit `base`) and check it out; with allow_dirty, commit
    the dirty tree onto it.

    The snapshot is committed after the switch, so the branch the user was on never gets a commit.
    """
    checked = preflight(workspace, allow_dirty)
    name = goal_branch_name(goal_id, outcome)
    if branch_exists(checked.top, name):
        raise WorkspaceError(f"the branch {name} already exists",
                             hint=f"resume that goal, or delete the branch (git branch -D {name})")
    start = checked.head_commit if base is None else commit_of(checked.top, base)
    # From HEAD the switch never touches the working tree, so dirty changes come along. From another commit
    # git carries untracked files over and refuses to overwrite a change the switch would lose.
    git(checked.top, "checkout", "-q", "-b", name, start)
    snapshot = None
    if checked.dirty:
        snapshot = commit_all(checked.top, snapshot_subject, [("Goal-Id", goal_id)])
    return GoalBranch(name=name, base_commit=start, snapshot_commit=snapshot)


def commit_of(top: Path, revision: str) -> str:
    """The full id of the commit `revision` names; a WorkspaceError when the repository has no such commit."""
    done = probe(top, "rev-parse", "--verify", "-q", f"{revision}^{{commit}}")
    if done.returncode != 0 or not done.stdout.strip():
        raise WorkspaceError(f"{top} has no commit {revision}",
                             hint="fetch it, or use the repository the commit came from")
    return done.stdout.strip()
