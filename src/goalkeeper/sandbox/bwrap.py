"""Runs a goal's commands under its sandbox policy with bubblewrap: the policy becomes a bwrap argv.

`build_argv` is pure; `scan_layout` is the only part that reads the filesystem (to find which protected
and secret paths exist). A missing or broken bubblewrap is a SandboxError: there is never a silent
fallback to running unconfined.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from goalkeeper.errors import SandboxError
from goalkeeper.sandbox.limits import process_limit
from goalkeeper.sandbox.policy import SandboxPolicy, held_files
from goalkeeper.sandbox.process import CommandResult, command_script, left_by_the_dead, run_command
from goalkeeper.sandbox.scan import Found, find, real_path
from goalkeeper.store.home import goalkeeper_home

INSTALL_HINT = (
    "install it: apt-get install -y bubblewrap — or choose `sandbox = \"danger-full-access\"` in "
    "[boundaries] explicitly"
)

#: Always read-only inside the workspace: every `.git` (directory, or the file of a worktree or submodule),
#: at any depth. The harness owns git; a hook, a config key or a ref written from inside would be run or
#: trusted by the harness's own git later.
GIT_PROTECT = (".git",)

#: How deep $HOME is searched for secrets: its entries and one level below (~/.ssh, ~/work/.env).
HOME_DEPTH = 2


@dataclass(frozen=True)
class SandboxLayout:
    """The existing paths the sandbox re-binds read-only or masks, as found by `scan_layout`."""

    home: Path
    """The $HOME commands see; searched for secrets, and kept visible even when it lies under /tmp."""
    protected: tuple[Path, ...] = ()
    """Real paths inside the workspace matched by a protect glob, parents before children."""
    secret_files: tuple[Path, ...] = ()
    """Real paths of files shown as an empty read-only file."""
    secret_dirs: tuple[Path, ...] = ()
    """Real paths of directories shown as an empty read-only directory."""
    empty_file: Path = Path("/dev/null")
    """An empty, read-only regular file bound over each secret file."""
    toolchains: tuple[Path, ...] = ()
    """Interpreter prefixes and PATH directories that live under /tmp, kept visible (read-only) over the
    private /tmp: a virtualenv there must still run the checks."""


def scan_layout(policy: SandboxPolicy, home: Path) -> SandboxLayout:
    """Find the protected and secret paths that exist now (the only filesystem reads of the argv).

    The searches of the workspace and $HOME are kept between commands while inotify reports no change that
    could alter them (sandbox/scan.py), so a path a command made is covered in the next one."""
    workspace = policy.workspace.resolve()
    writable = (workspace, *(path.resolve() for path in policy.extra_writable))
    # A clean room is a fresh tree each time: watching it would only hold inotify instances.
    room = policy.bound_at is not None
    found: list[Found] = [*find(workspace, policy.secrets, (*policy.protect, *GIT_PROTECT), None, keep=not room)]
    found += [("protect", path, True) for path in _git_dirs_named_by(workspace)]
    if home.is_dir() and home.resolve() != Path("/"):
        found += find(home.resolve(), policy.secrets, (), HOME_DEPTH)
    found += [("secret", path, True) for path in _goalkeeper_home(policy.bound_at or workspace)]
    found += [("secret", real, real.is_dir()) for real in map(real_path, (*policy.secret_files, *held_files()))
              if real is not None]
    protected: dict[Path, None] = {}
    files: dict[Path, None] = {}
    dirs: dict[Path, None] = {}
    for kind, real, is_dir in found:
        if kind == "protect" and any(real.is_relative_to(place) for place in writable):
            protected[real] = None  # anything else is read-only already
        elif kind == "secret":
            (dirs if is_dir else files)[real] = None
    # Nothing can be mounted inside a masked directory (it is empty and read-only): drop what lies there.
    masked = [path for path in sorted(dirs) if not any(path != other and path.is_relative_to(other) for other in dirs)]
    shown = [path for path in files if not any(path.is_relative_to(folder) for folder in masked)]
    return SandboxLayout(home=home, protected=tuple(sorted(protected)), secret_files=tuple(shown),
                         secret_dirs=tuple(masked), empty_file=_empty_file() if shown else Path("/dev/null"),
                         toolchains=_toolchains_in_tmp(workspace))


def _git_dirs_named_by(workspace: Path) -> list[Path]:
    """The git directory a `.git` file at the workspace root points to (a worktree, a submodule,
    --separate-git-dir), and its common directory: read-only too, wherever they are."""
    pointer = workspace / ".git"
    if not pointer.is_file() or pointer.is_symlink():
        return []
    try:
        text = pointer.read_text(errors="replace")
    except OSError:
        return []
    found = []
    if text.startswith("gitdir:") and (git_dir := real_path(workspace / text[7:].strip())) is not None:
        found.append(git_dir)
        with contextlib.suppress(OSError):
            common = (git_dir / "commondir").read_text().strip()
            found += [real for real in [real_path(git_dir / common)] if real is not None]
    return found


def _goalkeeper_home(workspace: Path) -> list[Path]:
    """$GOALKEEPER_HOME (the store, the server token, webhook secrets), masked whole wherever it lives.

    The runner's own environment names it (the commands' environment no longer has GOALKEEPER_*). A home
    that holds the workspace or this Python cannot be masked without hiding them: it is left visible.
    """
    real = real_path(goalkeeper_home())
    if real is None or not real.is_dir():
        return []
    needed = (str(workspace), *_interpreter())
    return [] if any(_within(place, str(real)) for place in needed) else [real]


@functools.cache
def _interpreter() -> tuple[str, str]:
    """This Python's prefixes, resolved (they do not move while it runs)."""
    return os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)


def _within(path: str, folder: str) -> bool:
    """`Path.is_relative_to` for resolved paths, on strings: it runs for every command."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _toolchains_in_tmp(workspace: Path) -> tuple[Path, ...]:
    """sys.prefix and the PATH directories that a private /tmp would hide (the workspace is bound anyway)."""
    places = [*_interpreter(), *(entry for entry in os.environ.get("PATH", "").split(os.pathsep) if entry)]
    found: dict[Path, None] = {}
    for place in places:
        real = os.path.realpath(place)
        if _within(real, "/tmp") and not _within(real, str(workspace)) and os.path.exists(real):
            found[Path(real)] = None
    return tuple(found)


def build_argv(policy: SandboxPolicy, command: str, layout: SandboxLayout, *, cwd: Path | None = None,
               bwrap: str = "bwrap", bash: str = "/bin/bash", script: Path | None = None) -> list[str]:
    """The bwrap command line running `command` under `policy`; pure (no filesystem access).

    With `script` (a file holding the command, see process.command_script) bash runs that file, bound
    read-only at the same path inside, instead of `-c command`: argv cannot carry a command over 128 KB.
    """
    run = [bash, str(script)] if script is not None else [bash, "-c", command]
    if policy.mode == "danger-full-access":
        return run
    workspace = str(policy.workspace)
    inside = _inside(policy)
    writes = policy.mode == "workspace-write"
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    if layout.home.is_relative_to("/tmp"):
        argv += ["--ro-bind-try", str(layout.home), str(layout.home)]  # a private /tmp must not hide $HOME
    for path in layout.toolchains:
        argv += ["--ro-bind-try", str(path), str(path)]
    for path in policy.extra_writable if writes else ():
        argv += ["--bind-try", str(path), str(path)]
    only = policy.writable_only
    argv += ["--bind" if writes and only is None else "--ro-bind", workspace, inside(policy.workspace)]
    for path in only if writes and only is not None else ():
        argv += ["--bind", str(path), inside(path)]  # a child agent's paths, over the read-only workspace
    for source, target in policy.ro_binds:
        argv += ["--ro-bind", str(source), inside(target)]
    for path in layout.protected:
        argv += ["--ro-bind", str(path), inside(path)]
    for path in layout.secret_dirs:
        argv += ["--tmpfs", inside(path), "--remount-ro", inside(path)]
    for path in layout.secret_files:
        argv += ["--ro-bind", str(layout.empty_file), inside(path)]
    argv += [] if policy.network else ["--unshare-net"]
    # Root keeps its capabilities inside bwrap unless told otherwise, and could simply remount / rw.
    argv += ["--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    argv += ["--setenv", "HOME", str(layout.home), "--setenv", "TMPDIR", "/tmp"]
    # $HOME is read-only here: tools that keep a cache under ~/.cache (go's build cache, pip) use the private /tmp.
    argv += ["--setenv", "XDG_CACHE_HOME", "/tmp/.cache"]
    argv += ["--ro-bind", str(script), str(script)] if script is not None else []
    argv += ["--chdir", inside(cwd or policy.workspace), "--", *run]
    return argv


def _inside(policy: SandboxPolicy) -> Callable[[Path], str]:
    """Maps a path below the workspace to where it appears inside the sandbox (see SandboxPolicy.bound_at)."""
    def inside(path: Path) -> str:
        if policy.bound_at is not None and path.is_relative_to(policy.workspace):
            return str(policy.bound_at / path.relative_to(policy.workspace))
        return str(path)
    return inside


def sandbox_argv(policy: SandboxPolicy, command: str, home: Path | None = None,
                 cwd: Path | None = None, script: Path | None = None) -> list[str]:
    """`build_argv` over what exists now; `home` defaults to this process's $HOME."""
    if policy.mode == "danger-full-access":
        return build_argv(policy, command, SandboxLayout(home=Path("/")), bash=_bash(), script=script)
    layout = scan_layout(policy, home or Path(os.environ.get("HOME") or Path.home()))
    return build_argv(policy, command, layout, cwd=cwd, bwrap=shutil.which("bwrap") or "bwrap", bash=_bash(),
                      script=script)


def warm_layout(policy: SandboxPolicy, home: Path | None = None) -> None:
    """Make the searches `sandbox_argv` will ask for (glob compilation, inotify watches: ~15 ms the first
    time) ahead of the first command: they are kept while nothing they depend on changes (scan.py), so a
    command whose policy has the same globs finds them ready."""
    if policy.mode != "danger-full-access":
        scan_layout(policy, home or Path(os.environ.get("HOME") or Path.home()))


def _bash() -> str:
    return shutil.which("bash") or "/bin/bash"


_EMPTY_PREFIX = "goalkeeper-sandbox-"
_empty_files: list[Path] = []


def _empty_file() -> Path:
    """An empty read-only file private to this process, bound over secret files (removed at exit).

    Not /dev/null: the sandbox mounts binds `nodev`, so a bound device cannot even be opened, and a
    secret should read as empty rather than as an error. Made again if something cleaned /tmp.
    """
    if _empty_files and _empty_files[-1].exists():
        return _empty_files[-1]
    for stale in left_by_the_dead(Path(tempfile.gettempdir()), _EMPTY_PREFIX):  # left by a killed runner
        shutil.rmtree(stale, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{_EMPTY_PREFIX}{os.getpid()}-"))
    (folder / "empty").touch(mode=0o444)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    _empty_files.append(folder / "empty")
    return folder / "empty"


def require_sandbox(policy: SandboxPolicy) -> None:
    """Raise SandboxError unless `policy` can be enforced here (bubblewrap installed and working)."""
    if policy.mode == "danger-full-access":
        return
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxError(f"bubblewrap is not installed, so sandbox mode {policy.mode!r} cannot be enforced",
                           hint=INSTALL_HINT)
    problem = _self_test(bwrap)
    if problem is not None:
        raise SandboxError(f"bubblewrap ({bwrap}) cannot create a sandbox here: {problem}",
                           hint="allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) "
                                "or run where bwrap works — or choose `sandbox = \"danger-full-access\"` "
                                "in [boundaries] explicitly")


@functools.cache
def _self_test(bwrap: str) -> str | None:
    """bwrap's complaint when it cannot build the sandbox's namespaces, else None (tried once per binary)."""
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--unshare-net",
            "--die-with-parent", "--cap-drop", "ALL", "--", "true"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit code {done.returncode}")


def _home(env: dict[str, str] | None) -> Path:
    home = (env if env is not None else os.environ).get("HOME")
    return Path(home) if home else Path.home()


def _checked_argv(policy: SandboxPolicy, command: str, home: Path, cwd: Path, script: Path) -> list[str]:
    """`require_sandbox`, then `sandbox_argv`: both read the filesystem, so they share one trip to a thread."""
    require_sandbox(policy)
    return sandbox_argv(policy, command, home, cwd, script)


async def run_sandboxed(policy: SandboxPolicy, command: str, cwd: Path, timeout_s: float,
                        env: dict[str, str] | None = None) -> CommandResult:
    """Run `command` with bash under `policy`, bounded in time, output bytes and process count.

    Raises SandboxError when the policy cannot be enforced; a refusal inside (EROFS, no network) is just
    the command's output and exit code. `env` is the command's whole environment; None inherits ours.
    """
    with command_script(command) as script:
        argv = await asyncio.to_thread(_checked_argv, policy, command, _home(env), cwd, script)
        async with process_limit(policy.max_processes) as limit:
            result = await run_command([*limit.prefix, *argv], cwd, timeout_s, env=env,
                                       max_capture_bytes=policy.max_output_bytes,
                                       new_session=policy.mode == "danger-full-access")  # else bwrap makes one
    return dataclasses.replace(result, command=command)


async def run_confined(sandbox: SandboxPolicy | None, command: str, cwd: Path, timeout_s: float,
                       env: dict[str, str] | None = None) -> CommandResult:
    """Run `command` under `sandbox`, or unconfined (plain `run_command`) when there is none."""
    if sandbox is None:
        return await run_command(command, cwd, timeout_s, env=env)
    return await run_sandboxed(sandbox, command, cwd, timeout_s, env=env)
