"""The environment snapshot: the untracked environment the checks need, taken at baseline, before the model runs.

The rule: every directory git ignores that exists at baseline (a `.venv`, `venv`, `.env/` virtualenv,
`node_modules`, `build/`, `*.egg-info`), except caches that are never reused (`__pycache__`, tool caches) and
`.git`/`.goalkeeper`, up to MAX_FILES files in all. Ignored single files are left out (they are where
secrets live: `.env`, keys). The copy is a hardlink copy (`cp -al`), so it costs no data; a manifest of each
file's (size, mtime, ctime, links) tells later whether the model wrote through a shared inode.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from goalkeeper.sandbox.process import left_by_the_dead
from goalkeeper.verify import mirror as mirrors
from goalkeeper.workspace.git import probe, toplevel

#: Directory names never snapshotted: bytecode and tool caches are never reused, git is the harness's.
SKIPPED_NAMES = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis",
                           ".git", ".goalkeeper"})

#: Files snapshotted at most; a bigger ignored environment is left out (and said so in the event).
MAX_FILES = 400_000

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class EnvSnapshot:
    """Where the snapshot lives and which top-level-relative directories it holds."""

    root: Path
    dirs: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    """Ignored directories left out for size."""

    def tree(self, relative: str) -> Path:
        """The snapshot's copy of one directory."""
        return self.root / "tree" / relative


def ignored_dirs(top: Path) -> list[str]:
    """The git-ignored directories under `top` (top-level-relative, outermost only), less SKIPPED_NAMES."""
    done = probe(top, "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory")
    found = []
    for entry in done.stdout.split("\0"):
        path = entry.rstrip("/")
        if not path or SKIPPED_NAMES.intersection(path.split("/")) or not (top / path).is_dir():
            continue
        # A real directory, or a link to one (`.venv -> /opt/venvs/app`: the link is kept, not its target).
        if entry.endswith("/") or (top / path).is_symlink():
            found.append(path)
    return sorted(found)


def take_snapshot(workspace: Path, root: Path) -> EnvSnapshot:
    """Hardlink-copy the ignored environment of `workspace`'s repository into `root` (made anew, 0700)."""
    top = toplevel(workspace)
    shutil.rmtree(root, ignore_errors=True)
    (root / "tree").mkdir(parents=True, mode=0o700)
    root.chmod(0o700)
    kept, skipped, budget = [], [], MAX_FILES
    for relative in ignored_dirs(top):
        count = 1 if (top / relative).is_symlink() else _count_files(top / relative, budget)
        if count > budget:
            skipped.append(relative)
            continue
        budget -= count
        _link_copy(top / relative, root / "tree" / relative)
        kept.append(relative)
    snapshot = EnvSnapshot(root, tuple(kept), tuple(skipped))
    (root / MANIFEST).write_text(json.dumps({"dirs": kept, "skipped": skipped, "files": _stats(snapshot)}))
    return snapshot


def load_snapshot(root: Path) -> EnvSnapshot | None:
    """The snapshot at `root`, or None when it is gone."""
    try:
        data = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return EnvSnapshot(root, tuple(data["dirs"]), tuple(data["skipped"]))


def written_through(snapshot: EnvSnapshot) -> list[str]:
    """Snapshot files whose shared inode was written since baseline (by the model, through the workspace).

    A write in place changes ctime with the link count unchanged; a deleted workspace copy lowers the link
    count (and changes ctime too), so then size and mtime must still match.
    """
    try:
        recorded = json.loads((snapshot.root / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError):
        return ["(the snapshot's manifest)"]
    now = _stats(snapshot)
    changed = []
    for path, (size, mtime, ctime, links) in recorded.items():
        current = now.get(path)
        if current is None:
            changed.append(path)
            continue
        same_content = current[0] == size and current[1] == mtime
        if current[2] != ctime and (current[3] >= links or not same_content):
            changed.append(path)
    return sorted(changed)


def _stats(snapshot: EnvSnapshot) -> dict[str, tuple[int, int, int, int]]:
    found = {}
    tree = snapshot.root / "tree"
    for relative in snapshot.dirs:
        if (tree / relative).is_symlink():
            continue  # outside the workspace: not the model's to write (the sandbox keeps it read-only)
        for root, _dirs, names in os.walk(tree / relative):
            for name in names:
                path = os.path.join(root, name)
                info = os.lstat(path)
                found[os.path.relpath(path, tree)] = (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_nlink)
    return found


def _count_files(directory: Path, limit: int) -> int:
    count = 0
    for _root, dirs, names in os.walk(directory):
        dirs[:] = [name for name in dirs if name not in SKIPPED_NAMES]
        count += len(names)
        if count > limit:
            break
    return count


def link_copy(source: Path, target: Path) -> None:
    """`cp -al` of a tree (a plain copy when `target` is on another file system); links stay links."""
    target.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["cp", "-al", "--", str(source), str(target)], capture_output=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, symlinks=True)


def _link_copy(source: Path, target: Path) -> None:
    """`link_copy`, without caches."""
    link_copy(source, target)
    if target.is_symlink():
        return  # a link is copied as a link: nothing below it is the snapshot's to clean
    for root, dirs, _names in os.walk(target):
        for name in [name for name in dirs if name in SKIPPED_NAMES]:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            dirs.remove(name)


def workspace_stamp(path: Path) -> list[int] | None:
    """(size, mtime, ctime, inode, mode) of a regular file; None for anything else."""
    try:
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_mode]


@dataclass
class EarlyBase:
    """What a goal's start must take before any command runs (keep_baseline), taken before a command runs ahead
    of the goal itself (the baseline's head start, run/head_start.py): the environment snapshot, in a folder of
    its own until a goal adopts it, and the stat of every tracked file of `commit`, all equal to it then (a
    clean tree)."""

    commit: str
    snapshot: EnvSnapshot
    stamps: dict[str, list[int]]
    adopted: bool = False

    def adopt(self, root: Path) -> EnvSnapshot:
        """The snapshot moved to `root`, the goal's own folder (its manifest names files by relative path)."""
        shutil.rmtree(root, ignore_errors=True)
        self.snapshot.root.rename(root)
        self.snapshot, self.adopted = dataclasses.replace(self.snapshot, root=root), True
        return self.snapshot

    def discard(self) -> None:
        """Remove the snapshot unless a goal adopted it."""
        if not self.adopted:
            shutil.rmtree(self.snapshot.root, ignore_errors=True)


def take_early_base(workspace: Path, commit: str) -> EarlyBase:
    """The environment snapshot and the stamps of a clean tree at `commit`, before anything runs there."""
    top = toplevel(workspace)
    staged = mirrors.goal_folder("envs", f"{EARLY}{os.getpid()}-{os.urandom(4).hex()}")
    _sweep_early(staged.parent)
    snapshot = take_snapshot(workspace, staged)
    tracked = probe(top, "ls-files", "-z", "--cached").stdout.split("\0")
    return EarlyBase(commit, snapshot,
                     {name: stamp for name in tracked if name and (stamp := workspace_stamp(top / name))})


EARLY = "early-"
"""The name of an early snapshot's folder: `early-<pid>-<random>`, until a goal adopts it."""


def _sweep_early(envs: Path) -> None:
    """Remove early snapshots a process left when it died before adopting or discarding them."""
    for folder in left_by_the_dead(envs, EARLY):
        shutil.rmtree(folder, ignore_errors=True)
