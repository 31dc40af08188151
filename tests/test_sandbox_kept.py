"""Searches kept between sandboxed commands: what one command (or anyone) makes is covered in the next, and a
command's processes are all gone when it returns. Real files, a real bwrap, real processes."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pytest

from goalkeeper.sandbox import limits, scan
from goalkeeper.sandbox.bwrap import GIT_PROTECT, warm_layout
from goalkeeper.sandbox.policy import DEFAULT_SECRETS, SandboxMode
from goalkeeper.sandbox.scan import find
from test_sandbox import SECRET, pids_running, policy, run


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_app.py").write_text("assert True\n")
    (root / "app.py").write_text("print('app')\n")
    return root.resolve()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    root = tmp_path / "home"
    (root / "later").mkdir(parents=True)
    return root.resolve()


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(home)}


def test_a_git_folder_made_by_one_command_is_read_only_in_the_next(workspace: Path, env: dict[str, str]) -> None:
    sandbox = policy(workspace)
    assert run(sandbox, "mkdir -p vendor/lib/.git/hooks && echo made", env).exit_code == 0

    result = run(sandbox, "echo 'rm -rf ~' > vendor/lib/.git/hooks/pre-commit", env)

    assert result.exit_code != 0
    assert "Read-only file system" in result.output
    assert not (workspace / "vendor/lib/.git/hooks/pre-commit").exists()


def test_a_protected_file_made_by_one_command_cannot_be_changed_by_the_next(
    workspace: Path, env: dict[str, str]
) -> None:
    sandbox = policy(workspace, protect=("conftest.py",))
    assert run(sandbox, "mkdir -p pkg && echo 'x = 1' > pkg/conftest.py", env).exit_code == 0

    result = run(sandbox, "echo 'import os' >> pkg/conftest.py", env)

    assert result.exit_code != 0
    assert (workspace / "pkg/conftest.py").read_text() == "x = 1\n"


def test_a_folder_of_secrets_moved_in_between_commands_reads_as_nothing(
    workspace: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    sandbox = policy(workspace)
    assert run(sandbox, "true", env).exit_code == 0
    staged = tmp_path / "staged"
    (staged / "deep").mkdir(parents=True)
    (staged / "deep" / ".env.prod").write_text(f"TOKEN={SECRET}\n")
    staged.rename(workspace / "staged")  # one rename: the files inside make no event of their own

    result = run(sandbox, "cat staged/deep/.env.prod; echo done", env)

    assert "done" in result.output
    assert SECRET not in result.output


def test_a_secret_link_whose_target_appears_later_reads_as_nothing(
    workspace: Path, home: Path, env: dict[str, str]
) -> None:
    (workspace / ".env.shared").symlink_to(home / "later" / "token")  # leads nowhere yet
    sandbox = policy(workspace)
    assert run(sandbox, "true", env).exit_code == 0
    (home / "later" / "token").write_text(SECRET)  # outside the workspace: no event where it is watched

    result = run(sandbox, "cat .env.shared; echo done", env)

    assert "done" in result.output
    assert SECRET not in result.output


def test_a_folder_that_stops_being_a_virtualenv_is_searched_again(workspace: Path, env: dict[str, str]) -> None:
    venv = workspace / "env"
    (venv / "lib").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "lib" / ".env").write_text(f"TOKEN={SECRET}\n")  # a dependency's fixture: a virtualenv is not searched
    sandbox = policy(workspace)
    assert SECRET in run(sandbox, "cat env/lib/.env", env).output

    (venv / "pyvenv.cfg").unlink()

    assert SECRET not in run(sandbox, "cat env/lib/.env; echo done", env).output


def test_a_workspace_replaced_by_another_folder_is_searched_again(
    workspace: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    sandbox = policy(workspace)
    assert run(sandbox, "true", env).exit_code == 0
    workspace.rename(tmp_path / "before")
    workspace.mkdir()
    (workspace / ".env").write_text(f"TOKEN={SECRET}\n")

    result = run(sandbox, "cat .env; echo done", env)

    assert "done" in result.output
    assert SECRET not in result.output


def test_a_secret_made_after_the_layout_was_warmed_is_still_masked(workspace: Path, home: Path,
                                                                    env: dict[str, str]) -> None:
    """prepare warms the layout scan while the goal branch and the mirror are made: what appears after it (a
    check's own .env, say) is masked in the command that follows, as after any earlier command."""
    sandbox = policy(workspace)
    warm_layout(sandbox, home)
    (workspace / ".env").write_text(f"TOKEN={SECRET}\n")
    result = run(sandbox, "cat .env; echo done", env)

    assert "done" in result.output
    assert SECRET not in result.output


def test_a_search_is_kept_while_only_contents_and_uncovered_names_change(workspace: Path) -> None:
    protect = ("tests/**", *GIT_PROTECT)
    first = find(workspace, DEFAULT_SECRETS, protect, None)
    (workspace / "app.py").write_text("print('changed')\n")
    (workspace / "notes.md").write_text("new\n")
    (workspace / "tests" / "test_more.py").write_text("assert True\n")  # the folder is read-only whole already

    assert find(workspace, DEFAULT_SECRETS, protect, None) is first

    (workspace / "src").mkdir()
    (workspace / "src" / ".env.local").write_text("TOKEN=x\n")
    later = find(workspace, DEFAULT_SECRETS, protect, None)

    assert ("secret", workspace / "src" / ".env.local", False) in later
    assert find(workspace, DEFAULT_SECRETS, protect, None) is later


def test_a_process_that_leaves_the_group_is_killed_and_its_cgroup_removed(workspace: Path, env: dict[str, str]) -> None:
    found = limits.cgroup_parent()
    if found is None:
        pytest.skip(limits.describe())
    marker = f"sleeper-{uuid.uuid4().hex[:12]}"
    # setsid: a new session, so killing the command's process group misses it; only its cgroup holds it.
    command = f"setsid bash -c 'exec -a {marker} sleep 300' < /dev/null > /dev/null 2>&1 & echo started"

    result = run(policy(workspace, "danger-full-access"), command, env)

    assert "started" in result.output
    assert not pids_running(marker)
    assert not list(found[1].glob(f"{limits.CGROUP_PREFIX}{os.getpid()}-*"))


def test_a_tree_with_more_folders_than_the_watch_cap_is_searched_before_every_command(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan, "MAX_WATCHED_FOLDERS", 2)
    for name in ("a", "b", "c"):
        (workspace / name).mkdir()
    first = find(workspace, DEFAULT_SECRETS, GIT_PROTECT, None)
    (workspace / "c" / ".env").write_text("TOKEN=x\n")

    later = find(workspace, DEFAULT_SECRETS, GIT_PROTECT, None)

    assert ("secret", workspace / "c" / ".env", False) in later
    assert find(workspace, DEFAULT_SECRETS, GIT_PROTECT, None) is not later  # never kept
    assert first == ()


@pytest.mark.parametrize("mode", ["workspace-write", "danger-full-access"])
def test_every_process_of_a_command_runs_in_its_own_pids_cgroup(
    workspace: Path, env: dict[str, str], mode: SandboxMode
) -> None:
    found = limits.cgroup_parent()
    if found is None:
        pytest.skip(limits.describe())
    # The command's shell, and a child of a child of it.
    result = run(policy(workspace, mode), "cat /proc/self/cgroup; bash -c 'cat /proc/self/cgroup'", env)

    hierarchy = ":pids:" if found[0] == "cgroup-v1" else "0::"
    lines = [line for line in result.output.splitlines() if hierarchy in line]
    assert len(lines) == 2
    assert all(f"/{limits.CGROUP_PREFIX}{os.getpid()}-" in line for line in lines)


def test_many_workspaces_searched_at_once_each_find_their_own_and_the_watches_stay_bounded(tmp_path: Path) -> None:
    """A batch's goals search their own worktrees at the same moment: no search is answered with another's,
    a secret made between two rounds is found in the next, and one inotify instance serves them all (the user
    has 128 in all)."""
    from concurrent.futures import ThreadPoolExecutor

    roots = []
    for number in range(12):
        root = tmp_path / f"w{number}"
        (root / "sub").mkdir(parents=True)
        (root / "sub" / f"only-{number}.txt").write_text("x\n")
        roots.append(root.resolve())

    def secrets_of(root: Path) -> set[Path]:
        return {path for kind, path, _ in find(root, DEFAULT_SECRETS, GIT_PROTECT, None) if kind == "secret"}

    with ThreadPoolExecutor(max_workers=12) as pool:
        for round_number in range(3):
            for root in roots[round_number::3]:
                (root / "sub" / f".env.{round_number}").write_text("TOKEN=x\n")
            found = list(pool.map(secrets_of, roots * 2))
            for root, secrets in zip(roots * 2, found, strict=True):
                made = {root / "sub" / f".env.{n}" for n in range(round_number + 1) if root in roots[n::3]}
                assert secrets == made

    assert len(scan._kept) <= scan._KEPT and len(inotify_instances()) <= 1


def inotify_instances() -> list[str]:
    """This process's open inotify instances (the listing's own descriptor is gone by the time it is read)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                found.append(fd)
    return found


def test_two_searches_sharing_a_folder_both_see_a_change_the_first_one_read(workspace: Path) -> None:
    """The kept searches share one inotify queue: a change read while answering one search still reaches the
    other search of the same folder."""
    tests_protected = find(workspace, DEFAULT_SECRETS, ("tests/**", *GIT_PROTECT), None)
    app_protected = find(workspace, DEFAULT_SECRETS, ("app.py", *GIT_PROTECT), None)
    (workspace / ".env").write_text("TOKEN=x\n")

    secret = ("secret", workspace / ".env", False)
    assert secret in find(workspace, DEFAULT_SECRETS, ("tests/**", *GIT_PROTECT), None)
    assert secret in find(workspace, DEFAULT_SECRETS, ("app.py", *GIT_PROTECT), None)
    assert secret not in tests_protected and secret not in app_protected
    assert len(inotify_instances()) <= 1


def test_a_command_that_floods_the_shared_watch_cannot_hide_a_secret_made_in_another_workspace(
        tmp_path: Path, env: dict[str, str]) -> None:
    """Hostile: one batch goal's command makes more entries than the kernel queues, so the shared queue overflows
    and drops changes, a sibling goal's included. Every kept search is then searched afresh: a `.env` made
    meanwhile in the sibling's worktree is still masked from the sibling's next command."""
    queued = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if queued > 200_000:
        pytest.skip(f"this kernel queues {queued} events: flooding it takes too long for a test")
    flooder, sibling = policy((tmp_path / "flooder").resolve()), policy((tmp_path / "sibling").resolve())
    for each in (flooder, sibling):
        (each.workspace / "src").mkdir(parents=True)
        assert run(each, "true", env).exit_code == 0  # each worktree's search kept
    flood = run(flooder, f"cd src && seq {queued + 100} | xargs touch && echo flooded", env, timeout_s=120)
    assert "flooded" in flood.output
    (sibling.workspace / "src" / ".env").write_text(f"TOKEN={SECRET}\n")

    result = run(sibling, "cat src/.env; echo done", env)

    assert "done" in result.output and SECRET not in result.output


def test_a_forked_child_searches_afresh_and_leaves_its_parent_every_change(workspace: Path) -> None:
    """The shared queue is inherited across fork(): the child must not read (and so steal) its parent's
    changes, and must not trust the searches it inherited."""
    import multiprocessing

    protect = ("tests/**", *GIT_PROTECT)
    secret = ("secret", workspace / ".env", False)
    assert secret not in find(workspace, DEFAULT_SECRETS, protect, None)
    (workspace / ".env").write_text("TOKEN=x\n")
    results = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(
        target=lambda: results.put(secret in find(workspace, DEFAULT_SECRETS, protect, None)))
    child.start()
    assert results.get(timeout=30) is True
    child.join(timeout=30)
    assert secret in find(workspace, DEFAULT_SECRETS, protect, None)
