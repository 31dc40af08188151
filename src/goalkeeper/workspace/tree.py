"""A content hash of the working tree, used as the "did anything change?" progress signal.

It never touches the repository's real index or history: a throwaway index file is used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def tree_hash(workspace: Path) -> str | None:
    """The git tree id of the working tree as it is now (untracked files included, ignored ones not)."""
    git_dir = subprocess.run(["git", "rev-parse", "--absolute-git-dir"], cwd=workspace, capture_output=True,
                             text=True, timeout=30)
    if git_dir.returncode != 0:
        return None
    with tempfile.TemporaryDirectory(prefix="gk-index-") as scratch:
        index = Path(scratch) / "index"
        real_index = Path(git_dir.stdout.strip()) / "index"
        if real_index.exists():
            shutil.copyfile(real_index, index)  # reuse git's stat cache: only changed files are re-hashed
        env = {**os.environ, "GIT_INDEX_FILE": str(index)}
        added = subprocess.run(["git", "add", "-A", "."], cwd=workspace, env=env, capture_output=True, timeout=120)
        if added.returncode != 0:
            return None
        tree = subprocess.run(["git", "write-tree"], cwd=workspace, env=env, capture_output=True, text=True,
                              timeout=60)
        return tree.stdout.strip() if tree.returncode == 0 else None
