"""A content hash of the working tree, used as the "did anything change?" progress signal.

It never touches the repository's real index or history: a throwaway index file is used. Its git runs
through the hardened entry point (workspace/git.py) like every other.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from goalkeeper.errors import WorkspaceError
from goalkeeper.workspace.git import git_dirs, run_git, stage_all, status, toplevel


def tree_hash(workspace: Path) -> str | None:
    """The git tree id of the working tree as it is now (untracked files included, ignored ones not)."""
    try:
        top = toplevel(workspace)
        git_dir, _ = git_dirs(top)
        # At the top-level one `git status` lists what to stage (three git processes in all).
        listed = status(top).changes if top == Path(os.path.realpath(workspace)) else None
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
