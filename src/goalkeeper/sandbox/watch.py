"""Directory watches through Linux inotify: what changed in the watched folders since the last look.

Reads only the kernel's queue, without blocking: no thread and no polling loop. sandbox/scan.py uses it to
know when a cached search of the workspace is out of date. The kernel queues an event inside the system
call that made the change, so a change made by a command that has exited is always in the queue.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes

IN_ATTRIB = 0x4
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_UNMOUNT = 0x2000
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000

#: Entries made, removed, renamed or re-permissioned, and the folder itself going away. Not writes to files.
STRUCTURE = IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF

#: Events that say the watch itself can no longer be trusted (lost events, a folder gone or moved).
LOST = IN_Q_OVERFLOW | IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT

_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)


@dataclass(frozen=True)
class Change:
    """One event: the watch it came from, what happened, and the entry's name in that folder ('' for itself)."""

    watch: int
    mask: int
    name: str


@functools.cache
def _libc() -> ctypes.CDLL:
    import ctypes  # here, not at the top: loaded at the first watch, not by every command importing the sandbox

    return ctypes.CDLL(None, use_errno=True)


def _errno() -> int:
    import ctypes  # see _libc

    return ctypes.get_errno()


class FolderWatch:
    """One inotify instance; `add` folders, then `changes` says what happened in them since the last call.

    Raises OSError where inotify is missing or its limits (instances, watches) are used up.
    """

    def __init__(self) -> None:
        fd = _libc().inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(_errno(), "inotify_init1 failed")
        self.fd: int | None = fd

    def add(self, folder: str) -> int:
        """Watch `folder` (not following a symlink); the watch number its changes will carry."""
        assert self.fd is not None, "the watch is closed"
        number = _libc().inotify_add_watch(self.fd, os.fsencode(folder), STRUCTURE | IN_ONLYDIR | IN_DONT_FOLLOW)
        if number < 0:
            error = _errno()
            raise OSError(error, os.strerror(error), folder)
        return int(number)

    def changes(self) -> list[Change]:
        """Every event queued since the last call (an empty list when nothing changed)."""
        assert self.fd is not None, "the watch is closed"
        found: list[Change] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return found
            offset = 0
            while offset < len(data):
                watch, mask, _, size = _HEADER.unpack_from(data, offset)
                offset += _HEADER.size
                name = data[offset:offset + size].rstrip(b"\0")
                offset += size
                found.append(Change(watch, mask, os.fsdecode(name)))

    def remove(self, number: int) -> None:
        """Stop watching the folder of watch `number` (one the kernel already dropped, its folder gone, is fine)."""
        assert self.fd is not None, "the watch is closed"
        _libc().inotify_rm_watch(self.fd, number)

    def close(self) -> None:
        """Release the instance and its watches."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
