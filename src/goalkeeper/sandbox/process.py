"""Runs one shell command with a timeout, bounded output and a process-group kill.

Shared by the shell tool, the checks and the keep_green commands, so all three clean up alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Bytes of output kept in memory per stream; the rest is counted and dropped (head and tail kept).
MAX_CAPTURE_BYTES = 4 * 1024 * 1024

#: The shell every command string runs with.
BASH = "/bin/bash"
REAP_TIMEOUT_S = 10.0
"""How long a killed command's leader may take to be reaped before the call gives up waiting on it."""

#: Each command's script lives in `<tmp>/goalkeeper-command-<runner pid>-<random>/` while it runs.
_SCRIPT_PREFIX = "goalkeeper-command-"


@dataclass(frozen=True)
class CommandResult:
    """What a finished (or killed) command left behind."""

    command: str
    exit_code: int
    """Exit status; -N when killed by signal N; 124 on timeout (like coreutils `timeout`)."""
    output: str
    """stdout and stderr interleaved, head and tail kept when it exceeded MAX_CAPTURE_BYTES."""
    duration_s: float
    timed_out: bool
    truncated_bytes: int = 0
    """Bytes dropped from the middle of the output because it was too large to keep."""


class _Capture:
    """Keeps the first and last MAX_CAPTURE_BYTES/2 bytes of a stream."""

    def __init__(self, limit: int) -> None:
        self.half = limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        self.tail += chunk
        excess = len(self.tail) - self.half
        if excess > 0:
            del self.tail[:excess]
            self.dropped += excess

    def text(self) -> str:
        body = bytes(self.head)
        if self.dropped:
            body += f"\n[... {self.dropped} bytes dropped ...]\n".encode()
        body += bytes(self.tail)
        return body.decode("utf-8", errors="replace")


@contextlib.contextmanager
def command_script(command: str) -> Iterator[Path]:
    """`command` written to a private file for `bash FILE`, removed afterwards.

    A command of any size runs this way: argv (`bash -c CMD`) stops at 128 KB per argument (E2BIG), and
    an argument cannot hold a NUL byte. The command's own stdin stays /dev/null.
    """
    _sweep_stale_scripts()
    folder = Path(tempfile.mkdtemp(prefix=f"{_SCRIPT_PREFIX}{os.getpid()}-"))  # 0700: only this user reads it
    try:
        script = folder / "command.sh"
        with open(script, "wb", opener=lambda path, flags: os.open(path, flags, 0o600)) as handle:
            handle.write(command.encode("utf-8", "surrogateescape"))
        yield script
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def left_by_the_dead(parent: Path, prefix: str) -> list[Path]:
    """The entries of `parent` named `<prefix><pid>-…` whose process is gone: what a runner killed -9 left."""
    found = []
    for entry in parent.glob(f"{prefix}*-*"):
        owner = entry.name.removeprefix(prefix).split("-", 1)[0]
        if owner.isdigit() and not Path("/proc", owner).exists():
            found.append(entry)
    return found


@functools.cache
def _sweep_stale_scripts() -> None:
    """Remove the script folders of runners killed -9 (once per process: listing /tmp per command costs)."""
    for stale in left_by_the_dead(Path(tempfile.gettempdir()), _SCRIPT_PREFIX):
        shutil.rmtree(stale, ignore_errors=True)


def kill_group(pid: int) -> None:
    """SIGKILL the whole process group led by `pid`; a vanished group is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_command(
    command: str | list[str],
    cwd: Path,
    timeout_s: float,
    env: dict[str, str] | None = None,
    max_capture_bytes: int = MAX_CAPTURE_BYTES,
    new_session: bool = True,
) -> CommandResult:
    """Run `command` (a shell string, or argv) in its own process group and wait at most `timeout_s`.

    The group is killed on timeout and on cancellation, so no grandchild outlives the call. A shell string
    runs from a file (`command_script`), never through argv. The group is a new session too, so the
    command has no controlling terminal, unless `new_session` is False: only for a launcher that gives the
    command its own session (bwrap --new-session). A session costs 2-6 ms where the scheduler makes an
    autogroup for each one.
    """
    if isinstance(command, str):
        with command_script(command) as script:
            result = await run_command([BASH, str(script)], cwd, timeout_s, env, max_capture_bytes, new_session)
        return CommandResult(command=command, exit_code=result.exit_code, output=result.output,
                             duration_s=result.duration_s, timed_out=result.timed_out,
                             truncated_bytes=result.truncated_bytes)
    started = time.monotonic()
    kwargs: dict[str, object] = {
        "cwd": str(cwd),
        "stdin": asyncio.subprocess.DEVNULL,
        "stdout": asyncio.subprocess.PIPE,
        "stderr": asyncio.subprocess.STDOUT,
        "start_new_session": new_session,
        "process_group": None if new_session else 0,  # either way a new process group, which we can kill whole
        "env": env,
    }
    proc = await asyncio.create_subprocess_exec(*command, **kwargs)  # type: ignore[arg-type]
    shown = " ".join(command)
    capture = _Capture(max_capture_bytes)
    timed_out = False

    async def pump() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            capture.feed(chunk)

    both = asyncio.gather(pump(), proc.wait())
    # A cancelled call (pause, Ctrl-C) leaves the gather with an exception nobody awaits: retrieve it quietly.
    both.add_done_callback(lambda done: done.cancelled() or done.exception())
    try:
        await asyncio.wait_for(both, timeout=timeout_s)
    except TimeoutError:
        timed_out = True
    finally:
        kill_group(proc.pid)  # also reaps stragglers that kept running after the leader exited
        with contextlib.suppress(ProcessLookupError, TimeoutError):
            if proc.returncode is None:  # killed: reaped in milliseconds, but never waited on without a bound
                await asyncio.wait_for(proc.wait(), timeout=REAP_TIMEOUT_S)
    exit_code = 124 if timed_out else (proc.returncode if proc.returncode is not None else -9)
    return CommandResult(
        command=shown,
        exit_code=exit_code,
        output=capture.text(),
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
        truncated_bytes=capture.dropped,
    )
