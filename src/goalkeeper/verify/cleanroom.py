"""The clean room: the tree a verdict is taken on, built from the harness's own baseline objects.

Baseline tree (from the mirror) + the goal's changes − its changes to the verification surface + the
environment snapshot taken at baseline. Nothing else comes from the workspace: not its `.git`, not its
ignored files, not its bytecode.

Built cheaply: the base commit is checked out once per goal into a private cache, and each room is a hardlink
copy of it (`cp -al`) with the goal's changes written as new files (never into a shared inode). Inside the
sandbox the room is bound at the workspace's own path, so absolute paths in configs still work; the
environment snapshot is bound read-only over it, and the room's own folders are writable scratch that is
thrown away. A check that writes in place into a cached baseline file is caught afterwards (size and mtime)
and the cache is made again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import filecmp
import json
import os
import py_compile
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from goalkeeper.errors import SandboxError, WorkspaceError
from goalkeeper.events import BaselineMirrorEvent, Evidence
from goalkeeper.sandbox.bwrap import require_sandbox
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.spec.contract import Contract
from goalkeeper.store.home import private_directory
from goalkeeper.verify import TAMPERING
from goalkeeper.verify import mirror as mirrors
from goalkeeper.verify.checks import run_checks
from goalkeeper.verify.envsnap import (
    EarlyBase,
    EnvSnapshot,
    link_copy,
    load_snapshot,
    take_snapshot,
    workspace_stamp,
    written_through,
)
from goalkeeper.verify.mirror import make_mirror
from goalkeeper.verify.observed import Change, Surface
from goalkeeper.workspace.checkpoints import remove_path
from goalkeeper.workspace.git import probe, toplevel

#: Where bytecode goes inside the sandbox (its /tmp is private): never next to the sources.
PYCACHE_INSIDE = "/tmp/goalkeeper-pycache"

#: Path parts never taken from the workspace: bytecode is never reused, git is the harness's.
NEVER_COPIED = frozenset({"__pycache__", ".git"})

CACHE_MANIFEST = "base.json"

#: Baseline Python files compiled at most (at goal start, and again if the base checkout is remade).
MAX_COMPILED = 20_000

#: The ioctl that makes `dest` share `src`'s blocks (a reflink: btrfs, XFS); linux/fs.h's FICLONE.
FICLONE = 0x40049409

SEEN = "unchanged.json"
"""Workspace files known to equal their baseline, by stat (size, mtime, ctime, inode): not read again while
their stat is the same. A forged stat can only make the room take the baseline content, never the model's."""


@dataclass(frozen=True)
class Baseline:
    """What a clean room is built from: the mirror, the base commit, the environment snapshot, a cache folder."""

    mirror: Path
    commit: str
    env: EnvSnapshot | None
    folder: Path
    """$GOALKEEPER_HOME/rooms/<goal_id>: the base checkout and the rooms themselves (same file system as the
    snapshot, so hardlinks work)."""


@dataclass
class RoomChanges:
    """The goal's changes against the base commit (top-level-relative), and which of them the room took."""

    taken: list[tuple[str, Change]] = field(default_factory=list)
    held_back: list[tuple[str, Change]] = field(default_factory=list)

    def payload(self) -> dict[str, object]:
        """For the evidence event."""
        return {"taken": len(self.taken), "held_back": [f"{path} ({change})" for path, change in self.held_back]}


# ---------------------------------------------------------------- at goal start


def keep_baseline(workspace: Path, goal_id: str, commit: str, recorded: BaselineMirrorEvent | None,
                  early: EarlyBase | None = None) -> BaselineMirrorEvent:
    """Make the goal's baseline mirror and environment snapshot (first run), or find them again (a resume);
    returns the `baseline_mirror` event.

    A resumed goal whose mirror is gone gets a new one only if the workspace still holds the base commit
    intact; a snapshot that is gone cannot be taken again (the model has run since): both are errors.
    """
    if recorded is not None:
        return _found_again(workspace, recorded)
    if early is not None and early.commit == commit:
        # Taken before the baseline's head start ran anything: the mirror only reads git's objects.
        env = early.adopt(mirrors.goal_folder("envs", goal_id))
        path = make_mirror(workspace, commit, mirrors.mirror_path(goal_id))
        stamps = early.stamps
    else:
        with ThreadPoolExecutor(1) as pool:
            # The snapshot (hardlinks of the ignored folders) and the mirror (git's objects) share nothing.
            snapshot = pool.submit(take_snapshot, workspace, mirrors.goal_folder("envs", goal_id))
            path = make_mirror(workspace, commit, mirrors.mirror_path(goal_id))
            env = snapshot.result()
        stamps = None
    payload = BaselineMirrorEvent(mirror=str(path), base_commit=commit, env=str(env.root), env_dirs=list(env.dirs),
                                  env_skipped=list(env.skipped), resumed=False)
    # Also before anything runs: the stat of every workspace file of the base commit (all equal the base).
    top = toplevel(workspace)
    _save_seen(baseline_of(payload, goal_id), {
        name: stamp for name in mirrors.base_entries(path, commit)
        if (stamp := workspace_stamp(top / name) if stamps is None else stamps.get(name))})
    return payload


def make_base_cache(workspace: Path, recorded: BaselineMirrorEvent, goal_id: str) -> None:
    """The base checkout and its bytecode (`base_cache`), made before the first clean room needs them. They are
    made from the mirror alone, never from the workspace, so they can be made while the baseline's checks run."""
    base_cache(baseline_of(recorded, goal_id), toplevel(workspace))


def _found_again(workspace: Path, recorded: BaselineMirrorEvent) -> BaselineMirrorEvent:
    path = Path(recorded.mirror)
    remade = mirrors.ensure_mirror(workspace, recorded.base_commit, path)
    if load_snapshot(Path(recorded.env)) is None:
        raise WorkspaceError(f"the goal's environment snapshot {recorded.env} is gone",
                             hint="it cannot be taken again once the model has run; clear the goal and set it "
                                  "again (gk goal ... --replace)")
    return recorded.model_copy(update={"resumed": True, "remade": remade})


def baseline_of(recorded: BaselineMirrorEvent, goal_id: str) -> Baseline:
    """The Baseline a `baseline_mirror` event names."""
    return Baseline(Path(recorded.mirror), recorded.base_commit, load_snapshot(Path(recorded.env)),
                    private_directory(mirrors.goal_folder("rooms", goal_id)))


# ---------------------------------------------------------------- the goal's changes


def goal_changes(top: Path, base: Baseline) -> list[tuple[str, Change]]:
    """Every file that differs between the workspace and the base commit: added, modified or deleted.

    The base side is read from the mirror's cache, never from the workspace's `.git`. The workspace's git
    only lists candidate paths; a path it hides is simply taken at its baseline content.
    """
    cache = base_cache(base, top)
    entries = _cache_entries(base)
    listed = probe(top, "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout.split("\0")
    env_dirs = base.env.dirs if base.env else ()
    seen, same = _load_seen(base), {}
    found: list[tuple[str, Change]] = []
    for path in sorted(set(entries) | {path for path in listed if path}):
        if _never_copied(path, env_dirs):
            continue
        here = top / path
        stamp = workspace_stamp(here)
        if path not in entries:
            if here.is_symlink() or here.is_file():
                found.append((path, "added"))
        elif stamp is None and not here.is_symlink():
            found.append((path, "deleted"))  # gone, or a directory or special file where the file was
        elif stamp is not None and seen.get(path) == stamp:
            same[path] = stamp
        elif _differs(here, cache / path, entries[path]):
            found.append((path, "modified"))
        elif stamp is not None:
            same[path] = stamp
    _save_seen(base, same)
    return found


def _load_seen(base: Baseline) -> dict[str, list[int]]:
    try:
        seen: dict[str, list[int]] = json.loads((base.folder / SEEN).read_text())
    except (OSError, ValueError):
        return {}
    return seen


def _save_seen(base: Baseline, seen: dict[str, list[int]]) -> None:
    (base.folder / SEEN).write_text(json.dumps(seen))


def _never_copied(path: str, env_dirs: tuple[str, ...]) -> bool:
    parts = path.split("/")
    if NEVER_COPIED.intersection(parts) or parts[-1].endswith(".pyc"):
        return True
    return any(path == folder or path.startswith(folder + "/") for folder in env_dirs)


def _differs(here: Path, cached: Path, mode: str) -> bool:
    if here.is_symlink() or cached.is_symlink():
        return not (here.is_symlink() and cached.is_symlink() and os.readlink(here) == os.readlink(cached))
    if not here.is_file():
        return True
    if (mode == "100755") != bool(here.stat().st_mode & stat.S_IXUSR):
        return True
    return not filecmp.cmp(here, cached, shallow=False)


# ---------------------------------------------------------------- the base cache


def base_cache(base: Baseline, top: Path) -> Path:
    """The base commit checked out from the mirror (made once; made again if a check wrote into it), with
    its Python compiled by the harness for the repository at `top` (see _compile)."""
    cache = base.folder / "base"
    if (base.folder / CACHE_MANIFEST).is_file():
        return cache
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    mirrors.checkout(base.mirror, base.commit, cache)
    entries = mirrors.base_entries(base.mirror, base.commit)
    manifest = {path: [mode, *_stamp(cache / path)] for path, (mode, _sha) in entries.items()
                if os.path.lexists(cache / path)}
    _compile(base, [path for path, (mode, _sha) in entries.items() if path.endswith(".py") and mode != "120000"],
             top)
    (base.folder / CACHE_MANIFEST).write_text(json.dumps(manifest))
    return cache


def _compile(base: Baseline, sources: list[str], top: Path) -> None:
    """Bytecode of the baseline's Python files, compiled here from the mirror's content (never from the
    workspace), for the paths the sources have inside the sandbox; bound read-only at the room's pycache
    prefix, so the checks do not compile the unchanged code again and cannot write bytecode for a later run.

    The bytecode is checked by source hash, not mtime: a file the goal changed within the same second and to
    the same size (`MS = 120` → `MS = 150`) must never run as its baseline. Only for this interpreter's cache
    tag, and for at most MAX_COMPILED files.
    """
    target = base.folder / "pycache"
    shutil.rmtree(target, ignore_errors=True)
    if len(sources) > MAX_COMPILED:
        return
    tag = sys.implementation.cache_tag
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a SyntaxWarning of the repository's code is not the harness's
        for path in sources:
            inside = top.resolve() / path
            cfile = target / inside.parent.relative_to(inside.anchor) / f"{inside.stem}.{tag}.pyc"
            with contextlib.suppress(py_compile.PyCompileError, OSError, ValueError):
                py_compile.compile(str(base.folder / "base" / path), cfile=str(cfile), dfile=str(inside),
                                   doraise=True, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)


def _cache_entries(base: Baseline) -> dict[str, str]:
    data: dict[str, list[object]] = json.loads((base.folder / CACHE_MANIFEST).read_text())
    return {path: str(value[0]) for path, value in data.items()}


def _stamp(path: Path) -> tuple[int, int]:
    info = path.lstat()
    return info.st_size, info.st_mtime_ns


def cache_intact(base: Baseline) -> bool:
    """Whether every cached baseline file still has its size and mtime (a check may write in place)."""
    try:
        data = json.loads((base.folder / CACHE_MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    cache = base.folder / "base"
    try:
        return all(list(_stamp(cache / path)) == value[1:] for path, value in data.items())
    except OSError:
        return False


def drop_cache(base: Baseline) -> None:
    """Forget the base checkout; the next room makes it again from the mirror."""
    (base.folder / CACHE_MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(base.folder / "base", ignore_errors=True)


# ---------------------------------------------------------------- building the room


@contextmanager
def built_room(top: Path, base: Baseline, surface: Surface | None, prefix: str,
               copy_env: bool) -> Iterator[tuple[Path, RoomChanges]]:
    """A room for the workspace's repository `top`: (its tree, the changes taken and held back); removed after.

    `surface` None takes every change (edits = "allow"). `prefix` is the workspace's path below `top`
    (the surface's paths are relative to the workspace). `copy_env` copies the environment snapshot into
    the tree (when there is no sandbox to bind it read-only over the tree).
    """
    cache = base_cache(base, top)
    changes = RoomChanges()
    found = goal_changes(top, base)
    for path, change in found:
        held = surface is not None and _touches(surface, path, change, prefix)
        (changes.held_back if held else changes.taken).append((path, change))
    _hold_back_clobbers(changes, cache, set(_cache_entries(base)))
    for stale in base.folder.glob("room-*"):
        _remove_tree(stale)  # left by a runner that was killed mid-verification (one runner per goal: its lease)
    room = Path(tempfile.mkdtemp(prefix="room-", dir=base.folder))
    tree = room / "tree"
    linked: dict[str, int] | None = None
    try:
        link_copy(cache, tree)
        for path, change in changes.taken:
            _apply(top, tree, path, change)
        for folder in base.env.dirs if base.env else ():
            if copy_env:
                # No sandbox to bind it read-only: a real copy, so a check cannot write into the snapshot.
                shutil.copytree(base.env.tree(folder), tree / folder, symlinks=True)  # type: ignore[union-attr]
            else:
                (tree / folder).mkdir(parents=True, exist_ok=True)  # the mount point of its read-only bind
        linked = _ctimes(cache, base)
        yield tree, changes
    finally:
        # A check can write into a linked baseline file and put its size and mtime back (os.utime), but not
        # its ctime: any change since the room was linked means the base checkout is made again.
        written = linked is not None and _ctimes(cache, base) != linked
        _remove_tree(room)
        if written or not cache_intact(base):
            drop_cache(base)


def _ctimes(cache: Path, base: Baseline) -> dict[str, int]:
    """The ctime of every base checkout file the room links to (nothing the harness does changes them while
    the checks run)."""
    found: dict[str, int] = {}
    for path in _cache_entries(base):
        with contextlib.suppress(OSError):
            found[path] = (cache / path).lstat().st_ctime_ns
    return found


def _hold_back_clobbers(changes: RoomChanges, cache: Path, entries: set[str]) -> None:
    """Hold back a change that would remove more than its own path from the room: a file or link where a
    baseline directory was (`tests -> elsewhere`), or a file below a baseline file whose removal was held
    back (`tests/test_x.py/…`). Either would take baseline files out without their own changes being seen."""
    removed = {path for path, change in changes.taken if change == "deleted"}
    for path, change in list(changes.taken):
        parents = ["/".join(path.split("/")[:depth]) for depth in range(1, path.count("/") + 1)]
        over_dir = (cache / path).is_dir() and not (cache / path).is_symlink()
        if over_dir or any(parent in entries and parent not in removed for parent in parents):
            changes.taken.remove((path, change))
            changes.held_back.append((path, change))


def _remove_tree(folder: Path) -> None:
    """`rm -rf` (several times faster than shutil.rmtree on a tree of 100k files)."""
    subprocess.run(["rm", "-rf", "--", str(folder)], capture_output=True, check=False)
    shutil.rmtree(folder, ignore_errors=True)


def _touches(surface: Surface, path: str, change: Change, prefix: str) -> bool:
    if not prefix:
        return surface.touches(path, change)
    if not path.startswith(prefix + "/"):
        return True  # outside the workspace: not the goal's to change
    return surface.touches(path.removeprefix(prefix + "/"), change)


def _apply(top: Path, tree: Path, path: str, change: Change) -> None:
    """Put one change into the room as a new file: a hardlinked baseline file is unlinked, never written."""
    remove_path(tree / path)
    if change != "deleted":
        copy_into(top, tree, path)


def copy_into(top: Path, tree: Path, path: str) -> None:
    """Copy the file or link `top/path` to `tree/path` as a new file (a reflink where the file system can make
    one: no data is copied), making its folders; never a hardlink, so a write there never reaches `top`."""
    target = tree / path
    _make_parents(tree, target.parent)
    source = top / path
    if source.is_symlink():
        os.symlink(os.readlink(source), target)
        return
    with open(source, "rb") as reading, open(target, "wb") as writing:
        try:
            fcntl.ioctl(writing.fileno(), FICLONE, reading.fileno())
            cloned = True
        except OSError:
            cloned = False
    if not cloned:
        shutil.copyfile(source, target)  # no reflinks on this file system (ext4, tmpfs): a plain copy
    target.chmod(0o755 if source.stat().st_mode & stat.S_IXUSR else 0o644)


def _make_parents(tree: Path, folder: Path) -> None:
    """Create `folder`, replacing a baseline file that stands where a new directory goes."""
    for parent in reversed([folder, *folder.parents]):
        if not parent.is_relative_to(tree) or parent == tree:
            continue
        if os.path.lexists(parent) and (parent.is_symlink() or not parent.is_dir()):
            parent.unlink()
    folder.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------- running the checks there


async def run_in_room(workspace: Path, base: Baseline, contract: Contract, keep_green: list[str] | None,
                      sandbox: SandboxPolicy, env: dict[str, str] | None,
                      surface: Surface | None, baseline: list[Evidence] | None = None,
                      ) -> tuple[list[Evidence], RoomChanges, float]:
    """Build the room and run the checks there: (their evidence, marked "clean room"; the changes; the build
    time in seconds). `baseline` is the baseline run's evidence, which per-test results are judged against.
    Under danger-full-access the room is still bound with bubblewrap where it works (network on, $HOME
    writable); without it, the checks run in the room at its own path."""
    top = toplevel(workspace)
    prefix = workspace.resolve().relative_to(top.resolve()).as_posix().strip(".")
    confined = sandbox.mode != "danger-full-access" or _bwrap_works(sandbox)
    written = written_through(base.env) if base.env else []
    started = time.monotonic()
    with built_room(top, base, surface, prefix, copy_env=not confined) as (tree, changes):
        built_s = time.monotonic() - started
        cwd = tree / prefix if prefix else tree
        if written:
            return [_written_evidence(written)], changes, built_s
        with _pycache(confined) as pycache:
            room_env = {**(env if env is not None else os.environ), "PYTHONDONTWRITEBYTECODE": "1",
                        "PYTHONPYCACHEPREFIX": pycache}
            policy = _room_policy(sandbox, tree, top, base) if confined else None
            evidence = await run_checks(contract, cwd, keep_green, env=room_env, sandbox=policy, baseline=baseline)
    return [e.model_copy(update={"room": "clean room"}) for e in evidence], changes, built_s


def _room_policy(sandbox: SandboxPolicy, tree: Path, top: Path, base: Baseline) -> SandboxPolicy:
    env = base.env
    binds = tuple((env.tree(folder), tree / folder) for folder in env.dirs) if env else ()
    if (base.folder / "pycache").is_dir():
        binds += ((base.folder / "pycache", Path(PYCACHE_INSIDE)),)
    room = dataclasses.replace(sandbox, workspace=tree.resolve(), bound_at=top.resolve(), ro_binds=binds)
    if sandbox.mode == "danger-full-access":
        # The verdict's run still needs the room at the workspace's path and the snapshot read-only; the
        # rest stays as open as the person asked: network on, $HOME writable.
        return dataclasses.replace(room, mode="workspace-write", network=True,
                                   extra_writable=(*room.extra_writable, Path.home()))
    return room


def _bwrap_works(sandbox: SandboxPolicy) -> bool:
    try:
        require_sandbox(dataclasses.replace(sandbox, mode="workspace-write"))
    except SandboxError:
        return False
    return True


@contextmanager
def _pycache(confined: bool) -> Iterator[str]:
    if confined:
        yield PYCACHE_INSIDE
        return
    folder = tempfile.mkdtemp(prefix="goalkeeper-pycache-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _written_evidence(paths: list[str]) -> Evidence:
    shown = ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")
    return Evidence(name=TAMPERING, kind="check", command="the environment snapshot taken at baseline",
                    exit_code=1, duration_s=0.0, passed=False, room="clean room",
                    output_tail=f"Files of the environment snapshot were written through the workspace: {shown}",
                    error="the ignored environment (a virtualenv, node_modules) was changed in place after "
                          "baseline; the harness's copy shares those files, so no verdict can be taken. "
                          "Install into the environment by replacing files, or set the goal again")
