"""A content hash of the working tree, used as the "did anything change?" progress signal.

It never touches the repository's real index or history: a throwaway index file is used. Its git runs
through the hardened entry point (workspace/git.py) like every other.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zlib
from pathlib import Path

from goalkeeper.errors import WorkspaceError
from goalkeeper.workspace.git import OBJECT_ID, ByCommit, git_dirs, probe, run_git, stage_all, status, toplevel


def tree_hash(workspace: Path) -> str | None:
    """The git tree id of the working tree as it is now (untracked files included, ignored ones not)."""
    try:
        top = toplevel(workspace)
        git_dir, common = git_dirs(top)
        # At the top-level one `git status` lists what to stage (three git processes in all); when it lists
        # nothing, the tree is HEAD's, read without staging anything.
        seen = status(top) if top == Path(os.path.realpath(workspace)) else None
        if seen is not None and not seen.changes and seen.head is not None:
            return tree_of(top, common, seen.head)
        listed = seen.changes if seen is not None else None
        with tempfile.TemporaryDirectory(prefix="gk-index-") as scratch:
            index = Path(scratch) / "index"
            real_index = git_dir / "index"
            if real_index.exists():
                shutil.copyfile(real_index, index)  # reuse git's stat cache: only changed files are re-hashed
            env = {"GIT_INDEX_FILE": str(index)}
            stage_all(workspace, env=env, listed=listed)  # paths relative to the workspace, as `git add -A .` there
            tree = run_git(workspace, "write-tree", env=env)
            return tree.stdout.decode().strip() if tree.returncode == 0 else None
    except WorkspaceError:
        return None


def tree_of(top: Path, common: Path, commit: str) -> str:
    """The tree id of `commit` (a full id) in the repository of `top`, whose common git dir is `common`: from its
    loose object when it is one (what `git commit` just wrote, its id checked against its content), else from
    git, once per repository and commit."""

    def read() -> str:
        found = _loose_commit_tree(common, commit)
        if found is not None:
            return found
        done = probe(top, "rev-parse", "--verify", "-q", f"{commit}^{{tree}}")
        tree = done.stdout.strip() if done.returncode == 0 else ""
        if not OBJECT_ID.fullmatch(tree):
            raise WorkspaceError(f"git found no tree for {commit} in {top}")  # not kept: asked again next time
        return tree

    return _TREES.get(commit, (str(common), commit), read)


#: (common git dir, commit id) → its tree id (`tree_of`): a commit's tree never changes.
_TREES: ByCommit[tuple[str, str], str] = ByCommit(1024)


def _loose_commit_tree(common: Path, commit: str) -> str | None:
    """The `tree` line of `commit` stored as a loose object in `common`, or None (packed, elsewhere, not a commit,
    or content that does not hash to its name)."""
    path = common / "objects" / commit[:2] / commit[2:]
    try:
        with path.open("rb") as handle:
            raw = zlib.decompress(handle.read(1 << 20))
    except (OSError, zlib.error):
        return None
    digest = hashlib.sha1 if len(commit) == 40 else hashlib.sha256
    if digest(raw).hexdigest() != commit or not raw.startswith(b"commit "):
        return None
    body = raw[raw.find(b"\0") + 1:]
    if not body.startswith(b"tree ") or (end := body.find(b"\n")) < 0:
        return None
    tree = body[5:end].decode("ascii", "replace")
    return tree if OBJECT_ID.fullmatch(tree) else None
