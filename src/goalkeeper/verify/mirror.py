"""The baseline mirror: a bare copy of the goal's base commit under $GOALKEEPER_HOME, out of the model's reach.

Made at goal start, before the model runs anything, through the hardened git (replace objects ignored). Every
restore, diff and clean room reads baseline objects from here, never from the workspace's `.git`, which the
model can rewrite under danger-full-access. Only the base commit's own objects are copied (not its history).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from goalkeeper.config.load import goalkeeper_home
from goalkeeper.errors import WorkspaceError
from goalkeeper.store.home import private_directory
from goalkeeper.workspace.git import ByCommit, run_git, toplevel

#: The ref in the mirror that names the base commit.
BASE_REF = "refs/heads/base"


def goal_folder(kind: str, goal_id: str) -> Path:
    """`$GOALKEEPER_HOME/<kind>/` (both 0700) joined with the goal's id (not created)."""
    home = private_directory(goalkeeper_home().resolve())
    return private_directory(home / kind) / goal_id


def mirror_path(goal_id: str) -> Path:
    """Where the goal's mirror lives: `$GOALKEEPER_HOME/mirrors/<goal_id>.git`."""
    return goal_folder("mirrors", f"{goal_id}.git")


def make_mirror(workspace: Path, commit: str, path: Path) -> Path:
    """Copy `commit` with its tree into a new bare repository at `path` (0700); returns `path`.

    The commit's objects are packed by the workspace's git and indexed again into one mirror per commit
    (`mirrors/commits/<commit>.git`), so each is hashed anew: an object whose content no longer matches its name
    is missing from the mirror, and that is an error. A goal's mirror is a hardlinked copy of it (the goals of a
    batch share one commit: it is packed once), checked again to hold the commit whole.
    """
    shared, made = _commit_mirror(workspace, commit)
    with _made_at(path, f"{os.getpid()}-{threading.get_ident()}") as scratch:
        # Hard links: git never writes an object or a pack in place, and nothing writes to a mirror after this.
        shutil.copytree(shared, scratch, copy_function=os.link)
        # One made just now was checked whole as it was made, and a copy holds the same files as the copies this
        # process checked before it: once per shared mirror and process (a batch's goals share one).
        if not made and (str(shared), commit) not in _WHOLE:
            _check_whole(scratch, commit, WorkspaceError(
                f"the baseline mirror of {commit[:12]} under {shared.parent} is incomplete",
                hint=f"remove {shared} (it is made again from the workspace), then start the goal again"))
        _WHOLE.add((str(shared), commit))
    return path


#: (shared mirror, commit) this process found (or made) whole.
_WHOLE: set[tuple[str, str]] = set()


def _commit_mirror(workspace: Path, commit: str) -> tuple[Path, bool]:
    """The mirror of `commit` every goal starting from it copies, made from the workspace on first use (one
    maker at a time: the others wait for it, then find it made); and whether this call made it."""
    folder = goal_folder("mirrors", "commits")
    private_directory(folder)
    shared = folder / f"{commit}.git"
    with (folder / f"{commit}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (shared / "HEAD").is_file():
            return shared, False
        top = toplevel(workspace)
        listed = _git(top, "rev-list", "--objects", "--no-walk", commit)
        pack = _git(top, "pack-objects", "--stdout", "-q", stdin=listed)
        with _made_at(shared, str(os.getpid())) as scratch:
            _git(top, "init", "--bare", "-q", "--template=", str(scratch))  # no sample hooks: fewer files to link
            _git(scratch, "index-pack", "--stdin", stdin=pack)
            _git(scratch, "update-ref", BASE_REF, commit)
            _check_whole(scratch, commit, WorkspaceError(
                f"the base commit {commit[:12]} is incomplete in the workspace's repository",
                hint="its objects were changed or removed; start the goal again from a sound repository (git "
                     "fsck tells what is wrong)"))
    return shared, True


@contextlib.contextmanager
def _made_at(path: Path, tag: str) -> Iterator[Path]:
    """A scratch folder beside `path` for the block to fill; then it replaces `path` (0700). A block that fails
    leaves `path` as it was, and no scratch behind."""
    scratch = path.with_name(f"{path.name}.tmp-{tag}")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        yield scratch
        shutil.rmtree(path, ignore_errors=True)
        scratch.rename(path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    path.chmod(0o700)


def _check_whole(mirror: Path, commit: str, error: WorkspaceError) -> None:
    """Raise `error` unless `mirror` holds `commit` with every object of its tree."""
    if not has_commit(mirror, commit):
        raise error


def ensure_mirror(workspace: Path, commit: str, path: Path) -> bool:
    """Check the mirror recorded for a resumed goal; True when it had to be made again.

    A missing or broken mirror is made again only if the workspace still holds the base commit with every
    object hashing the same (make_mirror re-hashes them); otherwise a WorkspaceError says so.
    """
    if has_commit(path, commit):
        return False
    try:
        make_mirror(workspace, commit, path)
    except WorkspaceError as err:
        raise WorkspaceError(f"the baseline mirror {path} is gone and the workspace can no longer give back "
                             f"the base commit {commit[:12]} intact: {err.message}",
                             hint="the goal's verdicts cannot be trusted any more; clear it and set it again "
                                  "(gk goal ... --replace)") from err
    return True


def has_commit(mirror: Path, commit: str) -> bool:
    """Whether the mirror exists and holds `commit` with its whole tree."""
    if not (mirror / "HEAD").is_file():
        return False
    return run_git(mirror, "rev-list", "--objects", "--no-walk", commit).returncode == 0


def base_entries(mirror: Path, commit: str) -> dict[str, tuple[str, str]]:
    """path -> (mode, object id) for every file of `commit` (top-level-relative, submodules left out).

    Kept for the last few commits named by their full id: a commit names its tree, so every mirror that holds
    it lists the same files (a goal's start lists them twice, and a batch's goals share one commit)."""
    return dict(_LISTED.get(commit, commit, lambda: _list_entries(mirror, commit)))


def _list_entries(mirror: Path, commit: str) -> dict[str, tuple[str, str]]:
    out = _git(mirror, "ls-tree", "-r", "-z", "--full-tree", commit)
    entries = {}
    for line in out.split(b"\0"):
        if not line:
            continue
        meta, _, name = line.partition(b"\t")
        mode, kind, sha = meta.decode().split()
        if kind == "blob":
            entries[os.fsdecode(name)] = (mode, sha)
    return entries


#: Full commit id → its files, for the last two commits listed (`base_entries`).
_LISTED: ByCommit[str, dict[str, tuple[str, str]]] = ByCommit(2)


def blob(mirror: Path, sha: str) -> bytes:
    """The content of one blob of the mirror."""
    return _git(mirror, "cat-file", "blob", sha)


def checkout(mirror: Path, commit: str, target: Path) -> None:
    """Write the tree of `commit` into the empty directory `target` (the mirror's own index is not touched)."""
    index = target.with_name(target.name + ".index")
    env = {"GIT_INDEX_FILE": str(index)}
    # A scratch index of the harness's own: what a run killed mid-checkout left of it (its lock too) is litter.
    for litter in (index, index.with_name(index.name + ".lock")):
        litter.unlink(missing_ok=True)
    try:
        for args in (("read-tree", commit), ("checkout-index", "-a", "-f")):
            # Run from the mirror, not the target: a repository's config is read once and kept (workspace/git.py).
            _git(mirror, f"--git-dir={mirror}", f"--work-tree={target}", *args, env=env)
    finally:
        index.unlink(missing_ok=True)


def _git(top: Path, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> bytes:
    done = run_git(top, *args, stdin=stdin, env=env)
    if done.returncode != 0:
        raise WorkspaceError(f"`git {args[0]}` failed for the baseline mirror: "
                             f"{done.stderr.decode(errors='replace').strip()}",
                             hint="check that $GOALKEEPER_HOME is writable and the repository is sound (git fsck)")
    return done.stdout
