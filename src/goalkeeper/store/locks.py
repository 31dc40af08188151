"""Finds which process holds the store's file lock, and whether a process is still alive.

Linux /proc only; elsewhere every answer degrades to "unknown process". Never raises.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path

_CMDLINE_CHARS = 160


def describe_process(pid: int) -> str:
    """`pid 123 (python -m goalkeeper run)`, or just `pid 123` when its command line cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"pid {pid}"
    cmdline = " ".join(raw.replace(b"\0", b" ").decode(errors="replace").split())
    if len(cmdline) > _CMDLINE_CHARS:
        cmdline = cmdline[: _CMDLINE_CHARS - 3] + "..."
    return f"pid {pid} ({cmdline})" if cmdline else f"pid {pid}"


def process_is_alive(pid: int) -> bool:
    """True when `pid` exists on this host and is not on its way out: a zombie, a process inside its exit, or
    one with SIGKILL pending.

    Each of those still answers `kill(pid, 0)` (and may still show its working directory and open files in
    /proc until the scheduler runs its exit), but it will never heartbeat or write again, so it counts as gone.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, it just belongs to another user
    with contextlib.suppress(OSError, IndexError, ValueError):
        # The state letter follows the parenthesised command name, which may itself contain ") "; the task's
        # flags are the seventh field after it.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X") or int(fields[6]) & _PF_EXITING:
            return False
        return not any(line.startswith(("SigPnd:", "ShdPnd:")) and int(line.split()[1], 16) & _SIGKILL_BIT
                       for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return True


_PF_EXITING = 0x4  # the kernel's task flag for a process inside its exit
_SIGKILL_BIT = 1 << (9 - 1)  # SIGKILL in /proc's pending-signal masks


def describe_lock_holders(db_path: Path) -> str:
    """Who is keeping `db_path` locked, in words, for an error message.

    First choice: the processes holding a write lock on the database or its -shm file (from /proc/locks;
    SQLite takes the WAL write lock as a POSIX lock there). Fallback: every other process that has one of
    the files open. Last resort: "unknown process".
    """
    files = _store_files(db_path)
    me = os.getpid()
    writers = _write_lock_pids(files)
    if writers:
        others = sorted(writers - {me})
        if not others:
            return f"another connection in this process ({describe_process(me)})"
        return ", ".join(describe_process(pid) for pid in others)
    openers = sorted(_pids_with_open(files) - {me})
    if openers:
        return ", ".join(describe_process(pid) for pid in openers) + " (which have it open)"
    return "unknown process"


def _store_files(db_path: Path) -> list[Path]:
    real = Path(os.path.realpath(db_path))
    return [real, real.with_name(real.name + "-wal"), real.with_name(real.name + "-shm")]


def _write_lock_pids(files: list[Path]) -> set[int]:
    """Pids holding a POSIX WRITE lock on any of `files`, read from /proc/locks."""
    wanted: set[str] = set()
    for file in files:
        with contextlib.suppress(OSError):
            st = file.stat()
            wanted.add(f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}")
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return set()
    pids: set[int] = set()
    for line in lines:
        # "1: POSIX  ADVISORY  WRITE 4289 fe:00:2146756 120 120"; waiters have "->" after the number.
        parts = line.split()
        if len(parts) < 6 or parts[1] == "->" or parts[3] != "WRITE" or parts[5] not in wanted:
            continue
        with contextlib.suppress(ValueError):
            pids.add(int(parts[4]))
    return pids - {0, -1}  # 0 or -1: a lock from outside our pid namespace, or an OFD lock


def _pids_with_open(files: list[Path]) -> set[int]:
    """Pids with any of `files` open, by reading the /proc/*/fd symlinks we are allowed to read."""
    targets = {str(file) for file in files}
    pids: set[int] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return pids
    for entry in entries:
        if not entry.isdigit():
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or another user's process
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target in targets:
                pids.add(int(entry))
                break
    return pids


def holder_is_live(host: str, pid: int, heartbeat_at: float, stale_after_s: float = 15.0, *,
                   now: float | None = None) -> bool:
    """True while a lease's holder can be presumed to be running (store/leases.lease_is_live says why)."""
    now = time.time() if now is None else now
    if now - heartbeat_at > stale_after_s:
        return False
    if host == socket.gethostname():
        return process_is_alive(pid)
    return True  # another host: its heartbeat is all we can see
