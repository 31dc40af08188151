"""Finds the existing paths that protect and secret globs cover under a folder, and keeps each search while
inotify says nothing it depends on changed.

A sandboxed command is built from what exists when it starts: a `.git`, `conftest.py` or `.env` made by
the last command must be protected or masked in the next. Searching the whole tree before every command
made that true at a cost that grew with the tree. Every searched folder is now watched; a later search
with the same globs returns the same result unless an entry was made, removed or renamed in a watched
folder whose name a glob covers (or a folder, or a `pyvenv.cfg`), the root was replaced, or a covered
symlink now leads elsewhere. Where a folder cannot be read or watched, the search is not kept.

All kept searches share one inotify instance (a user has 128): a batch keeps every goal's worktree, where one
instance each had room for four and each goal's next command searched its worktree again. Each change read from
the shared queue goes to every kept search watching its folder; when the kernel drops changes (the queue
overflowed), every kept search is searched afresh.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from goalkeeper.sandbox.globs import compile_path_glob
from goalkeeper.sandbox.watch import IN_ISDIR, IN_Q_OVERFLOW, LOST, Change, FolderWatch

#: Directories not searched for protected or secret files (the directory itself is still matched).
#: Dependency trees ship public CA bundles and test keys (certifi's cacert.pem): masking those would
#: break TLS, and they are not the user's secrets. A directory holding `pyvenv.cfg` counts as one too.
UNSEARCHED_DIRS = frozenset({".git", "node_modules", "__pycache__"})

#: Never bound over: they are the kernel's, and bwrap makes its own /dev and /proc.
_SYSTEM_TREES = (Path("/proc"), Path("/sys"), Path("/dev"))

#: Searches kept at once: a goal's workspace and $HOME under one or two sets of globs, for each goal of a batch
#: (one per worktree). All share one inotify instance, of the 128 a user has by default; the oldest is dropped.
_KEPT = 128

#: The most folders one kept search watches. Watches are counted per user (8,192 by default on older kernels)
#: and an editor's file watcher needs them too: a larger tree is searched before every command, as before.
MAX_WATCHED_FOLDERS = 4096

#: The most folders the kept searches watch in all (half the user's watches at most); the oldest are dropped.
_KEPT_FOLDERS = 4 * MAX_WATCHED_FOLDERS


@functools.cache
def _folder_budget() -> int:
    """_KEPT_FOLDERS, or half the user's watches where they are fewer (8,192 on older kernels)."""
    try:
        return min(_KEPT_FOLDERS, int(Path("/proc/sys/fs/inotify/max_user_watches").read_text()) // 2)
    except (OSError, ValueError):
        return MAX_WATCHED_FOLDERS


#: The changes a kept search holds until it is next asked about; past that it is searched afresh instead.
_MAX_CHANGES = 1000

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
    """A search still valid while the changes delivered to it (from the shared watch) include nothing that
    matters."""

    root_id: tuple[int, int]
    """The root's (device, inode) when it was searched: a root replaced by another folder is not watched."""
    globs: _Globs
    depth: int | None
    found: tuple[Found, ...]
    links: list[tuple[Path, Path | None, bool]]
    folders: dict[int, _Folder]
    """Its folders by watch number. Two searches of one folder share its number, and both get its changes."""
    changes: list[Change] = field(default_factory=list)
    """Delivered since the search (see _deliver), in the order the kernel queued them."""
    lost: bool = False
    """The shared queue overflowed: changes may be missing, so the search is never current again."""

    def current(self, root: Path) -> bool:
        """Whether a fresh search would find the same (call _deliver first, under the lock)."""
        try:
            if _identity(root) != self.root_id:
                return False
        except OSError:
            return False
        if self.lost or any(self._matters(change) for change in self.changes):
            return False
        self.changes.clear()  # none mattered: nothing to keep
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
    """A search with each folder watched (on the shared instance) before it is read: (what it found, the search
    to keep or None, whether inotify's limits are used up here). Under the lock: no change is delivered while it
    runs, so one made in a folder after its watch was added waits in the queue for the search's own turn."""
    try:
        root_id = _identity(root)
        watch = _watch()
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
        _unwatch(folders)
        return tuple(search.found), None, exhausted
    kept = _Kept(root_id, globs, depth, tuple(search.found), search.links, folders)
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
        _deliver()
        kept = _kept.pop(key, None)
        if kept is not None and kept.current(root):
            _kept[key] = kept
            return kept.found
        if kept is not None:
            _forget(key, kept)
        globs = _Globs.of(secrets, protect)
        if key in _unwatchable:
            return tuple(_search(root, globs, depth, None).found)
        found, kept, exhausted = _watched_search(root, globs, depth)
        if exhausted:
            _unwatchable.add(key)
        if kept is not None:
            _kept[key] = kept
            for number in kept.folders:
                _users.setdefault(number, set()).add(key)
            while len(_kept) > 1 and (len(_kept) > _KEPT or len(_users) > _folder_budget()):
                _forget(*_kept.popitem(last=False))
        return found


# The kept searches and their one inotify instance. Every function below runs under _lock.

def _watch() -> FolderWatch:
    """The shared instance, made at the first kept search."""
    global _shared, _shared_pid
    if _shared is None:
        _shared, _shared_pid = FolderWatch(), os.getpid()
    return _shared


def _deliver() -> None:
    """Read the shared queue and hand each change to every kept search that watches its folder."""
    global _shared
    if _shared is not None and _shared_pid != os.getpid():
        # A forked child: the queue is its parent's (reading it would steal the parent's changes, and the child's
        # own would never come), so the searches it inherited are dropped and it starts afresh.
        _shared.close()  # the child's copy of the descriptor only
        _shared = None
        _kept.clear()
        _users.clear()
    if _shared is None:
        return
    for change in _shared.changes():
        if change.mask & IN_Q_OVERFLOW:  # the kernel dropped changes: no kept search can be trusted
            for kept in _kept.values():
                kept.lost = True
            continue
        for key in _users.get(change.watch, ()):
            if (user := _kept.get(key)) is not None and not user.lost:
                user.changes.append(change)
                if len(user.changes) > _MAX_CHANGES:  # a busy tree nobody asked about: searched afresh when asked
                    user.lost, user.changes = True, []


def _forget(key: _Key, kept: _Kept) -> None:
    """`kept` (out of the table) leaves the watch: each of its folders no other kept search watches is
    unwatched."""
    for number in kept.folders:
        users = _users.get(number)
        if users is not None:
            users.discard(key)
    _unwatch(kept.folders)


def _unwatch(folders: dict[int, _Folder]) -> None:
    """Remove the watches among `folders` that no kept search uses."""
    if _shared is None:
        return
    for number in folders:
        if not _users.get(number):
            _users.pop(number, None)
            _shared.remove(number)


_Key = tuple[Path, tuple[str, ...], tuple[str, ...], int | None]
_lock = threading.Lock()
_kept: OrderedDict[_Key, _Kept] = OrderedDict()
_users: dict[int, set[_Key]] = {}
"""Each watched folder's number: the kept searches that watch it (the shared instance watches it while any do)."""
_shared: FolderWatch | None = None
_shared_pid = 0
_unwatchable: set[_Key] = set()

