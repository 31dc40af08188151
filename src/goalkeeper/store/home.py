"""Where goalkeeper keeps its own files: $GOALKEEPER_HOME, by default ~/.goalkeeper (the store, the user's
config.toml, mirrors, worktrees' neighbour). The standard library only: every read command asks it first."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from goalkeeper.errors import StoreError


def goalkeeper_home() -> Path:
    """`$GOALKEEPER_HOME`, by default `~/.goalkeeper` (the store lives there too)."""
    home = os.environ.get("GOALKEEPER_HOME")
    return Path(home).expanduser() if home else Path.home() / ".goalkeeper"


def private_directory(directory: Path) -> Path:
    """`directory`, made 0700 if it does not exist (its missing parents get the usual mode)."""
    with os_errors(directory):
        directory.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            if not directory.is_dir():
                raise StoreError(f"{directory} is not a folder, so it cannot hold goalkeeper's store",
                                 hint="point GOALKEEPER_HOME at a folder") from None
        else:
            os.chmod(directory, 0o700)  # the umask may have taken bits from it
    return directory


@contextmanager
def os_errors(path: Path) -> Iterator[None]:
    """An OSError while preparing the store's files, as a StoreError that names the file and the fix."""
    try:
        yield
    except OSError as error:
        where = error.filename or path
        if error.errno == errno.ENOSPC:
            raise StoreError(f"the disk holding {where} is full, so the store cannot be made",
                             hint=f"free space on that file system (df -h {path.parent}), then run the command "
                             "again") from None
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise StoreError(f"cannot write {where}: {error.strerror} (goalkeeper keeps its store there)",
                             hint="make that folder writable by you, or point GOALKEEPER_HOME at a writable "
                             "folder") from None
        raise StoreError(f"cannot prepare the store at {where}: {error.strerror or error}",
                         hint="point GOALKEEPER_HOME at a folder on a local, writable file system") from None
