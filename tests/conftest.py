"""Shared fixtures: a private GOALKEEPER_HOME and a real git repository in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from goalkeeper.store import Store
from helpers import git


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first, so the two CI workers start on the long ones and finish together (xdist hands tests out
    in collection order; a four-minute test collected last leaves one worker idle for four minutes)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def goalkeeper_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own store, so tests never see each other's goals."""
    home = tmp_path / "gk-home"
    home.mkdir()
    monkeypatch.setenv("GOALKEEPER_HOME", str(home))
    return home


@pytest.fixture
def store(goalkeeper_home: Path) -> Iterator[Store]:
    """The test's own store (in its GOALKEEPER_HOME); a test file may define its own `store` instead."""
    with Store() as opened:
        yield opened


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """An empty git repository with one commit and an identity set."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "test@example.com")
    git(repo, "config", "user.name", "Test")
    (repo / "README.md").write_text("sample\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    return repo
