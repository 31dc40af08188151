"""Plain helpers the tests import (conftest.py holds only fixtures)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return its stdout."""
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout


def bare_remote(root: Path) -> Path:
    """`root/remote.git`: a bare repository holding one commit (a README), as a fleet's goals clone and push to."""
    work = root / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "README").write_text("tiny\n")
    git(work, "add", "-A")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    git(root, "clone", "-q", "--bare", str(work), "remote.git")
    return root / "remote.git"
