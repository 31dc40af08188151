"""Turns a path the model wrote into a real path inside the workspace, or refuses it.

Every file tool goes through `resolve_in_workspace`; nothing here reads or writes file contents.
"""

from __future__ import annotations

import os
from pathlib import Path


class PathRefused(ValueError):
    """A path the model named lies outside the workspace (or cannot be resolved); the message says why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"path {path!r} refused: {reason}")
        self.path = path
        self.reason = reason


def resolve_in_workspace(workspace: Path, path: str) -> Path:
    """The real (symlink-free) absolute path of `path`, relative paths taken from `workspace`.

    Refuses, with `PathRefused`, any path whose real location is outside the workspace: `..` that climbs
    out, an absolute path elsewhere, or a symlink that points out. The file need not exist.
    """
    root = workspace.resolve()
    if not path.strip():
        raise PathRefused(path, "the path is empty")
    if "\0" in path:
        raise PathRefused(path, "the path contains a NUL character")
    candidate = Path(path)
    joined = candidate if candidate.is_absolute() else root / candidate
    try:
        real = joined.resolve()
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop, on Python 3.11/3.12
        raise PathRefused(path, f"it cannot be resolved ({error})") from error
    if real.is_relative_to(root):
        return real
    if not Path(os.path.normpath(joined)).is_relative_to(root):
        if candidate.is_absolute():
            raise PathRefused(path, f"it is outside the workspace {root}; use a path inside it")
        raise PathRefused(path, f"'..' climbs out of the workspace {root}")
    raise PathRefused(path, f"it leads through a symlink to {real}, outside the workspace {root}")


def relative(workspace: Path, path: Path) -> str:
    """`path` (inside the workspace) as a workspace-relative posix string; "." for the root itself."""
    return path.relative_to(workspace.resolve()).as_posix()
