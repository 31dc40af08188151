"""The harness owns git: the sandbox cannot write `.git`, and nothing planted in `.git` (or inherited from the
environment) makes the harness's own git run a program. Every assertion is made from outside: marker files
outside the workspace, `git for-each-ref`, the reflogs."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.errors import WorkspaceError
from goalkeeper.events import payload_of
from goalkeeper.sandbox.bwrap import run_sandboxed
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.sandbox.process import CommandResult
from goalkeeper.store import Store
from goalkeeper.verify.pins import baseline_content
from goalkeeper.workspace.checkpoints import checkpoint, diff, resume, rollback
from goalkeeper.workspace.git import GoalBranch, changes, recover_stale_locks, start_goal
from goalkeeper.workspace.git import git as hardened_git
from goalkeeper.workspace.goal import commit_turn
from goalkeeper.workspace.tree import tree_hash
from helpers import git
from scenario import FIX_PATCH, TESTS, call, complete, events, new_goal, run, sample_repo, scripted, shell, step

GOAL_ID = "goal_1a2b3c4d5e6f"

#: Every hook git knows (githooks(5)); --no-verify skips only two of them.
HOOKS = ("applypatch-msg", "pre-applypatch", "post-applypatch", "pre-commit", "pre-merge-commit",
         "prepare-commit-msg", "commit-msg", "post-commit", "pre-rebase", "post-checkout", "post-merge",
         "pre-push", "pre-receive", "update", "proc-receive", "post-receive", "post-update",
         "reference-transaction", "push-to-checkout", "pre-auto-gc", "post-rewrite", "sendemail-validate",
         "fsmonitor-watchman", "post-index-change")


def marker_script(path: Path, markers: Path, name: str) -> Path:
    """An executable that leaves `markers/name` behind when anything runs it (and passes stdin through)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\ntouch {markers / name}\ncat\n")
    path.chmod(0o755)
    return path


def plant_everything(repo: Path, markers: Path) -> None:
    """Write every program-running thing into `.git` directly, as danger-full-access could."""
    hooks = repo / ".git" / "hooks"
    for hook in HOOKS:
        marker_script(hooks / hook, markers, f"hook-{hook}")
    evil = markers.parent / "evil"
    other_hooks = evil / "hooks"
    for hook in HOOKS:
        marker_script(other_hooks / hook, markers, f"hookspath-{hook}")
    included = evil / "included.cfg"
    included.write_text(f"[filter \"inc\"]\n\tclean = touch {markers}/include-clean; cat\n"
                        f"\tsmudge = touch {markers}/include-smudge; cat\n")
    settings = {
        "core.hooksPath": str(other_hooks),
        "core.fsmonitor": str(marker_script(evil / "fsmonitor", markers, "fsmonitor")),
        "core.pager": f"touch {markers}/pager; cat",
        "core.editor": f"touch {markers}/editor",
        "core.askPass": str(marker_script(evil / "askpass", markers, "askpass")),
        "core.sshCommand": f"touch {markers}/ssh",
        "diff.external": str(marker_script(evil / "extdiff", markers, "diff-external")),
        "filter.evil.clean": f"touch {markers}/filter-clean; cat",
        "filter.evil.smudge": f"touch {markers}/filter-smudge; cat",
        "filter.evil.required": "true",
        "filter.proc.process": f"touch {markers}/filter-process",
        "diff.evil.textconv": f"touch {markers}/textconv; cat",
        "diff.evil.command": f"touch {markers}/diff-command",
        "merge.evil.driver": f"touch {markers}/merge-driver",
        "commit.gpgSign": "true",
        "gpg.program": str(marker_script(evil / "gpg", markers, "gpg")),
        "log.showSignature": "true",
        "include.path": str(included),
        "gc.auto": "1",
    }
    for key, value in settings.items():
        git(repo, "config", key, value)
    git(repo, "config", f"includeIf.gitdir:{repo}/.git.path", str(included))
    (repo / ".gitattributes").write_text("*.txt filter=evil diff=evil merge=evil\n*.md filter=inc\n"
                                         "*.py filter=proc\n")


def assert_nothing_ran(markers: Path) -> None:
    ran = sorted(path.name for path in markers.iterdir())
    assert ran == [], f"the harness's git ran planted programs: {ran}"


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    folder = tmp_path / "markers"
    folder.mkdir()
    return folder


def test_programs_planted_in_dot_git_never_run_from_the_harness_s_git(git_repo: Path, markers: Path) -> None:
    (git_repo / "a.txt").write_text("a\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "text")
    branch = start_goal(git_repo, GOAL_ID, "x", allow_dirty=False)
    plant_everything(git_repo, markers)
    # Changes of every attribute kind, then everything the harness does with git in a goal's life.
    (git_repo / "a.txt").write_text("changed\n")
    (git_repo / "b.md").write_text("new\n")
    (git_repo / "c.py").write_text("print()\n")
    assert {change.path for change in changes(git_repo)} >= {"a.txt", "b.md", "c.py"}
    assert tree_hash(git_repo) is not None
    first = checkpoint(git_repo, branch, GOAL_ID, 1, 0, 1, "turn one", (), ())
    assert first.commit is not None and set(first.files) >= {"a.txt", "b.md", "c.py"}
    (git_repo / "a.txt").write_text("again\n")
    assert "again" in diff(git_repo, branch)
    assert "changed" in diff(git_repo, branch, 1)
    assert baseline_content(git_repo, branch.base_commit, "a.txt") == b"a\n"
    assert checkpoint(git_repo, branch, GOAL_ID, 2, 0, 1, "turn two", (), ()).commit is not None
    rollback(git_repo, branch, 1, None, None)  # read-tree -u: smudge filters and post-checkout would run
    hardened_git(git_repo, "checkout", "-q", "main")
    assert resume(git_repo, branch, None, goal_id=GOAL_ID).recovered_commit is None  # checks the branch out
    assert (git_repo / "a.txt").read_text() == "changed\n"
    assert_nothing_ran(markers)
    # Unhardened, the same repository runs them (the plants work).
    (git_repo / "a.txt").write_text("unhardened\n")
    subprocess.run(["git", "add", "-A"], cwd=git_repo, capture_output=True, check=False)
    assert (markers / "filter-clean").exists() or (markers / "fsmonitor").exists()


def test_inherited_git_variables_and_a_planted_git_on_path_are_ignored(
        git_repo: Path, markers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    branch = start_goal(git_repo, GOAL_ID, "x", allow_dirty=False)
    elsewhere = tmp_path / "elsewhere"
    git(tmp_path, "init", "-q", str(elsewhere))
    evil = tmp_path / "evil"
    monkeypatch.setenv("GIT_DIR", str(elsewhere / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(elsewhere))
    monkeypatch.setenv("GIT_INDEX_FILE", str(evil / "index"))
    monkeypatch.setenv("GIT_EXTERNAL_DIFF", str(marker_script(evil / "extdiff", markers, "GIT_EXTERNAL_DIFF")))
    monkeypatch.setenv("GIT_SSH_COMMAND", f"touch {markers}/GIT_SSH_COMMAND")
    monkeypatch.setenv("GIT_PAGER", f"touch {markers}/GIT_PAGER")
    monkeypatch.setenv("GIT_EDITOR", f"touch {markers}/GIT_EDITOR")
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'core.fsmonitor'='{marker_script(evil / 'fsm', markers, 'PARAMS')}'")
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.hooksPath")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", str(evil / "hooks"))
    marker_script(evil / "hooks" / "post-commit", markers, "GIT_CONFIG_COUNT")
    monkeypatch.setenv("GIT_EXEC_PATH", str(evil / "exec"))
    # A `git` the model planted in the workspace, first on PATH (a virtualenv there would be).
    marker_script(git_repo / "bin" / "git", markers, "planted-git")
    monkeypatch.setenv("PATH", f"{git_repo / 'bin'}{os.pathsep}{os.environ['PATH']}")
    (git_repo / "a.txt").write_text("a\n")
    result = checkpoint(git_repo, branch, GOAL_ID, 1, 0, 1, "turn", (), ())
    assert result.commit is not None and "a.txt" in result.files
    assert "a.txt" in diff(git_repo, branch, 1)
    assert_nothing_ran(markers)
    assert not (evil / "index").exists()
    assert list((elsewhere / ".git" / "refs" / "heads").iterdir()) == []  # GIT_DIR did not redirect the commit


def test_replace_objects_do_not_change_what_the_harness_sees(git_repo: Path) -> None:
    start_goal(git_repo, GOAL_ID, "x", allow_dirty=False)
    empty_tree = git(git_repo, "hash-object", "-t", "tree", "-w", "--stdin").strip()
    fake = git(git_repo, "commit-tree", "-m", "fake", empty_tree).strip()
    git(git_repo, "replace", "HEAD", fake)
    assert "README.md" in git(git_repo, "status", "--porcelain")  # raw git sees the replaced (empty) tree
    assert changes(git_repo) == []


# --- the sandbox side ---------------------------------------------------------------------------------------

def sandboxed(workspace: Path, command: str) -> CommandResult:
    policy = SandboxPolicy("workspace-write", workspace.resolve())
    return asyncio.run(run_sandboxed(policy, command, workspace, 30))


ATTACKS = {
    "post-commit hook": "printf '#!/bin/sh\\ntouch {m}/hook\\n' > .git/hooks/post-commit",
    "reference-transaction hook": "cp /bin/true .git/hooks/reference-transaction",
    "post-index-change hook": "touch .git/hooks/post-index-change",
    "core.fsmonitor": "git config core.fsmonitor 'touch {m}/fsmonitor'",
    "core.hooksPath": "git config core.hooksPath hooks",
    "clean filter": "git config filter.x.clean 'touch {m}/clean' && echo '* filter=x' > .gitattributes",
    "include.path": "echo '[include]' >> .git/config",
    "replace object": "git replace HEAD $(git commit-tree -m x 'HEAD^{{tree}}')",
    "update-ref main": "git update-ref refs/heads/main HEAD",
    "branch -f main": "git branch -f main HEAD",
    "reset --keep": "git reset --keep HEAD",
    "a new branch": "git checkout -b elsewhere",
    "a tag": "git tag sneaky",
    "checkout through Python": "python3 -c \"import subprocess,sys; "
                               "sys.exit(subprocess.run(['git','checkout','-q','main']).returncode)\"",
    "rewrite the .git pointer": "true",
}


def test_dot_git_is_read_only_inside_the_sandbox_and_git_still_reads(git_repo: Path, markers: Path) -> None:
    start_goal(git_repo, GOAL_ID, "x", allow_dirty=False)
    refs_before = git(git_repo, "for-each-ref")
    config_before = (git_repo / ".git" / "config").read_text()
    for what, command in ATTACKS.items():
        if what == "rewrite the .git pointer":
            continue
        result = sandboxed(git_repo, command.format(m=markers))
        assert result.exit_code != 0, f"{what} succeeded: {result.output}"
    for command in ("git status", "git diff HEAD", "git log --oneline -1", "git show --stat HEAD"):
        result = sandboxed(git_repo, command)
        assert result.exit_code == 0, f"{command}: {result.output}"
    assert git(git_repo, "for-each-ref") == refs_before
    assert (git_repo / ".git" / "config").read_text() == config_before
    hooks = git_repo / ".git" / "hooks"
    assert [path.name for path in hooks.iterdir() if not path.name.endswith(".sample")] == []
    assert_nothing_ran(markers)


def test_a_git_file_and_the_git_dir_it_names_are_read_only_too(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    git(tmp_path, "init", "-q", "-b", "main", f"--separate-git-dir={workspace / 'gitdata'}", str(workspace))
    assert (workspace / ".git").is_file()
    result = sandboxed(workspace, "echo 'gitdir: /tmp/elsewhere' > .git")
    assert result.exit_code != 0 and "Read-only" in result.output
    result = sandboxed(workspace, "touch gitdata/hooks/post-commit")
    assert result.exit_code != 0 and "Read-only" in result.output
    assert sandboxed(workspace, "git status").exit_code == 0


def test_a_nested_repository_s_dot_git_is_read_only(git_repo: Path) -> None:
    nested = git_repo / "vendor" / "lib"
    nested.mkdir(parents=True)
    git(nested, "init", "-q")
    result = sandboxed(git_repo, "touch vendor/lib/.git/hooks/post-commit")
    assert result.exit_code != 0 and "Read-only" in result.output


# --- refs outside the goal branch never move ----------------------------------------------------------------

def ref_state(repo: Path, goal_branch: str) -> tuple[str, dict[str, str]]:
    """for-each-ref and every reflog, less the goal branch's own and HEAD's."""
    refs = "\n".join(line for line in git(repo, "for-each-ref").splitlines() if goal_branch not in line)
    logs = repo / ".git" / "logs" / "refs"
    reflogs = {str(path.relative_to(logs)): path.read_text() for path in logs.rglob("*")
               if path.is_file() and goal_branch not in str(path)}
    return refs, reflogs


REF_ATTACKS = [
    "git update-ref refs/heads/main HEAD",
    "git branch -f main HEAD",
    "git reset --keep HEAD~1",
    "git checkout -b sneaky",
    "git tag sneaky",
    "git symbolic-ref HEAD refs/heads/main",
    "python3 -c \"import subprocess, sys; sys.exit(subprocess.run(['git', 'checkout', '-q', 'main']).returncode)\"",
    "python3 -c \"import subprocess, sys; sys.exit(subprocess.run(['git', 'update-ref', 'refs/heads/main', 'HEAD'])"
    ".returncode)\"",
    "printf x > .git/refs/heads/main",
    "git commit --allow-empty -m sneaky",
]


def test_a_hostile_run_moves_no_ref_but_the_goal_branch_s(tmp_path: Path, markers: Path) -> None:
    workspace = sample_repo(tmp_path)
    before = ref_state(workspace, "goal/")
    steps = [step(f"try {command}", shell(command)) for command in REF_ATTACKS]
    steps += [step("", call("apply_patch", patch=FIX_PATCH)), step("", complete("fixed")), step("done")]
    with Store() as store:
        contract = contract_from_flags("Fix the discount bug", checks=[f"tests={TESTS}"], protect=["tests/**"],
                                       no_progress_turns=50)
        goal = new_goal(store, workspace, contract)
        result = run(store, goal, workspace, scripted(steps))
        outputs = [payload_of(e.event) for e in events(store, goal, "tool_result")]
    assert result.status == "achieved"
    succeeded = [(command, payload["output"][:300]) for command, payload in zip(REF_ATTACKS, outputs, strict=False)
                 if payload["ok"]]
    assert succeeded == []
    assert ref_state(workspace, "goal/") == before
    assert git(workspace, "symbolic-ref", "HEAD").startswith("refs/heads/goal/")


def test_a_checkpoint_puts_head_back_on_the_goal_branch_and_commits_nothing_elsewhere(git_repo: Path) -> None:
    branch = start_goal(git_repo, GOAL_ID, "x", allow_dirty=False)
    main_before = ref_state(git_repo, branch.name)
    (git_repo / "work.txt").write_text("the goal's work\n")
    git(git_repo, "checkout", "-q", "main")  # as danger-full-access allows; the work comes along uncommitted
    payload = commit_turn(git_repo, branch, GOAL_ID, 1, 0, 1, "turn", [], [])
    assert git(git_repo, "symbolic-ref", "HEAD").strip() == f"refs/heads/{branch.name}"
    assert payload["commit"] == git(git_repo, "rev-parse", branch.name).strip()
    assert payload["files_committed"] == ["work.txt"] and payload["left_branch"] == "main"
    assert "HEAD was on main" in payload["notice"]
    assert ref_state(git_repo, branch.name) == main_before
    git(git_repo, "checkout", "-q", "--detach")
    (git_repo / "more.txt").write_text("more\n")
    payload = commit_turn(git_repo, branch, GOAL_ID, 2, 0, 1, "turn", [], [])
    assert payload["left_branch"] == "a detached HEAD" and payload["files_committed"] == ["more.txt"]
    assert ref_state(git_repo, branch.name) == main_before


# --- stale locks --------------------------------------------------------------------------------------------

def test_a_lock_left_by_a_git_killed_mid_write_is_recovered_and_resume_works(
        git_repo: Path, tmp_path: Path) -> None:
    branch = start_goal(git_repo, GOAL_ID, "x", allow_dirty=False)
    (git_repo / "slow.dat").write_text("data\n")
    (git_repo / "a.txt").write_text("the interrupted turn's work\n")
    # A real git holding index.lock mid-add (its clean filter sleeps), killed with SIGKILL, group and all.
    slow = subprocess.Popen(["git", "-c", "filter.slow.clean=sleep 60; cat", "-c", "core.attributesFile=" +
                             str(write_attributes(tmp_path)), "add", "-A"], cwd=git_repo, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = git_repo / ".git" / "index.lock"
    deadline = time.monotonic() + 20
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock.exists()
    with pytest.raises(WorkspaceError, match="held by a running process"):
        recover_stale_locks(git_repo, branch.name)  # a live git's lock is respected
    os.killpg(slow.pid, signal.SIGKILL)
    slow.wait()
    assert lock.exists()  # what kill -9 leaves behind
    result = resume(git_repo, branch, 1, goal_id=GOAL_ID)
    assert not lock.exists()
    assert set(result.files) == {"a.txt", "slow.dat"} and result.recovered_commit is not None


def write_attributes(tmp_path: Path) -> Path:
    attributes = tmp_path / "attributes"
    attributes.write_text("*.dat filter=slow\n")
    return attributes


def test_a_lock_some_live_process_holds_open_is_respected(git_repo: Path, goal: GoalBranch) -> None:
    lock = git_repo / ".git" / "index.lock"
    holder = subprocess.Popen([sys.executable, "-c", f"f = open({str(lock)!r}, 'w'); import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 10
        while not lock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        with pytest.raises(WorkspaceError, match="held by a running process") as caught:
            resume(git_repo, goal, 1, goal_id=GOAL_ID)
        assert caught.value.hint is not None and "wait" in caught.value.hint
        assert lock.exists()
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def goal(git_repo: Path) -> GoalBranch:
    return start_goal(git_repo, GOAL_ID, "x", allow_dirty=False)


# --- oversized files ----------------------------------------------------------------------------------------

def test_a_file_over_the_size_limit_is_left_uncommitted_and_the_model_is_told(
        git_repo: Path, goal: GoalBranch) -> None:
    (git_repo / "big.bin").write_bytes(b"x" * 3000)
    (git_repo / "small.txt").write_text("ok\n")
    payload = commit_turn(git_repo, goal, GOAL_ID, 1, 0, 1, "turn", [], [], max_file_bytes=2048)
    assert payload["files_committed"] == ["small.txt"] and payload["oversized"] == ["big.bin"]
    assert "big.bin" in payload["notice"] and "not committed" in payload["notice"]
    assert "big.bin" not in git(git_repo, "ls-tree", "-r", "--name-only", "HEAD")
    assert (git_repo / "big.bin").stat().st_size == 3000
    assert git(git_repo, "cat-file", "--batch-all-objects", "--batch-check").count(" 3000") == 0  # never hashed
    # It stays uncommitted without blocking a resume, and the default limit is 50 MB.
    assert resume(git_repo, goal, None, goal_id=GOAL_ID, max_file_bytes=2048).recovered_commit is None
    assert commit_turn(git_repo, goal, GOAL_ID, 2, 0, 1, "turn", [], [])["files_committed"] == ["big.bin"]


def test_a_nested_repository_made_in_the_sandbox_runs_nothing_from_the_harness_s_git(
        git_repo: Path, goal: GoalBranch, markers: Path) -> None:
    # The sandbox cannot touch the existing .git, but it can make a new repository with its own filter.
    made = sandboxed(git_repo, f"mkdir n && cd n && git init -q && git config filter.e.clean 'touch {markers}/nested; "
                               f"cat' && git config core.fsmonitor 'touch {markers}/nested-fsmonitor' && "
                               "echo '* filter=e' > .gitattributes && echo x > f && git add . && "
                               "git -c user.name=m -c user.email=m@m commit -qm n")
    assert made.exit_code == 0, made.output
    assert checkpoint(git_repo, goal, GOAL_ID, 1, 0, 1, "turn", (), ()).files == ["n/"]
    (git_repo / "n" / "f").write_text("y\n")  # same size, old time: only hashing could tell
    os.utime(git_repo / "n" / "f", (0, 0))
    assert tree_hash(git_repo) is not None
    assert changes(git_repo) == []  # dirty content inside it is not a change the harness could commit
    checkpoint(git_repo, goal, GOAL_ID, 2, 0, 1, "turn", (), ())
    assert_nothing_ran(markers)
    subprocess.run(["git", "add", "-A"], cwd=git_repo, capture_output=True, check=False)  # raw git runs it
    assert (markers / "nested").exists()


def test_a_tracked_folder_replaced_by_a_link_is_committed_as_the_link(git_repo: Path, tmp_path: Path) -> None:
    """A model that swaps a tracked folder for a symlink must not crash the checkpoint ("beyond a symbolic
    link"): the folder's files leave the index and the link itself is committed."""
    from goalkeeper.workspace.git import commit_all

    (git_repo / "pkg").mkdir()
    (git_repo / "pkg" / "a.py").write_text("a = 1\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-qm", "pkg")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.py").write_text("a = 2\n")
    shutil.rmtree(git_repo / "pkg")
    (git_repo / "pkg").symlink_to(elsewhere)
    commit = commit_all(git_repo, "checkpoint", [])
    assert commit is not None
    tree = git(git_repo, "ls-tree", "-r", "HEAD").splitlines()
    assert any(line.startswith("120000") and line.endswith("\tpkg") for line in tree), tree
    assert not any(line.endswith("\tpkg/a.py") for line in tree)
