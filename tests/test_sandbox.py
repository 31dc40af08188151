"""The bubblewrap sandbox over real files, a real bwrap and real processes: what a command may touch."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from goalkeeper.errors import SandboxError
from goalkeeper.sandbox import limits
from goalkeeper.sandbox.bwrap import (
    SandboxLayout,
    build_argv,
    require_sandbox,
    run_sandboxed,
    sandbox_argv,
    scan_layout,
)
from goalkeeper.sandbox.policy import SandboxMode, SandboxPolicy
from goalkeeper.sandbox.process import CommandResult
from goalkeeper.spec.contract import Check
from goalkeeper.tools.base import ToolContext
from goalkeeper.tools.shell import ShellTool
from goalkeeper.verify.checks import run_check, run_constraint

SECRET = "s3cr3t-do-not-leak"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace under /tmp (tmp_path), so it must reappear above the sandbox's private /tmp."""
    root = tmp_path / "workspace"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_app.py").write_text("assert True\n")
    (root / "app.py").write_text("print('app')\n")
    (root / ".env").write_text(f"TOKEN={SECRET}\n")
    return root.resolve()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fake $HOME with an SSH key and an ordinary file."""
    root = tmp_path / "home"
    (root / ".ssh").mkdir(parents=True)
    (root / ".ssh" / "id_rsa").write_text(f"-----BEGIN KEY-----\n{SECRET}\n")
    (root / "notes.txt").write_text("my notes\n")
    return root.resolve()


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(home)}


def policy(workspace: Path, mode: SandboxMode = "workspace-write", **fields: Any) -> SandboxPolicy:
    return SandboxPolicy(mode=mode, workspace=workspace, **fields)


def run(sandbox: SandboxPolicy, command: str, env: dict[str, str], timeout_s: float = 10) -> CommandResult:
    return asyncio.run(run_sandboxed(sandbox, command, sandbox.workspace, timeout_s, env=env))


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def pids_running(marker: str) -> list[int]:
    """Live processes whose command line contains `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if marker in cmdline and state not in ("Z", "X"):
                found.append(int(entry.name))
    return found


# --- the command line, built without running anything ---------------------------------------------

def test_danger_full_access_is_plain_bash() -> None:
    argv = build_argv(policy(Path("/w"), "danger-full-access"), "make test", SandboxLayout(home=Path("/h")))

    assert argv == ["/bin/bash", "-c", "make test"]


def test_workspace_write_binds_the_workspace_after_the_private_tmp_then_protects_and_masks() -> None:
    layout = SandboxLayout(home=Path("/home/u"), protected=(Path("/w/tests"),), secret_files=(Path("/w/.env"),),
                           secret_dirs=(Path("/home/u/.ssh"),), empty_file=Path("/e/empty"))

    argv = build_argv(policy(Path("/w")), "make test", layout)

    assert argv[:10] == ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    text = " ".join(argv)
    assert text.index("--bind /w /w") < text.index("--ro-bind /w/tests /w/tests") < text.index(
        "--tmpfs /home/u/.ssh --remount-ro /home/u/.ssh") < text.index("--ro-bind /e/empty /w/.env")
    for flag in ("--unshare-net", "--unshare-pid", "--die-with-parent", "--new-session", "--cap-drop ALL",
                 "--setenv HOME /home/u", "--chdir /w"):
        assert flag in text
    assert argv[-4:] == ["--", "/bin/bash", "-c", "make test"]


def test_read_only_binds_the_workspace_read_only_and_network_on_keeps_the_network() -> None:
    argv = build_argv(policy(Path("/w"), "read-only", network=True), "ls", SandboxLayout(home=Path("/h")))

    assert "--ro-bind /w /w" in " ".join(argv)
    assert "--bind" not in argv
    assert "--unshare-net" not in argv


def test_a_home_under_tmp_stays_visible_above_the_private_tmp() -> None:
    argv = build_argv(policy(Path("/tmp/x/w")), "ls", SandboxLayout(home=Path("/tmp/x/h")))

    text = " ".join(argv)
    assert text.index("--tmpfs /tmp") < text.index("--ro-bind-try /tmp/x/h /tmp/x/h") < text.index("--bind /tmp/x/w")


def test_scan_finds_protected_dirs_and_secrets_but_not_inside_dependency_trees(workspace: Path, home: Path) -> None:
    (workspace / "docs").mkdir()
    (workspace / "deep" / "er").mkdir(parents=True)
    (workspace / "deep" / "er" / "uv.lock").write_text("")
    (workspace / "deep" / "server.pem").write_text("")
    venv = workspace / ".venv" / "lib" / "certifi"
    venv.mkdir(parents=True)
    (workspace / ".venv" / "pyvenv.cfg").write_text("")
    (venv / "cacert.pem").write_text("")

    layout = scan_layout(policy(workspace, protect=("tests/**", "docs/", "*.lock")), home)

    assert layout.protected == (workspace / "deep/er/uv.lock", workspace / "docs", workspace / "tests")
    assert set(layout.secret_files) == {workspace / ".env", workspace / "deep/server.pem"}
    gk_home = Path(os.environ["GOALKEEPER_HOME"]).resolve()  # masked whole, wherever it lives
    assert set(layout.secret_dirs) == {home / ".ssh", gk_home}


# --- what a sandboxed command can and cannot do ---------------------------------------------------

def test_writes_outside_the_workspace_and_into_home_fail_and_leave_nothing(
        workspace: Path, home: Path, env: dict[str, str]) -> None:
    probe = f"gk-sandbox-probe-{uuid.uuid4().hex}"

    result = run(policy(workspace), f"touch /root/{probe}; touch /etc/{probe}; touch ~/{probe}; touch in-ws", env)

    assert result.output.count("Read-only file system") == 3
    assert not Path("/root", probe).exists()
    assert not Path("/etc", probe).exists()
    assert not (home / probe).exists()
    assert (workspace / "in-ws").exists()


def test_secrets_in_home_and_workspace_read_as_nothing(workspace: Path, home: Path, env: dict[str, str]) -> None:
    result = run(policy(workspace), 'cat ~/.ssh/id_rsa .env; echo "[$(ls -A ~/.ssh)]"; cat ~/notes.txt', env)

    assert SECRET not in result.output
    assert "[]" in result.output  # ~/.ssh is an empty directory
    assert "my notes" in result.output  # the rest of $HOME stays readable


def test_a_workspace_link_to_a_key_in_a_masked_directory_still_runs_and_reads_nothing(
        workspace: Path, home: Path, env: dict[str, str]) -> None:
    (workspace / "id_rsa").symlink_to(home / ".ssh" / "id_rsa")

    result = run(policy(workspace), "cat id_rsa", env)

    assert "No such file" in result.output
    assert SECRET not in result.output


def test_sed_on_a_protected_file_fails_and_leaves_it_unchanged(workspace: Path, env: dict[str, str]) -> None:
    sandbox = policy(workspace, protect=("app.py", "tests/**"))

    result = run(sandbox, "sed -i s/app/hacked/ app.py && echo EDITED; rm app.py", env)

    assert "EDITED" not in result.output
    assert (workspace / "app.py").read_text() == "print('app')\n"
    assert sorted(path.name for path in workspace.iterdir()) == [".env", "app.py", "tests"]  # no sed temp file


def test_no_new_file_can_be_made_in_a_protected_directory(workspace: Path, env: dict[str, str]) -> None:
    result = run(policy(workspace, protect=("tests/**",)), "touch tests/test_fake.py; echo x > tests/test_app.py", env)

    assert result.exit_code != 0
    assert result.output.count("Read-only file system") == 2
    assert sorted(path.name for path in (workspace / "tests").iterdir()) == ["test_app.py"]
    assert (workspace / "tests" / "test_app.py").read_text() == "assert True\n"


def test_a_symlink_out_of_the_workspace_cannot_be_written_through(
        workspace: Path, home: Path, env: dict[str, str]) -> None:
    (workspace / "link").symlink_to(home / "notes.txt")

    result = run(policy(workspace), "echo overwritten > link; cat link", env)

    assert "Read-only file system" in result.output
    assert (home / "notes.txt").read_text() == "my notes\n"


def test_network_is_off_unless_the_policy_allows_it(workspace: Path, env: dict[str, str]) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        connect = f"exec 3<>/dev/tcp/127.0.0.1/{server.getsockname()[1]} && echo CONNECTED"

        refused = run(policy(workspace), connect, env)
        allowed = run(policy(workspace, network=True), connect, env)

    assert refused.exit_code != 0
    assert "CONNECTED" not in refused.output
    assert allowed.exit_code == 0, allowed.output
    assert "CONNECTED" in allowed.output


def test_tmp_is_private(workspace: Path, env: dict[str, str]) -> None:
    name = f"/tmp/gk-sandbox-probe-{uuid.uuid4().hex}"

    result = run(policy(workspace), f"echo inside > {name} && cat {name}", env)

    assert result.output == "inside\n"
    assert not Path(name).exists()


def test_read_only_mode_refuses_workspace_writes(workspace: Path, env: dict[str, str]) -> None:
    result = run(policy(workspace, "read-only"), "cat app.py; touch new.txt", env)

    assert "print('app')" in result.output
    assert "Read-only file system" in result.output
    assert not (workspace / "new.txt").exists()


def test_danger_full_access_runs_unconfined(workspace: Path, tmp_path: Path, env: dict[str, str]) -> None:
    result = run(policy(workspace, "danger-full-access"), f"echo out > {tmp_path}/outside.txt; cat .env", env)

    assert result.exit_code == 0
    assert (tmp_path / "outside.txt").read_text() == "out\n"
    assert SECRET in result.output


# --- limits ----------------------------------------------------------------------------------------

def test_a_fork_bomb_stops_at_the_process_limit_and_leaves_nothing_behind(workspace: Path, env: dict[str, str]) -> None:
    found = limits.cgroup_parent()
    if found is None:
        pytest.skip(limits.describe())
    peaks: list[int] = []

    async def bomb() -> CommandResult:
        async def watch() -> None:
            while True:
                for cgroup in found[1].glob(f"{limits.CGROUP_PREFIX}{os.getpid()}-*"):
                    peak = limits.ProcessLimit(found[0], 64, cgroup=cgroup).peak()
                    peaks.extend([] if peak is None else [peak])
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        try:
            # The trailing sleep keeps the namespace alive: once its first shell exits, bwrap kills the rest.
            bomb = ":(){ :|:& };:; sleep 30"
            return await run_sandboxed(policy(workspace, max_processes=64), bomb, workspace, 3, env=env)
        finally:
            watcher.cancel()

    started = time.monotonic()
    result = asyncio.run(bomb())

    assert result.timed_out
    assert time.monotonic() - started < 8
    assert "Resource temporarily unavailable" in result.output
    assert peaks and max(peaks) <= 64
    assert not list(found[1].glob(f"{limits.CGROUP_PREFIX}{os.getpid()}-*"))  # removed, so it was empty


def test_huge_output_is_capped_and_returns_promptly(workspace: Path, env: dict[str, str]) -> None:
    cap = 1_000_000
    started = time.monotonic()

    result = run(policy(workspace, max_output_bytes=cap), "head -c 100000000 /dev/zero | tr '\\0' x", env, 30)

    assert time.monotonic() - started < 15
    assert result.exit_code == 0
    assert len(result.output) <= cap + 100
    assert result.truncated_bytes == 100_000_000 - cap
    assert "bytes dropped" in result.output


def test_the_process_limit_says_how_it_is_enforced() -> None:
    assert limits.mechanism() in ("cgroup-v1", "cgroup-v2", "prlimit", "none")
    text = limits.describe()
    assert ("NOT bounded" in text) == (limits.mechanism() == "none")


# --- refusing to start -----------------------------------------------------------------------------

def test_missing_bubblewrap_refuses_with_the_install_hint(
        workspace: Path, tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))

    with pytest.raises(SandboxError) as refused:
        run(policy(workspace), "true", env)
    context = ToolContext(workspace=workspace, sandbox=policy(workspace))
    tool = asyncio.run(ShellTool().call({"command": "true"}, context))

    assert "bubblewrap is not installed" in str(refused.value)
    assert refused.value.hint is not None and "apt-get install -y bubblewrap" in refused.value.hint
    assert "danger-full-access" in refused.value.hint
    assert not tool.ok
    assert "apt-get install -y bubblewrap" in tool.output
    require_sandbox(policy(workspace, "danger-full-access"))  # chosen explicitly: no bwrap needed


def test_a_bubblewrap_that_cannot_build_namespaces_is_refused_with_its_complaint(
        workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    (fake_bin / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake_bin))

    with pytest.raises(SandboxError, match="No permissions to create new namespace"):
        require_sandbox(policy(workspace))


# --- the shell tool and the checks run under it ----------------------------------------------------

def test_shell_tool_shows_a_sandbox_refusal_as_a_failed_command(workspace: Path, env: dict[str, str]) -> None:
    context = ToolContext(workspace=workspace, env=env, sandbox=policy(workspace, protect=("tests/**",)))

    result = asyncio.run(ShellTool().call({"command": "echo x >> tests/test_app.py"}, context))

    assert not result.ok
    assert result.output.startswith("exit code: 1\n")
    assert "Read-only file system" in result.output
    assert result.facts["exit_code"] == 1


def test_checks_and_keep_green_commands_run_in_the_sandbox(workspace: Path, env: dict[str, str]) -> None:
    sandbox = policy(workspace, protect=("tests/**",))
    check = Check(name="tamper", run="echo 'assert False' > tests/test_app.py")

    evidence = asyncio.run(run_check(check, workspace, env, sandbox=sandbox))
    constraint = asyncio.run(run_constraint("cat .env", workspace, env=env, sandbox=sandbox))

    assert not evidence.passed
    assert evidence.command == check.run
    assert "Read-only file system" in evidence.output_tail
    assert constraint.passed
    assert SECRET not in constraint.output_tail


# --- processes die with the runner -----------------------------------------------------------------

RUNNER = """
import asyncio, sys
from pathlib import Path
from goalkeeper.sandbox.bwrap import run_sandboxed
from goalkeeper.sandbox.policy import SandboxPolicy
workspace = Path(sys.argv[1])
sandbox = SandboxPolicy(mode="workspace-write", workspace=workspace)
asyncio.run(run_sandboxed(sandbox, f"touch started; sleep {sys.argv[2]}", workspace, 120))
"""


def test_sandboxed_processes_die_when_the_runner_is_killed(tmp_path: Path) -> None:
    workspace = tmp_path / "bare"
    workspace.mkdir()
    marker = f"61.{uuid.uuid4().int % 10**9}"
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(workspace), marker])
    try:
        wait_for(lambda: (workspace / "started").exists() and bool(pids_running(f"sleep {marker}")))
    finally:
        runner.kill()
        runner.wait()

    wait_for(lambda: not pids_running(f"sleep {marker}"), timeout_s=5)
    found = limits.cgroup_parent()
    if found is not None:  # the dead runner's cgroup is swept by the next one
        def swept() -> bool:
            # A loaded machine may still be reaping the cgroup's last process: a busy cgroup is kept until then.
            limits.sweep_stale_cgroups(found[1])
            return not list(found[1].glob(f"{limits.CGROUP_PREFIX}{runner.pid}-*"))
        wait_for(swept, timeout_s=5)


def test_sandbox_argv_resolves_the_real_bwrap(workspace: Path, home: Path) -> None:
    argv = sandbox_argv(policy(workspace), "true", home=home)

    assert Path(argv[0]).is_absolute() and Path(argv[0]).name == "bwrap"


def test_a_toolchain_under_tmp_stays_visible_over_the_private_tmp(tmp_path: Path) -> None:
    from goalkeeper.sandbox.bwrap import SandboxLayout, build_argv

    venv = Path("/tmp/some-venv/bin")
    layout = SandboxLayout(home=tmp_path, toolchains=(venv,))
    argv = build_argv(SandboxPolicy("workspace-write", tmp_path / "ws"), "true", layout)
    tmpfs = argv.index("--tmpfs")
    bound = argv.index(str(venv))
    assert argv[bound - 1] == "--ro-bind-try" and bound > tmpfs
