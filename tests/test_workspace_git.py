"""The git workspace: preflight, the goal branch, checkpoint commits, boundaries, diff, rollback and resume.

Every test works on a real git repository in tmp_path (the git_repo fixture).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from goalkeeper.errors import WorkspaceError
from goalkeeper.workspace.checkpoints import (
    RECOVERY_SUBJECT,
    checkpoint,
    checkpoint_turns,
    diff,
    resume,
    rollback,
)
from goalkeeper.workspace.git import (
    SNAPSHOT_SUBJECT,
    GoalBranch,
    current_branch,
    goal_branch_name,
    preflight,
    probe,
    start_goal,
)
from goalkeeper.workspace.tree import _loose_commit_tree, tree_hash

GOAL_ID = "goal_1a2b3c4d5e6f"


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return its stdout, stripped."""
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def write(repo: Path, path: str, text: str) -> None:
    """Write `text` to `repo/path`, creating folders."""
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def turn(repo: Path, branch: GoalBranch, number: int, files: dict[str, str], passing: int = 0,
         protect: tuple[str, ...] = (), paths: tuple[str, ...] = ()) -> str | None:
    """Play one turn that writes `files`, then checkpoint it; returns the checkpoint commit."""
    for path, text in files.items():
        write(repo, path, text)
    result = checkpoint(repo, branch, GOAL_ID, number, passing, 2, f"turn {number} work", protect, paths)
    return result.commit


@pytest.fixture
def goal(git_repo: Path) -> GoalBranch:
    """A goal started on a clean repository."""
    return start_goal(git_repo, GOAL_ID, "Make the tests pass", allow_dirty=False)


# preflight


def test_preflight_refuses_a_directory_that_is_not_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(WorkspaceError, match="is not a git repository") as caught:
        preflight(plain, allow_dirty=False)
    assert caught.value.hint is not None and "git init" in caught.value.hint


def test_preflight_refuses_a_repository_without_commits(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    with pytest.raises(WorkspaceError, match="no commits yet") as caught:
        preflight(tmp_path, allow_dirty=False)
    assert caught.value.hint is not None and "git commit" in caught.value.hint


@pytest.mark.parametrize(("path", "text"), [("README.md", "edited\n"), ("notes.txt", "untracked\n")],
                         ids=["tracked-change", "untracked-file"])
def test_preflight_refuses_a_dirty_tree(git_repo: Path, path: str, text: str) -> None:
    write(git_repo, path, text)
    with pytest.raises(WorkspaceError, match="uncommitted changes") as caught:
        preflight(git_repo, allow_dirty=False)
    assert path in caught.value.message
    assert caught.value.hint is not None and "--allow-dirty" in caught.value.hint


def test_preflight_lists_at_most_ten_dirty_paths(git_repo: Path) -> None:
    for number in range(13):
        write(git_repo, f"new/{number:02}.txt", "x\n")
    with pytest.raises(WorkspaceError) as caught:
        preflight(git_repo, allow_dirty=False)
    assert "new/09.txt" in caught.value.message and "new/10.txt" not in caught.value.message
    assert "and 3 more" in caught.value.message


def test_preflight_ignores_ignored_files_and_accepts_a_clean_tree(git_repo: Path) -> None:
    write(git_repo, ".gitignore", "build/\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "ignore build")
    write(git_repo, "build/out.bin", "artifact\n")
    checked = preflight(git_repo, allow_dirty=False)
    assert checked.top == git_repo.resolve()
    assert checked.head_branch == "main"
    assert checked.head_commit == git(git_repo, "rev-parse", "HEAD")
    assert checked.dirty == []


# the goal branch


def test_goal_branch_name_is_the_short_id_and_a_slug_of_the_outcome() -> None:
    name = goal_branch_name(GOAL_ID, "Make the tests pass — all of them, quickly! And then some more work")
    assert name == "goal/1a2b3c4d-make-the-tests-pass-all-of-them-quickly"
    assert len(name.removeprefix("goal/1a2b3c4d-")) <= 40
    assert goal_branch_name(GOAL_ID, "Ünïcode café") == "goal/1a2b3c4d-unicode-cafe"
    assert goal_branch_name(GOAL_ID, "!!!") == "goal/1a2b3c4d-goal"


def test_start_goal_creates_the_branch_from_head_and_checks_it_out(git_repo: Path) -> None:
    head = git(git_repo, "rev-parse", "HEAD")
    branch = start_goal(git_repo, GOAL_ID, "Make the tests pass", allow_dirty=False)
    assert branch == GoalBranch(name="goal/1a2b3c4d-make-the-tests-pass", base_commit=head, snapshot_commit=None)
    assert current_branch(git_repo) == branch.name
    assert git(git_repo, "rev-parse", branch.name) == head


def test_start_goal_refuses_a_dirty_tree_without_allow_dirty(git_repo: Path) -> None:
    write(git_repo, "README.md", "edited\n")
    with pytest.raises(WorkspaceError, match="uncommitted changes"):
        start_goal(git_repo, GOAL_ID, "x", allow_dirty=False)
    assert current_branch(git_repo) == "main"


def start_merge(repo: Path, side: str) -> None:
    """Leave a merge of a new branch `side` half done in `repo` (MERGE_HEAD written, nothing committed)."""
    git(repo, "checkout", "-q", "-b", side)
    write(repo, f"{side}.txt", "side\n")
    git(repo, "add", f"{side}.txt")
    git(repo, "commit", "-qm", side)
    git(repo, "checkout", "-q", "-")
    git(repo, "merge", "-q", "--no-commit", "--no-ff", side)


def test_start_goal_refuses_a_merge_in_progress_in_a_plain_and_a_linked_worktree(git_repo: Path,
                                                                                  tmp_path: Path) -> None:
    linked = tmp_path / "linked"
    git(git_repo, "worktree", "add", "-q", "-b", "other", str(linked))
    start_merge(linked, "side-a")  # the linked worktree's marker lives in its own git dir, not the main .git
    with pytest.raises(WorkspaceError, match="a git merge is in progress"):
        start_goal(linked, GOAL_ID, "x", allow_dirty=True)
    start_goal(git_repo, GOAL_ID, "x", allow_dirty=False)  # the main worktree has none
    git(git_repo, "checkout", "-q", "main")
    start_merge(git_repo, "side-b")
    with pytest.raises(WorkspaceError, match="a git merge is in progress"):
        start_goal(git_repo, "goal_9f9f9f9f9f9f", "y", allow_dirty=True)


def test_allow_dirty_snapshot_lands_on_the_goal_branch_only(git_repo: Path) -> None:
    main_tip = git(git_repo, "rev-parse", "main")
    write(git_repo, "README.md", "edited\n")
    write(git_repo, "draft.txt", "work in progress\n")
    branch = start_goal(git_repo, GOAL_ID, "Finish the draft", allow_dirty=True)
    assert git(git_repo, "rev-parse", "main") == main_tip
    assert git(git_repo, "show", "main:README.md") == "sample"
    assert branch.base_commit == main_tip
    assert branch.snapshot_commit == git(git_repo, "rev-parse", branch.name)
    assert git(git_repo, "log", "-1", "--format=%s", branch.name) == SNAPSHOT_SUBJECT
    assert git(git_repo, "rev-parse", f"{branch.name}^") == main_tip
    assert git(git_repo, "show", f"{branch.name}:draft.txt") == "work in progress"
    assert git(git_repo, "status", "--porcelain") == ""


def test_commits_use_the_goalkeeper_identity_only_where_the_repository_has_none(
        git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    git(git_repo, "config", "--unset", "user.name")
    write(git_repo, "README.md", "edited\n")
    branch = start_goal(git_repo, GOAL_ID, "x", allow_dirty=True)
    assert git(git_repo, "log", "-1", "--format=%an <%ae>", branch.name) == "goalkeeper <test@example.com>"


# checkpoints


def test_checkpoint_commit_carries_goal_id_turn_and_checks_trailers(git_repo: Path, goal: GoalBranch) -> None:
    write(git_repo, "src/app.py", "print('hi')\n")
    result = checkpoint(git_repo, goal, GOAL_ID, 3, 1, 2, "Add the app\n\nlonger notes", (), ())
    assert result.commit == git(git_repo, "rev-parse", "HEAD")
    assert result.files == ["src/app.py"] and result.violations == []
    assert git(git_repo, "log", "-1", "--format=%s") == f"goal {GOAL_ID} turn 3: Add the app"
    trailers = git(git_repo, "log", "-1", "--format=%(trailers:only,unfold)")
    assert trailers.splitlines() == [f"Goal-Id: {GOAL_ID}", "Turn: 3", "Checks: 1/2"]
    assert git(git_repo, "status", "--porcelain") == ""


def test_checkpoint_subject_keeps_72_chars_of_the_first_line(git_repo: Path, goal: GoalBranch) -> None:
    write(git_repo, "a.txt", "a\n")
    checkpoint(git_repo, goal, GOAL_ID, 1, 0, 0, "x" * 100, (), ())
    assert git(git_repo, "log", "-1", "--format=%s") == f"goal {GOAL_ID} turn 1: {'x' * 72}"


def test_turn_without_changes_makes_no_commit(git_repo: Path, goal: GoalBranch) -> None:
    head = git(git_repo, "rev-parse", "HEAD")
    result = checkpoint(git_repo, goal, GOAL_ID, 1, 0, 2, "looked around", (), ())
    assert result.commit is None and result.files == []
    assert git(git_repo, "rev-parse", "HEAD") == head


def test_checkpoint_commits_deletions_and_staged_changes(git_repo: Path, goal: GoalBranch) -> None:
    (git_repo / "README.md").unlink()
    write(git_repo, "staged.txt", "staged\n")
    git(git_repo, "add", "staged.txt")
    result = checkpoint(git_repo, goal, GOAL_ID, 1, 0, 2, "tidy", (), ())
    assert sorted(result.files) == ["README.md", "staged.txt"]
    assert git(git_repo, "ls-tree", "--name-only", "HEAD") == "staged.txt"


def test_protected_changes_are_reverted_and_reported_and_the_rest_committed(git_repo: Path) -> None:
    write(git_repo, "tests/test_app.py", "assert app() == 1\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "tests")
    branch = start_goal(git_repo, GOAL_ID, "x", allow_dirty=False)
    write(git_repo, "tests/test_app.py", "pass\n")
    write(git_repo, "tests/test_new.py", "pass\n")
    write(git_repo, "src/app.py", "def app(): return 1\n")
    result = checkpoint(git_repo, branch, GOAL_ID, 1, 1, 1, "cheat a little", ("tests/",), ())
    assert sorted((v.path, v.rule, v.glob) for v in result.violations) == [
        ("tests/test_app.py", "protect", "tests/"), ("tests/test_new.py", "protect", "tests/")]
    assert "protected" in result.violations[0].describe()
    assert result.files == ["src/app.py"]
    assert (git_repo / "tests/test_app.py").read_text() == "assert app() == 1\n"
    assert not (git_repo / "tests/test_new.py").exists()
    assert git(git_repo, "show", "--name-only", "--format=", "HEAD") == "src/app.py"
    assert git(git_repo, "status", "--porcelain") == ""


def test_a_protected_deletion_and_a_staged_new_file_are_reverted_too(git_repo: Path, goal: GoalBranch) -> None:
    (git_repo / "README.md").unlink()
    write(git_repo, "locked/new.txt", "x\n")
    git(git_repo, "add", "-A")
    result = checkpoint(git_repo, goal, GOAL_ID, 1, 0, 0, "x", ("README.md", "locked/**"), ())
    assert {v.path for v in result.violations} == {"README.md", "locked/new.txt"}
    assert result.commit is None
    assert (git_repo / "README.md").read_text() == "sample\n"
    assert not (git_repo / "locked/new.txt").exists()
    assert git(git_repo, "status", "--porcelain") == ""


def test_a_protected_file_turned_into_a_folder_is_restored(git_repo: Path, goal: GoalBranch) -> None:
    (git_repo / "README.md").unlink()
    write(git_repo, "README.md/inside.txt", "x\n")
    result = checkpoint(git_repo, goal, GOAL_ID, 1, 0, 0, "x", ("README.md",), ())
    assert {v.path for v in result.violations} == {"README.md", "README.md/inside.txt"}
    assert (git_repo / "README.md").read_text() == "sample\n"
    assert git(git_repo, "status", "--porcelain") == ""


def test_changes_outside_the_allowed_paths_are_reverted(git_repo: Path, goal: GoalBranch) -> None:
    write(git_repo, "README.md", "rewritten\n")
    write(git_repo, "src/app.py", "ok\n")
    result = checkpoint(git_repo, goal, GOAL_ID, 1, 0, 1, "x", (), ("src/**",))
    assert [(v.path, v.rule, v.glob) for v in result.violations] == [("README.md", "paths", "src/**")]
    assert "outside the allowed paths" in result.violations[0].describe()
    assert (git_repo / "README.md").read_text() == "sample\n"
    assert result.files == ["src/app.py"]


def test_checkpoint_puts_head_back_when_it_is_on_another_branch(git_repo: Path, goal: GoalBranch) -> None:
    git(git_repo, "checkout", "-q", "main")
    main_tip = git(git_repo, "rev-parse", "main")
    write(git_repo, "a.txt", "a\n")
    result = checkpoint(git_repo, goal, GOAL_ID, 1, 0, 0, "x", (), ())
    assert result.left_branch == "main" and result.files == ["a.txt"]
    assert git(git_repo, "rev-parse", "main") == main_tip
    assert git(git_repo, "rev-parse", goal.name) == result.commit
    assert (git_repo / "a.txt").exists()


# diff


def test_diff_of_one_turn_and_of_the_whole_goal(git_repo: Path, goal: GoalBranch) -> None:
    turn(git_repo, goal, 1, {"a.txt": "alpha\n"})
    turn(git_repo, goal, 2, {"b.txt": "beta\n"})
    write(git_repo, "c.txt", "uncommitted\n")
    first = diff(git_repo, goal, turn=1)
    assert "+alpha" in first and "beta" not in first
    whole = diff(git_repo, goal)
    assert all(text in whole for text in ("+alpha", "+beta", "+uncommitted"))
    with pytest.raises(WorkspaceError, match="turns with one: 1, 2"):
        diff(git_repo, goal, turn=7)


def test_whole_goal_diff_leaves_out_the_users_snapshot(git_repo: Path) -> None:
    write(git_repo, "draft.txt", "the user's\n")
    branch = start_goal(git_repo, GOAL_ID, "x", allow_dirty=True)
    turn(git_repo, branch, 1, {"a.txt": "the goal's\n"})
    whole = diff(git_repo, branch)
    assert "+the goal's" in whole and "the user's" not in whole


def test_checkpoint_turns_maps_turns_to_their_commits(git_repo: Path, goal: GoalBranch) -> None:
    one = turn(git_repo, goal, 1, {"a.txt": "1\n"})
    checkpoint(git_repo, goal, GOAL_ID, 2, 0, 2, "nothing", (), ())
    three = turn(git_repo, goal, 3, {"a.txt": "3\n"})
    assert checkpoint_turns(git_repo, goal) == {1: one, 3: three}


# rollback


def test_rollback_restores_a_turns_tree_as_a_new_commit_and_keeps_history(git_repo: Path, goal: GoalBranch) -> None:
    one = turn(git_repo, goal, 1, {"a.txt": "first\n"})
    two = turn(git_repo, goal, 2, {"a.txt": "second\n", "later/b.txt": "added later\n"})
    commit = rollback(git_repo, goal, 1, best_turn=None, last_green_turn=None)
    assert commit == git(git_repo, "rev-parse", "HEAD") and commit not in (one, two)
    assert git(git_repo, "rev-parse", "HEAD^{tree}") == git(git_repo, "rev-parse", f"{one}^{{tree}}")
    assert git(git_repo, "rev-parse", "HEAD^") == two
    assert git(git_repo, "log", "-1", "--format=%s") == "goalkeeper: roll back to turn 1"
    trailers = git(git_repo, "log", "-1", "--format=%(trailers:only,unfold)")
    assert trailers.splitlines() == [f"Goal-Id: {GOAL_ID}", "Rolled-Back-To: 1"]
    assert (git_repo / "a.txt").read_text() == "first\n"
    assert not (git_repo / "later").exists()
    assert git(git_repo, "status", "--porcelain") == ""
    assert checkpoint_turns(git_repo, goal) == {1: one, 2: two}


def test_rollback_to_best_and_to_last_green(git_repo: Path, goal: GoalBranch) -> None:
    one = turn(git_repo, goal, 1, {"a.txt": "1\n"}, passing=2)
    two = turn(git_repo, goal, 2, {"a.txt": "2\n"}, passing=1)
    turn(git_repo, goal, 3, {"a.txt": "3\n"}, passing=0)
    rollback(git_repo, goal, "last-green", best_turn=2, last_green_turn=1)
    assert git(git_repo, "rev-parse", "HEAD^{tree}") == git(git_repo, "rev-parse", f"{one}^{{tree}}")
    rollback(git_repo, goal, "best", best_turn=2, last_green_turn=1)
    assert git(git_repo, "rev-parse", "HEAD^{tree}") == git(git_repo, "rev-parse", f"{two}^{{tree}}")
    with pytest.raises(WorkspaceError, match="no green checkpoint"):
        rollback(git_repo, goal, "last-green", best_turn=2, last_green_turn=None)


def test_rollback_to_an_unknown_turn_names_the_turns_that_exist(git_repo: Path, goal: GoalBranch) -> None:
    turn(git_repo, goal, 1, {"a.txt": "1\n"})
    turn(git_repo, goal, 4, {"a.txt": "4\n"})
    with pytest.raises(WorkspaceError, match=r"turn 2 has no checkpoint .*turns with one: 1, 4"):
        rollback(git_repo, goal, 2, best_turn=None, last_green_turn=None)


def test_rollback_refuses_to_lose_uncommitted_changes(git_repo: Path, goal: GoalBranch) -> None:
    turn(git_repo, goal, 1, {"a.txt": "1\n"})
    write(git_repo, "wip.txt", "not yet checkpointed\n")
    with pytest.raises(WorkspaceError, match="would lose"):
        rollback(git_repo, goal, 1, best_turn=None, last_green_turn=None)
    assert (git_repo / "wip.txt").exists()


def test_rollback_to_the_current_tree_commits_nothing(git_repo: Path, goal: GoalBranch) -> None:
    latest = turn(git_repo, goal, 1, {"a.txt": "1\n"})
    assert rollback(git_repo, goal, 1, best_turn=None, last_green_turn=None) == latest


# resume


def test_resume_checks_out_the_goal_branch(git_repo: Path, goal: GoalBranch) -> None:
    git(git_repo, "checkout", "-q", "main")
    result = resume(git_repo, goal, None, goal_id=GOAL_ID)
    assert result.recovered_commit is None and result.files == []
    assert current_branch(git_repo) == goal.name


def test_resume_refuses_to_switch_away_from_another_branchs_changes(git_repo: Path, goal: GoalBranch) -> None:
    git(git_repo, "checkout", "-q", "main")
    write(git_repo, "README.md", "the user's edit\n")
    with pytest.raises(WorkspaceError, match="will not switch"):
        resume(git_repo, goal, 3, goal_id=GOAL_ID)
    assert current_branch(git_repo) == "main"
    assert (git_repo / "README.md").read_text() == "the user's edit\n"


def test_resume_refuses_foreign_changes_on_the_goal_branch(git_repo: Path, goal: GoalBranch) -> None:
    turn(git_repo, goal, 1, {"a.txt": "1\n"})
    head = git(git_repo, "rev-parse", "HEAD")
    write(git_repo, "a.txt", "someone else\n")
    with pytest.raises(WorkspaceError, match="no interrupted turn") as caught:
        resume(git_repo, goal, None, goal_id=GOAL_ID)
    assert "a.txt" in caught.value.message
    assert caught.value.hint is not None and "stash" in caught.value.hint
    assert git(git_repo, "rev-parse", "HEAD") == head


def test_resume_after_an_interrupted_turn_commits_a_recovery_checkpoint(git_repo: Path, goal: GoalBranch) -> None:
    turn(git_repo, goal, 1, {"a.txt": "1\n"})
    write(git_repo, "a.txt", "half-way through turn 2\n")
    write(git_repo, "tests/test_a.py", "pass\n")
    result = resume(git_repo, goal, 2, goal_id=GOAL_ID, protect=("tests/**",))
    assert result.recovered_commit == git(git_repo, "rev-parse", "HEAD")
    assert result.files == ["a.txt"]
    assert [v.path for v in result.violations] == ["tests/test_a.py"]
    assert git(git_repo, "log", "-1", "--format=%s") == RECOVERY_SUBJECT
    trailers = git(git_repo, "log", "-1", "--format=%(trailers:only,unfold)")
    assert trailers.splitlines() == [f"Goal-Id: {GOAL_ID}", "Turn: 2", "Checks: ?/?"]
    assert checkpoint_turns(git_repo, goal)[2] == result.recovered_commit


def test_resume_recovers_a_lock_left_by_a_killed_git_command(git_repo: Path, goal: GoalBranch) -> None:
    write(git_repo, "a.txt", "interrupted\n")
    (git_repo / ".git" / "index.lock").write_text("")  # no process holds it (see test_containment_git.py)
    result = resume(git_repo, goal, 1, goal_id=GOAL_ID)
    assert result.files == ["a.txt"] and not (git_repo / ".git" / "index.lock").exists()


def test_nothing_is_ever_pushed(git_repo: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(git_repo, "remote", "add", "origin", str(remote))
    git(git_repo, "push", "-q", "origin", "main")
    before = git(remote, "for-each-ref")
    write(git_repo, "draft.txt", "x\n")
    branch = start_goal(git_repo, GOAL_ID, "x", allow_dirty=True)
    turn(git_repo, branch, 1, {"a.txt": "1\n"})
    turn(git_repo, branch, 2, {"a.txt": "2\n"})
    rollback(git_repo, branch, 1, best_turn=None, last_green_turn=None)
    write(git_repo, "a.txt", "interrupted\n")
    resume(git_repo, branch, 3, goal_id=GOAL_ID)
    assert git(remote, "for-each-ref") == before
    assert "goal/" not in git(git_repo, "ls-remote", "origin")
    heads = git(git_repo, "for-each-ref", "--format=%(refname)", "refs/heads").splitlines()
    assert heads == [f"refs/heads/{branch.name}", "refs/heads/main"]


# ---------------------------------------------------------------- git processes per checkpoint


def traced_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A global config that makes every git process (those git starts itself included) log its start."""
    log = tmp_path / "trace2.json"
    config = tmp_path / "global.gitconfig"
    config.write_text(f"[trace2]\n\teventTarget = {log}\n\teventBrief = true\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    return log


def started(log: Path) -> list[str]:
    """The argv of every git process logged since the last call."""
    if not log.exists():
        return []
    argv = [" ".join(json.loads(line)["argv"][1:]) for line in log.read_text().splitlines()
            if json.loads(line).get("event") == "start"]
    log.unlink()
    return argv


@pytest.mark.parametrize("layout", ["repository", "linked worktree"])
def test_a_checkpoint_spawns_at_most_three_git_processes(layout: str, git_repo: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Stage, commit and the status before them; the new commit's id is read from the branch's ref file, in a
    linked worktree (a batch goal's) from the common git dir."""
    if layout == "linked worktree":
        git(git_repo, "worktree", "add", "-q", "--detach", str(tmp_path / "linked"), "HEAD")
        git_repo = tmp_path / "linked"
    log = traced_git(tmp_path, monkeypatch)
    branch = start_goal(git_repo, GOAL_ID, "Make the tests pass", allow_dirty=False)
    assert turn(git_repo, branch, 1, {"a.py": "a = 1\n"}) is not None  # reads the config once
    for number in (2, 3):
        started(log)
        if number == 2:
            (git_repo / "README.md").unlink()  # a deleted, a changed and a new file in one turn
        write(git_repo, f"pkg/new{number}.py", "x = 1\n")
        write(git_repo, "a.py", f"a = {number}\n")
        assert turn(git_repo, branch, number, {}) is not None
        spawned = started(log)
        assert len(spawned) <= 3, spawned
        assert not any("maintenance" in argv or argv.startswith("gc") for argv in spawned), spawned
    assert git(git_repo, "log", "-1", "--format=%(trailers:key=Turn,valueonly)").strip() == "3"
    assert git(git_repo, "status", "--porcelain") == ""


def test_a_config_written_a_moment_ago_is_cached_and_any_change_read_again(git_repo: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The config cache is keyed on the files' content: a repository made (or HEAD moved) a moment ago is read
    once, and a change within the same instant, one the stat could miss, is read again."""
    log = traced_git(tmp_path, monkeypatch)
    probe(git_repo, "rev-parse", "HEAD")
    started(log)
    for _ in range(3):
        probe(git_repo, "rev-parse", "HEAD")
    assert not [argv for argv in started(log) if argv.startswith("config --list")]
    git(git_repo, "config", "core.abbrev", "9")  # the config changes: read again once
    probe(git_repo, "rev-parse", "HEAD")
    probe(git_repo, "rev-parse", "HEAD")
    assert len([argv for argv in started(log) if argv.startswith("config --list")]) == 1
    git(git_repo, "checkout", "-q", "-b", "other")  # no `includeIf onbranch:`: a new branch changes nothing
    probe(git_repo, "rev-parse", "HEAD")
    assert not [argv for argv in started(log) if argv.startswith("config --list")]


def test_with_an_onbranch_include_a_branch_switch_reads_the_config_again(git_repo: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """An `includeIf "onbranch:..."` makes HEAD part of the config: the driver its file names once the branch
    matches is blanked, though the config was cached on another branch."""
    log = traced_git(tmp_path, monkeypatch)
    included = tmp_path / "on-other.gitconfig"
    included.write_text('[filter "evil"]\n\tclean = touch pwned && cat\n')
    subprocess.run(["git", "config", "includeIf.onbranch:other.path", str(included)], cwd=git_repo, check=True)
    time.sleep(1.1)  # an include written this instant is never cached (its read may be racy)
    probe(git_repo, "rev-parse", "HEAD")
    probe(git_repo, "rev-parse", "HEAD")
    started(log)
    subprocess.run(["git", "checkout", "-q", "-b", "other"], cwd=git_repo, check=True)
    (git_repo / ".gitattributes").write_text("*.txt filter=evil\n")
    (git_repo / "note.txt").write_text("x\n")
    probe(git_repo, "add", "-A")
    assert len([argv for argv in started(log) if argv.startswith("config --list")]) == 1
    assert not (git_repo / "pwned").exists()


def test_preflight_reads_head_branch_and_changes_from_one_git_status(git_repo: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """HEAD's commit and branch come from the same `git status` as the dirty check: no rev-parse, no
    symbolic-ref."""
    expected = subprocess.run(["git", "rev-parse", "HEAD"], cwd=git_repo, capture_output=True, text=True).stdout
    log = traced_git(tmp_path, monkeypatch)
    preflight(git_repo, allow_dirty=False)  # the top-level is found once and kept
    started(log)
    checked = preflight(git_repo, allow_dirty=False)
    assert (checked.head_branch, checked.head_commit, checked.dirty) == ("main", expected.strip(), [])
    assert [argv.split()[0] for argv in started(log) if not argv.startswith("config")] == ["status"]


def test_a_goal_branch_a_killed_run_made_is_taken_up(git_repo: Path) -> None:
    """Killed after `git checkout -b` (the branch made, not yet recorded), with git's index lock left behind:
    the next run takes the goal's own branch up instead of refusing it."""
    name = goal_branch_name(GOAL_ID, "Make the tests pass")
    head = git(git_repo, "rev-parse", "HEAD").strip()
    git(git_repo, "checkout", "-q", "-b", name)
    (git_repo / ".git" / "index.lock").write_bytes(b"")
    branch = start_goal(git_repo, GOAL_ID, "Make the tests pass", allow_dirty=False)
    assert (branch.name, branch.base_commit) == (name, head)
    assert current_branch(git_repo) == name and not (git_repo / ".git" / "index.lock").exists()
    git(git_repo, "checkout", "-q", "main")
    git(git_repo, "branch", "-D", name)
    git(git_repo, "branch", name)  # made, and HEAD never switched to it
    assert start_goal(git_repo, GOAL_ID, "Make the tests pass", allow_dirty=False).name == name
    assert current_branch(git_repo) == name


def test_a_goal_branch_with_work_on_it_is_still_refused(git_repo: Path) -> None:
    name = goal_branch_name(GOAL_ID, "Make the tests pass")
    git(git_repo, "branch", name)
    git(git_repo, "checkout", "-q", name)
    (git_repo / "x.txt").write_text("x\n")
    git(git_repo, "add", "x.txt")
    git(git_repo, "commit", "-qm", "work")
    git(git_repo, "checkout", "-q", "main")
    with pytest.raises(WorkspaceError, match="already exists"):
        start_goal(git_repo, GOAL_ID, "Make the tests pass", allow_dirty=False)


def test_the_environment_git_gets_follows_every_change_to_the_process_s(git_repo: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The filtered environment is kept between calls, but a variable set since is seen (a kept one passed on, a
    GIT_* one still dropped)."""
    probe(git_repo, "rev-parse", "HEAD")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Set Since")
    monkeypatch.setenv("GIT_DIR", str(git_repo / "elsewhere"))
    assert probe(git_repo, "var", "GIT_AUTHOR_IDENT").stdout.startswith("Set Since <")
    assert probe(git_repo, "rev-parse", "--git-dir").stdout.strip() == ".git"


def test_a_git_that_went_away_is_looked_up_again(git_repo: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The git found on PATH is kept; once it is gone, the next one on PATH runs."""
    tools = tmp_path / "tools"
    tools.mkdir()
    wrapper = tools / "git"
    wrapper.write_text(f"#!/bin/sh\necho wrapped >> {tmp_path / 'calls'}\nexec {shutil.which('git')} \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    assert probe(git_repo, "rev-parse", "HEAD").returncode == 0
    calls = (tmp_path / "calls").read_text().count("wrapped")
    wrapper.unlink()
    assert probe(git_repo, "rev-parse", "HEAD").returncode == 0
    assert (tmp_path / "calls").read_text().count("wrapped") == calls


def test_a_bare_repository_s_config_is_cached_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The baseline mirror is a bare repository: its config is read once as well, and again once it changes."""
    log = traced_git(tmp_path, monkeypatch)
    bare = tmp_path / "mirror.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    for _ in range(3):
        probe(bare, "rev-parse", "--is-bare-repository")
    assert len([argv for argv in started(log) if argv.startswith("config --list")]) == 1
    git(bare, "config", "filter.x.clean", "cat")
    assert probe(bare, "config", "filter.x.clean").stdout.strip() == ""  # blanked: the change was read
    assert len([argv for argv in started(log) if argv.startswith("config --list")]) == 1


def test_a_driver_planted_after_the_config_was_read_is_still_blanked(git_repo: Path, tmp_path: Path) -> None:
    """The config is read once per repository and kept while its files are unchanged: writing .git/config
    (danger-full-access) is a change, so the planted filter is blanked at the next checkpoint."""
    markers = tmp_path / "markers"
    markers.mkdir()
    branch = start_goal(git_repo, GOAL_ID, "Make the tests pass", allow_dirty=False)
    assert turn(git_repo, branch, 1, {"a.txt": "a\n"}) is not None  # the config is cached now
    git(git_repo, "config", "filter.evil.clean", f"touch {markers}/clean; cat")
    git(git_repo, "config", "filter.evil.required", "true")
    write(git_repo, ".gitattributes", "*.txt filter=evil\n")
    assert turn(git_repo, branch, 2, {"b.txt": "b\n"}) is not None
    assert turn(git_repo, branch, 3, {"c.txt": "c\n"}) is not None  # from the cache again: still blanked
    included = tmp_path / "included.cfg"
    git(git_repo, "config", "include.path", str(included))
    assert turn(git_repo, branch, 4, {"d.txt": "d\n"}) is not None
    included.write_text(f"[filter \"inc\"]\n\tclean = touch {markers}/included; cat\n")  # an include made later
    write(git_repo, ".gitattributes", "*.txt filter=inc\n")
    assert turn(git_repo, branch, 5, {"e.txt": "e\n"}) is not None
    assert sorted(path.name for path in markers.iterdir()) == []


def test_a_driver_planted_in_a_linked_worktree_s_config_is_still_blanked(git_repo: Path, tmp_path: Path) -> None:
    """A batch goal runs in a linked worktree, whose config is cached through its `.git` file and `commondir`:
    a driver planted later, in the shared config or in the worktree's own config.worktree, is blanked."""
    markers = tmp_path / "markers"
    markers.mkdir()
    linked = tmp_path / "linked"
    git(git_repo, "worktree", "add", "-q", "--detach", str(linked), "HEAD")
    branch = start_goal(linked, GOAL_ID, "Make the tests pass", allow_dirty=False)
    assert turn(linked, branch, 1, {"a.txt": "a\n"}) is not None  # the config is cached now
    git(linked, "config", "filter.evil.clean", f"touch {markers}/common; cat")
    write(linked, ".gitattributes", "*.txt filter=evil\n")
    assert turn(linked, branch, 2, {"b.txt": "b\n"}) is not None
    git(linked, "config", "extensions.worktreeConfig", "true")
    git(linked, "config", "--worktree", "filter.own.clean", f"touch {markers}/own; cat")
    write(linked, ".gitattributes", "*.txt filter=own\n")
    assert turn(linked, branch, 3, {"c.txt": "c\n"}) is not None
    assert sorted(path.name for path in markers.iterdir()) == []


# the tree hash


def scratch_tree(repo: Path) -> str:
    """What `git add -A && git write-tree` makes of the working tree, in a scratch index."""
    index = repo.parent / "scratch-index"
    shutil.copyfile(repo / ".git" / "index", index)
    environment = {**os.environ, "GIT_INDEX_FILE": str(index)}
    subprocess.run(["git", "add", "-A"], cwd=repo, env=environment, check=True)
    return subprocess.run(["git", "write-tree"], cwd=repo, env=environment, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_a_clean_tree_hashes_to_its_commits_tree_loose_or_packed_and_a_changed_one_is_staged(git_repo: Path) -> None:
    """A clean tree's hash is HEAD's tree (read from the loose commit, or from git once it is packed); any
    change, an untracked file included, is hashed from the working tree itself."""
    assert tree_hash(git_repo) == git(git_repo, "rev-parse", "HEAD^{tree}")
    write(git_repo, "src/new.py", "x = 1\n")
    changed = tree_hash(git_repo)
    assert changed == scratch_tree(git_repo) != git(git_repo, "rev-parse", "HEAD^{tree}")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "second")
    git(git_repo, "gc", "-q", "--prune=now")  # the new commit is packed: no loose object to read
    assert not list((git_repo / ".git" / "objects").glob("??/*"))
    assert tree_hash(git_repo) == changed == git(git_repo, "rev-parse", "HEAD^{tree}")


def test_a_loose_object_is_read_only_when_its_content_hashes_to_its_name(tmp_path: Path, git_repo: Path) -> None:
    """A file under objects/ that is not the commit it is named after (planted or damaged) is not believed."""
    commit = git(git_repo, "rev-parse", "HEAD")
    common = git_repo / ".git"
    assert _loose_commit_tree(common, commit) == git(git_repo, "rev-parse", "HEAD^{tree}")
    forged = tmp_path / "forged"
    lying = zlib.compress(b"commit 52\0tree " + b"0" * 40 + b"\nauthor x <x> 0 +0000\n")
    (forged / "objects" / commit[:2]).mkdir(parents=True)
    (forged / "objects" / commit[:2] / commit[2:]).write_bytes(lying)
    assert _loose_commit_tree(forged, commit) is None
    (forged / "objects" / commit[:2] / commit[2:]).write_bytes(b"not zlib")
    assert _loose_commit_tree(forged, commit) is None
