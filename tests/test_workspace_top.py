"""`workspace_of` finds a workspace's git top-level as `git rev-parse --show-toplevel` does, without running git
for a plain repository, a subfolder, a linked worktree or a folder outside any repository (every read command
asks). Each layout is compared with git's own answer on real repositories."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from goalkeeper.errors import WorkspaceError
from goalkeeper.goals.where import workspace_of
from goalkeeper.workspace.git import toplevel


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args], cwd=cwd, check=True,
                   capture_output=True, timeout=60)


def _with_git(path: Path) -> Path:
    """What workspace_of answered when it always asked git: the top-level, or the folder itself."""
    try:
        return toplevel(path.resolve())
    except WorkspaceError:
        return path.resolve()


@pytest.fixture()
def layouts(tmp_path: Path) -> Path:
    """Repositories of each kind under one folder."""
    repo = tmp_path / "repo"
    (repo / "sub" / "deeper").mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    (repo / "a.txt").write_text("a\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "init")
    _git(repo, "worktree", "add", "-q", str(tmp_path / "linked"), "-b", "side")
    (tmp_path / "linked" / "in").mkdir()
    (repo / "inner").mkdir()
    _git(repo / "inner", "init", "-q")
    (repo / "empty-dot-git" / ".git").mkdir(parents=True)  # not a repository: git looks further up
    (repo / "bad-pointer").mkdir()
    (repo / "bad-pointer" / ".git").write_text("gitdir: nowhere\n")
    _git(tmp_path, "init", "-q", "--bare", "bare.git")
    moved = tmp_path / "moved"
    moved.mkdir()
    _git(moved, "init", "-q")
    _git(moved, "config", "core.worktree", str(tmp_path))
    (tmp_path / "plain" / "x").mkdir(parents=True)
    (tmp_path / "link").symlink_to(repo / "sub")
    return tmp_path


FAST = ["repo", "repo/sub/deeper", "linked", "linked/in", "repo/inner", "plain/x", "link"]
"""Layouts answered from the file system alone."""

ASKS_GIT = ["repo/.git/refs", "repo/empty-dot-git", "repo/bad-pointer", "bare.git", "bare.git/refs", "moved"]
"""Layouts git decides (inside a `.git`, bare, a `.git` that is not a repository, core.worktree)."""


@pytest.mark.parametrize("where", FAST + ASKS_GIT)
def test_the_workspace_is_the_top_level_git_finds(layouts: Path, where: str) -> None:
    assert workspace_of(layouts / where) == _with_git(layouts / where)


@pytest.mark.parametrize("where", FAST)
def test_a_plain_repository_is_found_without_running_git(layouts: Path, where: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _with_git(layouts / where)
    monkeypatch.setenv("PATH", os.devnull)  # no git to run: asking it would fail
    assert workspace_of(layouts / where) == expected
