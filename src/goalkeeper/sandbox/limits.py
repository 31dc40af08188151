"""Bounds how many processes one sandboxed command may run at once, so a fork bomb stops at the limit.

RLIMIT_NPROC does not bind root (the kernel exempts it), so a fresh cgroup with the pids controller is
the first choice; `prlimit --nproc` is the fallback for other users; without either, the command runs
unbounded and `describe()` says so. Nothing here decides policy: the caller passes the number.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from goalkeeper.sandbox.process import left_by_the_dead

LimitMechanism = Literal["cgroup-v1", "cgroup-v2", "prlimit", "none"]

#: Every cgroup this module creates is named `goalkeeper-<runner pid>-<n>`, so stale ones can be found.
CGROUP_PREFIX = "goalkeeper-"

#: How long to keep killing a cgroup's leftovers before giving up on removing it.
RELEASE_WAIT_S = 5.0

#: The longest wait on the processes listed in a cgroup before listing (and killing) them again.
MEMBER_WAIT_S = 0.1

#: Places the command in the cgroup given as $1, then becomes the command: nothing runs outside it.
#: On v1 the shell moves its one thread (`0` in `tasks`: the writer itself). Moving a whole process through
#: `cgroup.procs` takes a global lock whose writer waits for an RCU grace period: 5-12 ms a command on a
#: loaded machine, against 0.1 ms. cgroup v2 has no `tasks` file outside threaded cgroups.
_ENTER_CGROUP: dict[LimitMechanism, str] = {
    "cgroup-v1": 'echo 0 > "$1/tasks" && shift && exec "$@"',
    "cgroup-v2": 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"',
}

_counter = itertools.count()


@dataclass(frozen=True)
class ProcessLimit:
    """How one command's process count is bounded: an argv prefix, and the cgroup to remove afterwards."""

    mechanism: LimitMechanism
    max_processes: int
    prefix: tuple[str, ...] = ()
    """Put in front of the command's argv; it applies the limit and then execs the command."""
    cgroup: Path | None = None
    """The command's own cgroup (cgroup mechanisms only); removed when the command ends."""

    def peak(self) -> int | None:
        """The most processes the cgroup held at once so far (None where the kernel does not say)."""
        if self.cgroup is None:
            return None
        try:
            return int((self.cgroup / "pids.peak").read_text())
        except (OSError, ValueError):
            return None


def _mountinfo_cgroups() -> list[tuple[str, str, str]]:
    """(mount point, mounted root, super options) of each cgroup and cgroup2 mount of this process."""
    mounts = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields, _, tail = line.partition(" - ")
            parts, tail_parts = fields.split(), tail.split()
            if len(parts) >= 5 and len(tail_parts) >= 3 and tail_parts[0] in ("cgroup", "cgroup2"):
                mounts.append((parts[4], parts[3], tail_parts[0] + "," + tail_parts[2]))
    return mounts


def _own_cgroup(hierarchy: str) -> str | None:
    """This process's cgroup path in the v1 hierarchy named by its controller, or in v2 ("")."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if hierarchy in controllers.split(",") or (hierarchy == "" and controllers == ""):
                return path
    return None


def _parent_dirs() -> list[tuple[LimitMechanism, Path]]:
    """Where a child cgroup with a pids controller could be created, best first."""
    found: list[tuple[LimitMechanism, Path]] = []
    for mount_point, root, options in _mountinfo_cgroups():
        kind: LimitMechanism = "cgroup-v2" if options.startswith("cgroup2,") else "cgroup-v1"
        if kind == "cgroup-v1" and "pids" not in options.split(","):
            continue
        own = _own_cgroup("pids" if kind == "cgroup-v1" else "")
        if own is None or not own.startswith(root):
            continue
        found.append((kind, Path(mount_point) / own[len(root):].lstrip("/")))
    return sorted(found, key=lambda item: item[0] != "cgroup-v1")  # v1 first: no delegation rules


def _create_cgroup(kind: LimitMechanism, parent: Path, max_processes: int) -> Path | None:
    """A fresh child cgroup of `parent` holding at most `max_processes`; None when that is not allowed."""
    if kind == "cgroup-v2":
        with contextlib.suppress(OSError):
            (parent / "cgroup.subtree_control").write_text("+pids")
    child = parent / f"{CGROUP_PREFIX}{os.getpid()}-{next(_counter)}"
    try:
        child.mkdir()
    except OSError:
        return None
    try:
        (child / "pids.max").write_text(str(max_processes))
    except OSError:
        with contextlib.suppress(OSError):
            child.rmdir()
        return None
    return child


@functools.cache
def cgroup_parent() -> tuple[LimitMechanism, Path] | None:
    """The first place where a probe cgroup could be made and limited (tried once per process)."""
    for kind, parent in _parent_dirs():
        probe = _create_cgroup(kind, parent, 1)
        if probe is not None:
            with contextlib.suppress(OSError):
                probe.rmdir()
            return kind, parent
    return None


def mechanism() -> LimitMechanism:
    """Which mechanism bounds the process count here."""
    found = cgroup_parent()
    if found is not None:
        return found[0]
    if os.geteuid() != 0 and shutil.which("prlimit") is not None:
        return "prlimit"
    return "none"


def describe() -> str:
    """One line saying how (and whether) the process count of sandboxed commands is bounded here."""
    found = cgroup_parent()
    if found is not None:
        return f"process count bounded by a {found[0]} pids cgroup under {found[1]}"
    if mechanism() == "prlimit":
        return "process count bounded by `prlimit --nproc` (RLIMIT_NPROC counts all of this user's processes)"
    why = "running as root, which RLIMIT_NPROC does not bind" if os.geteuid() == 0 else "prlimit is not installed"
    return f"process count NOT bounded: no writable cgroup with a pids controller, and {why}"


@contextlib.asynccontextmanager
async def process_limit(max_processes: int) -> AsyncIterator[ProcessLimit]:
    """A limit for one command; on exit, whatever is left in its cgroup is killed and the cgroup removed."""
    found = cgroup_parent()
    cgroup = None
    if found is not None:
        sweep_stale_cgroups(found[1])
        cgroup = _create_cgroup(found[0], found[1], max_processes)
    if found is not None and cgroup is not None:
        enter = ("/bin/sh", "-c", _ENTER_CGROUP[found[0]], "sh", str(cgroup))
        limit = ProcessLimit(found[0], max_processes, enter, cgroup)
    elif mechanism() == "prlimit":
        limit = ProcessLimit("prlimit", max_processes, ("prlimit", f"--nproc={max_processes}", "--"))
    else:
        limit = ProcessLimit("none", max_processes)
    try:
        yield limit
    finally:
        if limit.cgroup is not None:
            await release_cgroup(limit.cgroup)


async def release_cgroup(cgroup: Path, wait_s: float = RELEASE_WAIT_S) -> bool:
    """Kill every process left in `cgroup`, then remove it. False if it could not be removed in time.

    A killed process leaves the cgroup only once it has exited; the kernel says when through a pidfd, so
    this waits on the processes themselves instead of retrying the removal on a timer.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        _kill_members(cgroup)
        try:
            cgroup.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if loop.time() > deadline:
                return False
        await _members_exit(cgroup, min(deadline - loop.time(), MEMBER_WAIT_S))


async def _members_exit(cgroup: Path, timeout_s: float) -> None:
    """Return once every process now in `cgroup` has exited, or after `timeout_s` (a member's pid could have
    been reused meanwhile: the caller kills and looks again)."""
    members = _members(cgroup)
    handles: list[int] = []
    try:
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                handles.append(os.pidfd_open(pid))
        if handles:
            await _exited(handles, timeout_s)
        else:  # all gone since the listing (look again now), or busy with none listed (a process mid-exit)
            await asyncio.sleep(0 if members else 0.001)
    except OSError:
        await asyncio.sleep(0.001)  # no pidfds here (Linux < 5.3)
    finally:
        for handle in handles:
            os.close(handle)


async def _exited(handles: list[int], timeout_s: float) -> None:
    """Wait until each pidfd in `handles` says its process exited (the kernel makes it readable then)."""
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[None]] = []
    for handle in handles:
        future: asyncio.Future[None] = loop.create_future()
        loop.add_reader(handle, _settle, future)
        futures.append(future)
    try:
        await asyncio.wait(futures, timeout=timeout_s)
    finally:
        for handle in handles:
            loop.remove_reader(handle)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _members(cgroup: Path) -> list[int]:
    """The processes in `cgroup` now (none when it is gone)."""
    try:
        listed = [int(pid) for pid in (cgroup / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []
    return [pid for pid in listed if pid > 0]  # 0: not visible from here; kill(0) would hit our own group


def _kill_members(cgroup: Path) -> None:
    kill_all = cgroup / "cgroup.kill"  # cgroup v2 (Linux 5.14+): one write kills the whole cgroup at once
    if kill_all.exists():
        with contextlib.suppress(OSError):
            kill_all.write_text("1")
            return
    for pid in _members(cgroup):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def sweep_stale_cgroups(parent: Path) -> None:
    """Remove empty cgroups left by runners that died (their pid is gone) before cleaning up."""
    with contextlib.suppress(OSError):
        for child in left_by_the_dead(parent, CGROUP_PREFIX):
            _kill_members(child)
            with contextlib.suppress(OSError):
                child.rmdir()
