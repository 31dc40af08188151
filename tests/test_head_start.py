"""The baseline's head start (run/head_start.py): `gk exec` starts a new goal's checks before the goal is set, and
the baseline takes that run only when it ran exactly what the baseline would; otherwise, or when no goal is set,
the early run is killed and leaves nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from goalkeeper.events import Evidence
from goalkeeper.run import head_start
from goalkeeper.verify.cleanroom import baseline_of, goal_changes, keep_baseline
from goalkeeper.verify.envsnap import take_early_base
from goalkeeper.workspace.git import SNAPSHOT_SUBJECT
from helpers import git
from scenario import TESTS, complete, contract_with, gk, sample_repo, shell, step, write_script

COUNTED = f"echo ran >> .runs && {TESTS}"
"""A check that leaves one line in `.runs` (ignored by git) each time it starts."""


#: Runs `gk` as `python -m goalkeeper` does, and writes the names of the modules loaded when the first check's
#: process starts (the sandbox's command line that binds the tracer's folder).
_AT_FIRST_CHECK = """
import json, os, runpy, sys
def hook(event, args):
    if event == "subprocess.Popen" and not os.path.exists(os.environ["GK_MODULES_OUT"]):
        argv = " ".join(map(str, args[1] or ()))
        if "--chdir" in argv and "goalkeeper-trace-" in argv and "goalkeeper-trace-test-" not in argv:
            open(os.environ["GK_MODULES_OUT"], "w").write(json.dumps(sorted(sys.modules)))
sys.addaudithook(hook)
sys.argv = ["gk", *sys.argv[1:]]
runpy.run_module("goalkeeper", run_name="__main__", alter_sys=True)
"""


def _repo(tmp_path: Path, ignore: str = ".runs\n") -> Path:
    workspace = sample_repo(tmp_path)
    (workspace / ".gitignore").write_text(ignore)
    git(workspace, "add", ".gitignore")
    git(workspace, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "ignore")
    return workspace


def _model(tmp_path: Path, *commands: str) -> str:
    steps = [step("", shell(command)) for command in commands]
    return f"scripted:{write_script(tmp_path / 'script.json', [*steps, step('', complete())])}"


def _leftovers(home: Path) -> list[str]:
    envs = home / "envs"
    return sorted(path.name for path in envs.glob("early-*")) if envs.exists() else []


def test_exec_runs_the_checks_once_before_the_first_request(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = _repo(tmp_path)
    # The model's first command copies what the checks have left so far: one run, the early one, adopted.
    done = gk("exec", "Fix it", "--check", f"tests={COUNTED}", "--max-attempts", "1",
              "--model", _model(tmp_path, "cp .runs seen.txt"), "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 1, done.stdout + done.stderr  # the bug is still there: unmet
    assert (workspace / "seen.txt").read_text() == "ran\n"
    assert _leftovers(goalkeeper_home) == []  # the early snapshot became the goal's own
    assert [path.name for path in (goalkeeper_home / "envs").iterdir()] != []


def test_files_the_early_checks_write_do_not_make_the_tree_dirty(tmp_path: Path, goalkeeper_home: Path) -> None:
    # `report.txt` is not ignored: written by checks that started before the goal was set, it must not read as
    # the person's uncommitted work (the goal would be refused, or snapshotted).
    workspace = _repo(tmp_path)
    done = gk("exec", "Fix it", "--check", f"tests=echo r > report.txt && {COUNTED}", "--max-attempts", "1",
              "--model", _model(tmp_path, "cp .runs seen.txt"), "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 1, done.stdout + done.stderr
    assert (workspace / "seen.txt").read_text() == "ran\n"
    assert "uncommitted" not in done.stderr
    # The goal branch starts at the commit itself: no snapshot of a dirty tree was taken.
    assert SNAPSHOT_SUBJECT not in git(workspace, "log", "--format=%s", "main..HEAD")


def test_a_goal_the_gate_refuses_kills_its_early_checks(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = _repo(tmp_path)
    refused = gk("exec", "Fix it", "--check", "slow=sleep 3 && touch late.txt",
                 "--check", "gone=no-such-tool-anywhere --run", "--model", _model(tmp_path),
                 "--cwd", str(workspace), home=goalkeeper_home)
    assert refused.returncode == 4 and "no-such-tool-anywhere" in refused.stderr, refused.stderr
    time.sleep(3.5)
    assert not (workspace / "late.txt").exists()  # killed with its process group, not waited for
    assert _leftovers(goalkeeper_home) == []
    assert git(workspace, "status", "--porcelain") == ""


def test_an_early_run_that_does_not_fit_is_killed(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = _repo(tmp_path)
    contract = contract_with(checks=[{"name": "slow", "run": "touch began.txt && sleep 3 && touch late.txt"}])
    head = head_start.offer(workspace, contract, None, ())
    assert head is not None and head is head_start.claim(workspace)

    async def judged() -> list[Evidence] | None:
        assert await head.running()
        other = contract_with(checks=[{"name": "slow", "run": "sleep 3"}])
        assert head.sandbox is not None and head.commit is not None
        assert not head.fits(other, workspace, head.sandbox, head.env, head.commit)
        assert head.fits(contract, workspace, head.sandbox, head.env, head.commit)
        for _ in range(500):  # the check is under way
            if (workspace / "began.txt").exists():
                break
            await asyncio.sleep(0.01)
        await head.stop()
        return await head.evidence()

    try:
        assert asyncio.run(judged()) is None
    finally:
        head_start.withdraw(head)
    assert head.failure is None  # stopped, not broken
    time.sleep(3.5)
    assert (workspace / "began.txt").exists() and not (workspace / "late.txt").exists()
    assert _leftovers(goalkeeper_home) == []


def test_no_head_start_on_a_dirty_tree(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = _repo(tmp_path)
    (workspace / "cart.py").write_text("# edited, not committed\n")
    head = head_start.offer(workspace, contract_with(checks=[{"name": "t", "run": "touch ran.txt"}]), None, ())
    assert head is not None
    try:
        assert asyncio.run(head.running()) is False
    finally:
        head_start.withdraw(head)
    assert head.failure is None  # declined, not broken
    assert not (workspace / "ran.txt").exists()
    assert _leftovers(goalkeeper_home) == []


def test_the_stamps_are_taken_before_the_early_checks_run(tmp_path: Path, goalkeeper_home: Path) -> None:
    # A check that rewrites a tracked file (a formatter, say) while the baseline runs: the goal's changes must
    # still see it, so the stamps that say "equal to the base commit" predate every command.
    workspace = _repo(tmp_path)
    commit = git(workspace, "rev-parse", "HEAD").strip()
    early = take_early_base(workspace, commit)
    time.sleep(0.01)
    (workspace / "cart.py").write_text((workspace / "cart.py").read_text() + "# formatted\n")
    recorded = keep_baseline(workspace, "goal_stamps", commit, None, early)
    assert early.adopted and _leftovers(goalkeeper_home) == []
    changed = [path for path, _ in goal_changes(workspace, baseline_of(recorded, "goal_stamps"))]
    assert changed == ["cart.py"]


def test_exec_starts_the_checks_before_the_rest_of_the_cli_loads(tmp_path: Path, goalkeeper_home: Path) -> None:
    """`gk exec` has a catalogue of its own (cli/exec_command.py): when its first check starts, neither the rest of
    the CLI nor the store nor the event models have loaded; they load while the checks run."""
    workspace = _repo(tmp_path)
    out = tmp_path / "modules.json"
    env = {**os.environ, "GOALKEEPER_HOME": str(goalkeeper_home), "GK_MODULES_OUT": str(out)}
    done = subprocess.run([sys.executable, "-c", _AT_FIRST_CHECK, "exec", "Fix it", "--check", f"tests={COUNTED}",
                           "--max-attempts", "1", "--model", _model(tmp_path, "cp .runs seen.txt"),
                           "--cwd", str(workspace)], env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stdout + done.stderr
    assert (workspace / "seen.txt").read_text() == "ran\n"
    loaded = set(json.loads(out.read_text()))
    assert "goalkeeper.run.head_start" in loaded
    early = sorted(loaded.intersection({"goalkeeper.cli.app", "goalkeeper.cli.console", "goalkeeper.events",
                                        "goalkeeper.store.db", "goalkeeper.goals.service", "goalkeeper.run.runner",
                                        "sqlite3", "rich"}))
    assert not early, f"loaded before the checks started: {early}"


def test_the_early_checks_are_confined_like_the_baseline(tmp_path: Path, goalkeeper_home: Path) -> None:
    """The early run starts while HEAD is still on the person's branch, right before the runner's `git checkout
    -b`: a check that plants a checkout hook or moves the branch must fail there as inside any sandbox."""
    workspace = _repo(tmp_path)
    marker = tmp_path / "hook-ran"
    main_before = git(workspace, "rev-parse", "main")
    hostile = (f"printf '#!/bin/sh\\ntouch {marker}\\n' > .git/hooks/post-checkout; "
               "chmod +x .git/hooks/post-checkout; git config core.hooksPath /tmp; "
               "git update-ref refs/heads/main HEAD~1; " + COUNTED)
    done = gk("exec", "Fix it", "--check", f"tests={hostile}", "--max-attempts", "1",
              "--model", _model(tmp_path, "cp .runs seen.txt"), "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 1, done.stdout + done.stderr
    assert (workspace / "seen.txt").read_text() == "ran\n"  # the early run was the baseline
    assert not (workspace / ".git" / "hooks" / "post-checkout").exists() and not marker.exists()
    assert git(workspace, "rev-parse", "main") == main_before
    assert "hooksPath" not in (workspace / ".git" / "config").read_text()
