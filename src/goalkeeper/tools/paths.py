"""Turns a path the model wrote into a real path inside the workspace, or refuses it; and says whether the
goal's boundaries let a file tool write (or read) it.

Every file tool goes through `resolve_in_workspace`, then `check_write` or `check_read`; nothing here
reads or writes file contents.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from goalkeeper.config.trust import HARNESS_PROTECT
from goalkeeper.sandbox.globs import first_path_match, first_secret_match, path_matches
from goalkeeper.sandbox.policy import SandboxPolicy


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


class BoundaryRefused(ValueError):
    """A write (or a secret's read) the goal's boundaries forbid; the message is the model's tool error."""


def check_write(workspace: Path, path: str, target: Path, policy: SandboxPolicy | None) -> None:
    """Refuse, with `BoundaryRefused`, writing `target` (the resolved form of `path` as the model wrote it).

    Never inside `.git/`, nor in the harness's own `.goalkeeper/` (its config.toml decides where goalkeeper
    sends keys and goal data); and under a policy: nothing in read-only mode, nothing `protect` covers, and
    only what `paths` covers when it is set. Both the real path and the path as written are checked, so
    a symlink can neither lead into a protected file nor dress one up as an allowed one.
    """
    for name in _names(workspace, path, target):
        if ".git" in name.split("/"):
            raise BoundaryRefused(f"refused: {name} is inside .git/, which only git itself changes; "
                                  "choose another approach")
        if first_path_match(HARNESS_PROTECT, name) is not None:
            raise BoundaryRefused(f"refused: {name} is inside .goalkeeper/, goalkeeper's own configuration, which "
                                  "only the person changes; choose another approach")
        if policy is None:
            continue
        if policy.mode == "read-only":
            raise BoundaryRefused(f"refused: {name} cannot be written: this goal's sandbox is read-only; "
                                  "choose another approach")
        if first_path_match(policy.protect, name) is not None:
            raise BoundaryRefused(f"refused: {name} is protected by the goal contract "
                                  f"(protect = {json.dumps(list(policy.protect))}); choose another approach")
        if policy.paths and not any(path_matches(glob, name) for glob in policy.paths):
            raise BoundaryRefused(f"refused: {name} is outside boundaries.paths {json.dumps(list(policy.paths))}; "
                                  "change only files there, or choose another approach")


def check_read(workspace: Path, path: str, target: Path, policy: SandboxPolicy | None) -> None:
    """Refuse, with `BoundaryRefused`, reading a file a secret glob covers (`.env`, keys); others may be read."""
    if policy is None:
        return
    for name in _names(workspace, path, target):
        secret = first_secret_match(policy.secrets, name, workspace)
        if secret is not None:
            raise BoundaryRefused(f"refused: {name} matches the secret glob {secret!r}; secrets are never "
                                  "shown to the model, so work without its contents")


def _names(workspace: Path, path: str, target: Path) -> list[str]:
    """The workspace-relative names of a resolved `target`: its real one, and the one `path` spells."""
    root = workspace.resolve()
    names = [relative(workspace, target)]
    written = Path(path)
    lexical = Path(os.path.normpath(written if written.is_absolute() else root / written))
    if lexical.is_relative_to(root):
        names.append(lexical.relative_to(root).as_posix())
    return list(dict.fromkeys(names))
