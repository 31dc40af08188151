"""Finds the existing paths that protect and secret globs cover under a folder, and keeps each search while
inotify says nothing it depends on changed.

A sandboxed command is built from what exists when it starts: a `.git`, `conftest.py` or `.env` made by
the last command must be protected or masked in the next. Searching the whole tree before every command
made that true at a cost that grew with the tree. Every searched folder is now watched; a later search
with the same globs returns the same result unless an entry was made, removed or renamed in a watched
folder whose name a glob covers (or a folder, or a `pyvenv.cfg`), the root was replaced, or a covered
symlink now leads elsewhere. Where a folder cannot be read or watched, the search is not kept.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from goalkeeper.sandbox.globs import compile_path_glob
from goalkeeper.sandbox.watch import IN_ISDIR, LOST, Change, FolderWatch

#: Directories not searched for protected or secret files (the directory itself is still matched).
#: Dependency trees ship public CA bundles and test keys (certifi's cacert.pem): masking those would
#: break TLS, and they are not the user's secrets. A directory holding `pyvenv.cfg` counts as one too.
UNSEARCHED_DIRS = frozenset({".git", "node_modules", "__pycache__"})

#: Never bound over: they are the kernel's, and bwrap makes its own /dev and /proc.
_SYSTEM_TREES = (Path("/proc"), Path("/sys"), Path("/dev"))

#: Searches kept at once (a goal's workspace and $HOME, under one or two sets of globs); the oldest is dropped.
#: Each holds one inotify instance, of the 128 a user has by default.
_KEPT = 4

#: The most folders one kept search watches. Watches are counted per user (8,192 by default on older kernels)
#: and an editor's file watcher needs them too: a larger tree is searched before every command, as before.
MAX_WATCHED_FOLDERS = 4096

#: Watch errors that mean inotify's limits are used up here: such a tree is searched every time.
_EXHAUSTED = frozenset({errno.ENOSPC, errno.EMFILE, errno.ENFILE, errno.ENOSYS})

RuleKind = Literal["protect", "secret"]
Found = tuple[RuleKind, Path, bool]
"""(kind, real path, is a directory) of one covered entry."""


def real_path(path: Path) -> Path | None:
    """`path` with symlinks resolved, or None when it leads nowhere or into a kernel tree."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return None if any(real.is_relative_to(tree) for tree in _SYSTEM_TREES) else real


@dataclass(frozen=True)
class _Globs:
    """The compiled globs of one search."""

    secrets: list[re.Pattern[str]]
    secret_dirs: list[re.Pattern[str]]
    """The secret globs ending in `/`: only they mask a directory."""
    protect: list[re.Pattern[str]]

    @classmethod
    def of(cls, secrets: tuple[str, ...], protect: tuple[str, ...]) -> _Globs:
        return cls(_compiled(secrets), _compiled(tuple(glob for glob in secrets if glob.strip().endswith("/"))),
                   _compiled(protect))

    def covers(self, relative: str, protecting: list[re.Pattern[str]]) -> bool:
        """Whether any glob could cover `relative` (a directory's or a file's)."""
        return any(glob.match(relative) for glob in (*self.secrets, *protecting))

    def kind(self, relative: str, is_dir: bool, protecting: list[re.Pattern[str]]) -> RuleKind | None:
        """Secrets are asked first, so a protected secret is still masked. A secret glob masks a directory only
        when it ends in `/` (`.ssh/`): `.env*` hides the files `.env` and `.env.local`, not a virtualenv `.env/`."""
        if any(glob.match(relative) for glob in (self.secret_dirs if is_dir else self.secrets)):
            return "secret"
        return "protect" if any(glob.match(relative) for glob in protecting) else None


def _compiled(globs: tuple[str, ...]) -> list[re.Pattern[str]]:
    return [regex for regex in map(compile_path_glob, globs) if regex is not None]


@dataclass(frozen=True)
class _Folder:
    """A searched folder, as its watch knows it."""

    prefix: str
    """Its path relative to the root, with a trailing `/` ('' for the root)."""
    level: int
    protecting: list[re.Pattern[str]]
    """The protect globs that still apply inside (none inside a protected folder: it is read-only whole)."""
    searched: bool = True
    """False for a virtualenv: watched only for its `pyvenv.cfg`."""


@dataclass
class _Search:
    """What one search found, and what it needs to know to stay current."""

    found: list[Found] = field(default_factory=list)
    links: list[tuple[Path, Path | None, bool]] = field(default_factory=list)
    """Covered symlinks, their real path and whether it is a directory: a target elsewhere can change without
    an event here."""
    complete: bool = True
    """False when a folder could not be read or watched: then the search is not kept."""


Watcher = Callable[[str, _Folder], bool]
"""Called before a folder is read; False when it could not be watched."""


def _search(root: Path, globs: _Globs, depth: int | None, watch: Watcher | None) -> _Search:
    """Each entry under `root` a glob covers, top-down. Only a covered entry's symlinks are resolved."""
    search = _Search()
    pending: list[tuple[str, _Folder]] = [(str(root), _Folder("", 1, globs.protect))]
    while pending:
        directory, folder = pending.pop()
        if watch is not None and not watch(directory, folder):
            search.complete = False
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError:
            search.complete = False
            continue
        for entry in entries:
            kind = _visit(entry, folder, globs, search)
            searchable = entry.is_dir(follow_symlinks=False) and (depth is None or folder.level < depth)
            if not searchable or kind == "secret" or entry.name in UNSEARCHED_DIRS:
                continue
            protecting = folder.protecting if kind is None else []
            inside = _Folder(folder.prefix + entry.name + "/", folder.level + 1, protecting)
            if not os.path.exists(os.path.join(entry.path, "pyvenv.cfg")):
                pending.append((entry.path, inside))
            elif watch is not None and not watch(entry.path, dataclasses.replace(inside, searched=False)):
                search.complete = False  # a virtualenv is not searched, but its pyvenv.cfg going away must be seen
    return search


def _visit(entry: os.DirEntry[str], folder: _Folder, globs: _Globs, search: _Search) -> RuleKind | None:
    """The kind of a covered entry (recorded in `search` when it leads somewhere), else None."""
    relative = folder.prefix + entry.name
    if not globs.covers(relative, folder.protecting):
        return None
    real = real_path(Path(entry.path))
    is_dir = real is not None and real.is_dir()
    kind = globs.kind(relative, is_dir, folder.protecting)
    if entry.is_symlink():
        search.links.append((Path(entry.path), real, is_dir))
    if kind is not None and real is not None:
        search.found.append((kind, real, is_dir))
    return kind


@dataclass
class _Kept:
    """A search still valid while its watch reports nothing that matters."""

    root_id: tuple[int, int]
    """The root's (device, inode) when it was searched: a root replaced by another folder is not watched."""
    globs: _Globs
    depth: int | None
    found: tuple[Found, ...]
    links: list[tuple[Path, Path | None, bool]]
    watch: FolderWatch
    folders: dict[int, _Folder]

    def current(self, root: Path) -> bool:
        """Whether a fresh search would find the same (the watch's queue is read, so ask once per use)."""
        try:
            if _identity(root) != self.root_id:
                return False
            changes = self.watch.changes()
        except OSError:
            return False
        if any(self._matters(change) for change in changes):
            return False
        return all(_leads_to(path) == (real, is_dir) for path, real, is_dir in self.links)

    def _matters(self, change: Change) -> bool:
        """Whether `change` could alter what a search finds (a write to a file never does)."""
        folder = self.folders.get(change.watch)
        if folder is None or change.mask & LOST:
            return True
        if not change.name or not folder.searched:
            # The folder's own attributes (its parent's watch sees it too), or a virtualenv's contents.
            return change.name == "pyvenv.cfg"
        if self.globs.covers(folder.prefix + change.name, folder.protecting) or change.name == "pyvenv.cfg":
            return True
        # A folder made, removed or renamed where folders are searched: its contents are (or were) searched.
        return bool(change.mask & IN_ISDIR) and (self.depth is None or folder.level < self.depth)


def _identity(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


def _leads_to(path: Path) -> tuple[Path | None, bool]:
    real = real_path(path)
    return real, real is not None and real.is_dir()


def _watched_search(root: Path, globs: _Globs, depth: int | None) -> tuple[tuple[Found, ...], _Kept | None, bool]:
    """A search with each folder watched before it is read: (what it found, the search to keep or None,
    whether inotify's limits are used up here)."""
    try:
        root_id = _identity(root)
        watch = FolderWatch()
    except OSError as error:
        return tuple(_search(root, globs, depth, None).found), None, error.errno in _EXHAUSTED
    folders: dict[int, _Folder] = {}
    exhausted = False

    def add(directory: str, folder: _Folder) -> bool:
        nonlocal exhausted
        if len(folders) >= MAX_WATCHED_FOLDERS:
            exhausted = True
            return False
        try:
            number = watch.add(directory)
        except OSError as error:
            exhausted = exhausted or error.errno in _EXHAUSTED
            return False
        # The same folder reached twice (a bind mount inside the tree): its events could be read wrongly.
        return folders.setdefault(number, folder) is folder

    search = _search(root, globs, depth, add)
    if not search.complete:
        watch.close()
        return tuple(search.found), None, exhausted
    kept = _Kept(root_id, globs, depth, tuple(search.found), search.links, watch, folders)
    return kept.found, kept, False


def find(root: Path, secrets: tuple[str, ...], protect: tuple[str, ...], depth: int | None,
         keep: bool = True) -> tuple[Found, ...]:
    """What a search of `root` (a resolved folder) would find now: each entry a secret glob or a protect glob
    covers, to `depth` levels (None: all). A kept search is returned while nothing it depends on changed;
    `keep=False` searches without watching (a tree searched once, like a clean room)."""
    key = (root, secrets, protect, depth)
    if not keep:
        return tuple(_search(root, _Globs.of(secrets, protect), depth, None).found)
    with _lock:
        kept = _kept.pop(key, None)
        if kept is not None and kept.current(root):
            _kept[key] = kept
            return kept.found
        if kept is not None:
            kept.watch.close()
        globs = _Globs.of(secrets, protect)
        if key in _unwatchable:
            return tuple(_search(root, globs, depth, None).found)
        found, kept, exhausted = _watched_search(root, globs, depth)
        if exhausted:
            _unwatchable.add(key)
        if kept is not None:
            _kept[key] = kept
            while len(_kept) > _KEPT:
                _kept.popitem(last=False)[1].watch.close()
        return found


_lock = threading.Lock()
_kept: OrderedDict[tuple[Path, tuple[str, ...], tuple[str, ...], int | None], _Kept] = OrderedDict()
_unwatchable: set[tuple[Path, tuple[str, ...], tuple[str, ...], int | None]] = set()

