"""Tamper-evident verification: pin the files that define the verification surface, and prove a completion
on the baseline versions of them.

At baseline the test files, the test and coverage configuration and the files that check commands name are
hashed. Later `surface_state` says whether the model left them unchanged, only added tests, or modified
them, with the diff of what it changed (the clean room, cleanroom.py, then proves a completion on the
baseline versions). It never writes to the workspace or to its repository.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from goalkeeper.errors import WorkspaceError
from goalkeeper.sandbox.globs import first_path_match
from goalkeeper.spec.contract import Contract
from goalkeeper.workspace.git import probe, run_git, toplevel

EditsPolicy = Literal["review", "deny", "allow"]
"""What a goal does about edits to pinned files: re-verify on the baseline versions (review, the default),
refuse the completion (deny), or only report them (allow)."""

SurfaceKind = Literal["unchanged", "extended", "modified"]

TEST_GLOBS: tuple[str, ...] = (
    "test_*.py", "*_test.py", "**/tests/**", "**/*.test.*", "**/*.spec.*", "**/__tests__/**", "**/spec/**",
)
"""Test files by convention, at any depth (globs.py anchors `tests/**` at the root, hence the `**/`)."""

CONFIG_NAMES: frozenset[str] = frozenset({"conftest.py", "pytest.ini", "tox.ini", "setup.cfg", ".coveragerc"})
"""Test and coverage configuration, pinned at any depth; pyproject.toml only when it configures them."""

SKIPPED_DIRS: frozenset[str] = frozenset({".git", ".venv", "node_modules", "__pycache__"})
"""Directories never searched for pins: they hold no verification surface the model writes."""

DIFF_CHARS = 6000
"""Characters of diff kept in tamper feedback: enough to see the change, short enough for a prompt."""

_PYPROJECT_TOOLS = re.compile(r"^\s*\[\s*tool\.(pytest|coverage)", re.MULTILINE)
_MODULE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


@dataclass(frozen=True)
class Pin:
    """One file of the verification surface and its content hash at baseline."""

    path: str
    """Relative to the workspace, `/`-separated."""
    sha256: str | None
    """Hex SHA-256 of the content at baseline; None would mean it did not exist (only existing files are pinned)."""


@dataclass(frozen=True)
class Pins:
    """The verification surface recorded at baseline."""

    files: tuple[Pin, ...]
    globs: tuple[str, ...]
    """Globs whose new files count as additions to the surface: the test conventions plus extra pins."""

    def to_json(self) -> str:
        """A JSON document that from_json reads back."""
        return json.dumps({"files": [dataclasses.asdict(pin) for pin in self.files], "globs": list(self.globs)})

    @classmethod
    def from_json(cls, text: str) -> Pins:
        """The Pins that to_json wrote."""
        data = json.loads(text)
        return cls(files=tuple(Pin(path=item["path"], sha256=item["sha256"]) for item in data["files"]),
                   globs=tuple(data["globs"]))

    @property
    def paths(self) -> frozenset[str]:
        """The pinned paths."""
        return frozenset(pin.path for pin in self.files)


@dataclass(frozen=True)
class SurfaceState:
    """How the verification surface differs from its baseline."""

    state: SurfaceKind
    """unchanged; extended (only new surface files); modified (a pinned file changed or was deleted)."""
    modified: list[str]
    deleted: list[str]
    added: list[str]
    """New files matching the pin globs or configuring the tests."""
    diff: str
    """A unified diff of each modified or deleted pinned file against its baseline content."""


# ---------------------------------------------------------------- pinning


def pin_verification_surface(workspace: Path, contract: Contract, extra_pins: Sequence[str] = ()) -> Pins:
    """Hash every test file, test configuration file, file named by a check or keep_green command, and file
    matching `extra_pins`, as the workspace is now (the baseline)."""
    globs = (*TEST_GLOBS, *extra_pins)
    files = workspace_files(workspace)
    commands = [check.run for check in contract.checks] + list(contract.constraints.keep_green)
    named = command_paths(workspace, commands)
    chosen = sorted({path for path in files if path in named or _on_surface(workspace, path, globs)})
    return Pins(files=tuple(Pin(path, _sha256(workspace / path)) for path in chosen), globs=globs)


def workspace_files(workspace: Path) -> list[str]:
    """Every file in the workspace that git would see (tracked or untracked, not ignored), outside SKIPPED_DIRS.

    Asked of git rather than walked, so ignored output (caches, build folders) is never pinned: only files a
    base commit can hold can be restored from one. Outside a repository, a plain walk.
    """
    done = probe(workspace, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if done.returncode != 0:
        return _walk(workspace)
    paths = {path for path in done.stdout.split("\0") if path}
    return sorted(path for path in paths
                  if not SKIPPED_DIRS.intersection(path.split("/")) and (workspace / path).is_file())


def _walk(workspace: Path) -> list[str]:
    found = []
    for root, dirs, names in os.walk(workspace):
        dirs[:] = [name for name in dirs if name not in SKIPPED_DIRS]
        found += [(Path(root) / name).relative_to(workspace).as_posix() for name in names]
    return sorted(found)


def command_paths(workspace: Path, commands: Iterable[str]) -> set[str]:
    """Workspace-relative files that the commands name: `python bench.py`, `pytest tests/x.py::test_y`,
    `--file=tests/x.py`, and modules as in `python -m unittest tests.test_x`."""
    top = workspace.resolve()
    found = set()
    for command in commands:
        for word in _words(command):
            for candidate in _candidates(word):
                path = (workspace / candidate).resolve()
                if path.is_file() and path.is_relative_to(top):
                    found.add(path.relative_to(top).as_posix())
    return found


def _words(command: str) -> list[str]:
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # unbalanced quotes: the shell will refuse it too, but its words may still name files
        return command.split()


def _candidates(word: str) -> list[str]:
    value = word.partition("=")[2] if word.startswith("-") else word
    value = value.partition("::")[0]
    if not value or value.startswith("-"):
        return []
    candidates = [value]
    if _MODULE.fullmatch(value):
        candidates.append(value.replace(".", "/") + ".py")
    return candidates


def _on_surface(workspace: Path, path: str, globs: Sequence[str]) -> bool:
    name = path.rsplit("/", 1)[-1]
    if name in CONFIG_NAMES:
        return True
    if name == "pyproject.toml":
        text = (workspace / path).read_text(encoding="utf-8", errors="replace")
        return _PYPROJECT_TOOLS.search(text) is not None
    return first_path_match(globs, path) is not None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- the state of the surface


def surface_state(workspace: Path, pins: Pins, base_commit: str, mirror: Path | None = None) -> SurfaceState:
    """Which pinned files the workspace now has modified or deleted, which new surface files it added, and a
    diff of the pinned changes against `base_commit` (the commit the goal started from), read from `mirror`
    (the goal's baseline mirror) when given."""
    modified, deleted = changed_pins(workspace, pins)
    pinned = pins.paths
    added = [path for path in workspace_files(workspace)
             if path not in pinned and _on_surface(workspace, path, pins.globs)]
    diff = "".join(_file_diff(workspace, base_commit, path, mirror) for path in sorted(modified + deleted))
    state: SurfaceKind = "modified" if modified or deleted else "extended" if added else "unchanged"
    return SurfaceState(state=state, modified=modified, deleted=deleted, added=added, diff=diff)


def changed_pins(workspace: Path, pins: Pins) -> tuple[list[str], list[str]]:
    """(modified, deleted): the pinned files whose content differs from baseline, and those that are gone."""
    modified, deleted = [], []
    for pin in pins.files:
        path = workspace / pin.path
        if not path.is_file():
            deleted.append(pin.path)
        elif _sha256(path) != pin.sha256:
            modified.append(pin.path)
    return modified, deleted


def baseline_content(workspace: Path, base_commit: str, path: str, mirror: Path | None = None) -> bytes:
    """The content of `path` (workspace-relative) at `base_commit`; a WorkspaceError when git has none.

    With `mirror` (the goal's baseline mirror) it is read from there, never from the workspace's `.git`.
    """
    if mirror is not None:
        done = run_git(mirror, "cat-file", "blob", f"{base_commit}:{_in_repository(workspace, path)}")
    else:
        # `<commit>:./path` is relative to the working directory, so a workspace below the top-level works too
        done = run_git(workspace, "show", f"{base_commit}:./{path}")
    if done.returncode != 0:
        raise WorkspaceError(f"{path} is pinned but {base_commit[:12]} does not hold it: "
                             f"{done.stderr.decode(errors='replace').strip()}",
                             hint="pass the commit the goal started from (its snapshot commit, if it has one)")
    return done.stdout


def _in_repository(workspace: Path, path: str) -> str:
    """`path` (workspace-relative) relative to the repository's top level."""
    top = toplevel(workspace).resolve()
    return ((workspace.resolve() / path).relative_to(top)).as_posix()


def _file_diff(workspace: Path, base_commit: str, path: str, mirror: Path | None = None) -> str:
    before = baseline_content(workspace, base_commit, path, mirror).decode("utf-8", errors="replace")
    current = workspace / path
    after = current.read_bytes().decode("utf-8", errors="replace") if current.is_file() else ""
    target = f"b/{path}" if current.is_file() else "/dev/null"
    lines = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                 fromfile=f"a/{path}", tofile=target)
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
