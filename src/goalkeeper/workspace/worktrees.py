"""A batch goal's own working tree: a git worktree of the repository, outside it, made and re-made here.

Each goal of a batch runs in its own worktree (`git worktree add --detach` at the batch's start commit), so no
two goals share a working tree; the goal-branch code then runs in it as in any workspace. The worktrees live
beside $GOALKEEPER_HOME, never inside it: the sandbox masks the home (the store, the server token) unless the
workspace lies within it, and a worktree there would unmask it.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
from collections.abc import Iterator
from pathlib import Path

from goalkeeper.config.load import goalkeeper_home
from goalkeeper.errors import WorkspaceError
from goalkeeper.store.home import private_directory
from goalkeeper.workspace.git import (
    OBJECT_ID,
    branch_exists,
    commit_of,
    git,
    git_dirs,
    probe,
    remember_toplevel,
    toplevel,
)


def worktrees_root() -> Path:
    """`<$GOALKEEPER_HOME>-worktrees` (0700), e.g. `~/.goalkeeper-worktrees`: beside the home, not in it."""
    home = goalkeeper_home().expanduser().resolve()
    return private_directory(home.with_name(f"{home.name}-worktrees"))


def worktree_path(batch_id: str, name: str) -> Path:
    """Where the goal `name` of batch `batch_id` works (not created)."""
    return worktrees_root() / batch_id / name


def start_commit(repository: Path) -> str:
    """The commit every goal of a new batch starts from: the repository's HEAD."""
    return commit_of(toplevel(repository), "HEAD")


def add_worktree(repository: Path, path: Path, commit: str) -> Path:
    """A new worktree of `repository` at `path`, detached at `commit` (the goal branch is made in it later)."""
    if path.exists():
        raise WorkspaceError(f"the worktree folder {path} already exists",
                             "remove it (git worktree remove --force PATH), or resume the batch that made it")
    path.parent.mkdir(parents=True, exist_ok=True)
    top, add = toplevel(repository), ("worktree", "add", "-q", "--detach", str(path), commit)
    with _one_at_a_time():
        try:
            git(top, *add)
        except WorkspaceError:
            # A worktree whose folder went away may still be registered at this very path (an old goal's, or
            # one a run killed in the middle of `git worktree add` had registered): forget those, try again.
            git(top, "worktree", "prune")
            git(top, *add)
    remember_toplevel(path)
    return path


def ensure_worktree(repository: Path, path: Path, branch: str | None, commit: str) -> Path:
    """The goal's worktree at `path`, re-made when it is gone: from the goal's branch when it has one (the branch
    code checks it out), else at `commit`. For a goal that never ran here (no `branch`), what a run killed in the
    middle of `git worktree add` left is made again; for one that ran, a folder that is there but no longer a
    worktree is an error."""
    top = toplevel(repository)
    if path.is_dir():
        if not _is_worktree(path):
            if branch is not None:
                raise WorkspaceError(f"{path} is no longer a git worktree of {repository}",
                                     "move it aside; `gk batch --resume` then makes it again")
        elif branch is not None or not _unfinished(path):
            return path
        with _one_at_a_time():
            _forget(top, path)  # half made by a killed run; nothing of a goal's is in it: its goal never ran
    if branch is not None:
        with _one_at_a_time():
            git(top, "worktree", "prune")  # a worktree whose folder went away may still hold the goal's branch
    start = branch if branch is not None and branch_exists(top, branch) else commit
    # A batch's commit is named by its id, found when the batch started; `worktree add` refuses one not there.
    return add_worktree(repository, path, start if OBJECT_ID.fullmatch(start) else commit_of(top, start))


def _is_worktree(path: Path) -> bool:
    """Whether git finds a working tree whose top level is `path` (a folder git added as a worktree)."""
    return probe(path, "rev-parse", "--show-toplevel").stdout.strip() == str(path.resolve())


def _unfinished(path: Path) -> bool:
    """Whether `git worktree add` was stopped before it finished at `path`: git locks the worktree's admin folder
    ("initializing") until its checkout is done, and writes HEAD as a placeholder first. (Stopped earlier still,
    before the folder's `.git` file, it is not a worktree at all.)"""
    admin, _ = git_dirs(path)
    return (admin / "locked").exists() or probe(path, "rev-parse", "--verify", "-q", "HEAD^{commit}").returncode != 0


def _forget(top: Path, path: Path) -> None:
    """Remove a half-made worktree: its folder, and the lock git left on its admin folder (which `git worktree
    prune` then removes, when `add_worktree` finds the path still registered)."""
    _, common = git_dirs(top)
    mine = path.resolve() / ".git"
    for admin in (common / "worktrees").glob("*"):
        with contextlib.suppress(OSError):
            if Path((admin / "gitdir").read_text().strip()) == mine:
                (admin / "locked").unlink(missing_ok=True)
    shutil.rmtree(path)


@contextlib.contextmanager
def _one_at_a_time() -> Iterator[None]:
    """Hold the worktrees' lock: `git worktree add` run side by side reads the other's half-made
    `.git/worktrees/<name>` and fails ("failed to read .../commondir"). A file lock, so the goals of one batch
    (threads) and of several (processes) take turns alike."""
    with (worktrees_root() / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

