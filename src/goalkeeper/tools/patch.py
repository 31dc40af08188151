"""The `apply_patch` tool: applies a parsed patch (patch_parse.py) to the workspace all-or-nothing.

Every path is checked (the workspace, then the goal's boundaries) and every hunk located in memory before
the first byte is written, so a patch that fails or crosses a boundary leaves the workspace as it was.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from goalkeeper.tools.files import looks_binary, write_atomically
from goalkeeper.tools.patch_parse import (
    AddFile,
    DeleteFile,
    FileOperation,
    Hunk,
    PatchError,
    UpdateFile,
    _show,
    parse_patch,
)
from goalkeeper.tools.paths import (
    BoundaryRefused,
    PathRefused,
    check_read,
    check_write,
    relative,
    resolve_in_workspace,
)
from goalkeeper.tools.replies import refusal

__all__ = [
    "AddFile",
    "ApplyPatchTool",
    "Change",
    "DeleteFile",
    "FileOperation",
    "Hunk",
    "PatchError",
    "PatchPlan",
    "UpdateFile",
    "apply_hunks",
    "parse_patch",
    "plan_patch",
]

SHOWN_EXPECTED_LINES = 5

@dataclass(frozen=True)
class _Text:
    """A file's lines without their endings, and how to put the endings back."""

    lines: list[str]
    newline: str
    final_newline: bool

    @classmethod
    def split(cls, content: str) -> _Text:
        if not content:
            return cls([], "\n", True)
        final = content.endswith("\n")
        lines = (content[:-1] if final else content).split("\n")
        if "\r\n" in content and content.count("\r\n") == content.count("\n"):  # all CRLF: keep it
            return cls([line.removesuffix("\r") for line in lines], "\r\n", final)
        return cls(lines, "\n", final)

    def join(self, lines: list[str]) -> str:
        body = self.newline.join(lines)
        return body + self.newline if lines and self.final_newline else body


_PASSES: tuple[Callable[[str], str], ...] = (lambda line: line, str.rstrip, str.strip)
"""Exact first, then ignoring trailing whitespace, then ignoring all surrounding whitespace."""


def _seek(lines: list[str], wanted: list[str], start: int, at_end: bool = False) -> int | None:
    """Where `wanted` first occurs in `lines` at or after `start`, trying the strictest pass first."""
    last = len(lines) - len(wanted)
    for normalize in _PASSES:
        target = [normalize(line) for line in wanted]
        candidates = ([last] if at_end and last >= start else []) + list(range(start, last + 1))
        for index in candidates:
            if all(normalize(lines[index + k]) == target[k] for k in range(len(target))):
                return index
    return None


def _seek_header(lines: list[str], header: str, start: int) -> int | None:
    wanted = header.strip()
    for index in range(start, len(lines)):
        if lines[index].strip() == wanted:
            return index
    return next((index for index in range(start, len(lines)) if wanted in lines[index]), None)


def _nearest(lines: list[str], wanted: list[str]) -> str:
    """The file line most like the first wanted line that the file lacks (the likeliest typo)."""
    stripped = [line.strip() for line in lines]
    present = set(stripped)
    candidates = [line.strip() for line in wanted if line.strip()]
    probe = next((line for line in candidates if line not in present), candidates[0] if candidates else "")
    close = difflib.get_close_matches(probe, stripped, n=1, cutoff=0.6) if probe else []
    if not close:
        return ""
    index = stripped.index(close[0])
    return f"\nnearest similar line in the file (line {index + 1}): {_show(lines[index])}"


def _not_found(where: str, lines: list[str], wanted: list[str], start: int) -> PatchError:
    shown = "\n".join(f"    {line}" for line in wanted[:SHOWN_EXPECTED_LINES])
    more = len(wanted) - SHOWN_EXPECTED_LINES
    message = f"{where}: could not find these lines in the file:\n{shown}"
    if more > 0:
        message += f"\n    [... {more} more]"
    earlier = _seek(lines, wanted, 0) if start else None
    if earlier is not None and earlier < start:
        message += (
            f"\nthey appear at line {earlier + 1}, above line {start + 1} where this hunk's search "
            "began; hunks must follow file order"
        )
    return PatchError(message + _nearest(lines, wanted) + "\nre-read the file and copy its lines exactly")


def _replace(lines: list[str], hunk: Hunk, index: int) -> list[str]:
    """New lines for a match at `index`: matched context keeps the file's own text (its whitespace)."""
    result: list[str] = []
    for kind, text in hunk.lines:
        if kind == "+":
            result.append(text)
            continue
        if kind == " ":
            result.append(lines[index])
        index += 1
    return result


def apply_hunks(content: str, hunks: list[Hunk], name: str) -> str:
    """`content` with every hunk applied in order; PatchError naming the first hunk that does not fit."""
    text = _Text.split(content)
    lines = list(text.lines)
    edits: list[tuple[int, int, list[str]]] = []
    cursor = 0
    for number, hunk in enumerate(hunks, start=1):
        where = f"hunk {number} of {name} (patch line {hunk.patch_line})"
        start = floor = cursor
        for header in hunk.headers:  # each header narrows the search to below the previous one
            found = _seek_header(lines, header, floor)
            if found is None:
                raise PatchError(
                    f"{where}: could not find the '@@ {header}' line at or after line "
                    f"{floor + 1}{_nearest(lines, [header])}"
                )
            start, floor = found, found + 1
        old = hunk.old()
        if not old:  # only additions: after the @@ line, or else at the end of the file
            index = start + 1 if hunk.headers else len(lines)
        else:
            found = _seek(lines, old, start, hunk.at_end)
            if found is None:
                raise _not_found(where, lines, old, start)
            index = found
        edits.append((index, len(old), _replace(lines, hunk, index)))
        cursor = index + len(old)
    for index, length, replacement in reversed(edits):
        lines[index : index + length] = replacement
    return text.join(lines)


@dataclass(frozen=True)
class Change:
    """One line of the summary: A(dded), M(odified) or D(eleted), with the source of a move."""

    letter: Literal["A", "M", "D"]
    name: str
    moved_from: str | None = None

    def __str__(self) -> str:
        return f"{self.letter} {self.name}" + (f" (moved from {self.moved_from})" if self.moved_from else "")


class PatchPlan:
    """The files as they will be after the patch, kept in memory until every operation has applied."""

    def __init__(self, workspace: Path, policy: SandboxPolicy | None = None) -> None:
        self.workspace = workspace
        self.policy = policy
        """The goal's boundaries every target is checked against; None checks only the workspace."""
        self.contents: dict[Path, str | None] = {}
        """New text per touched file; None means deleted."""
        self.changes: list[Change] = []

    def resolve(self, path: str, patch_line: int, reading: bool = False) -> tuple[Path, str]:
        """The real target of `path`, refused (PatchError) outside the workspace or the boundaries."""
        try:
            target = resolve_in_workspace(self.workspace, path)
            if reading:
                check_read(self.workspace, path, target, self.policy)
            check_write(self.workspace, path, target, self.policy)
        except (PathRefused, BoundaryRefused) as error:
            raise PatchError(f"patch line {patch_line}: {error}") from error
        return target, relative(self.workspace, target)

    def exists(self, target: Path) -> bool:
        return self.contents[target] is not None if target in self.contents else target.exists()

    def check_creatable(self, target: Path, label: str) -> None:
        """Refuse to create over an existing file, or below a path that is (or will be) a file."""
        name = relative(self.workspace, target)
        if self.exists(target):
            raise PatchError(f"{label}: {name} already exists")
        for parent in target.parents:
            if parent in self.contents:
                if self.contents[parent] is None:
                    continue  # deleted earlier in this patch, so a directory may take its place
            elif not parent.exists():
                continue
            elif parent.is_dir():
                return
            raise PatchError(f"{label}: cannot create {name}: {relative(self.workspace, parent)} is a file")

    def check_file(self, target: Path, label: str) -> None:
        """Refuse unless `target` is (or will be, by now in this patch) a file."""
        name = relative(self.workspace, target)
        if not self.exists(target):
            hint = "; use Add File to create it" if label == "Update File" else ""
            raise PatchError(f"{label}: {name} does not exist{hint}")
        if target not in self.contents and target.is_dir():
            raise PatchError(f"{label}: {name} is a directory")

    def read(self, target: Path, label: str) -> str:
        self.check_file(target, label)
        content = self.contents.get(target)
        if content is not None:
            return content
        name = relative(self.workspace, target)
        try:
            data = target.read_bytes()
        except OSError as error:
            raise PatchError(f"{label}: cannot read {name}: {error.strerror or error}") from error
        if looks_binary(data):
            raise PatchError(f"{label}: {name} is a binary file; apply_patch edits text files only")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            message = f"{label}: {name} is not UTF-8 text; apply_patch edits text files only"
            raise PatchError(message) from error

    def add(self, operation: AddFile) -> None:
        target, name = self.resolve(operation.path, operation.patch_line)
        self.check_creatable(target, "Add File")
        self.contents[target] = "".join(line + "\n" for line in operation.lines)
        self.changes.append(Change("A", name))

    def delete(self, operation: DeleteFile) -> None:
        target, name = self.resolve(operation.path, operation.patch_line)
        self.check_file(target, "Delete File")
        self.contents[target] = None
        self.changes.append(Change("D", name))

    def update(self, operation: UpdateFile) -> None:
        target, name = self.resolve(operation.path, operation.patch_line, reading=True)
        new = apply_hunks(self.read(target, "Update File"), operation.hunks, name)
        if operation.move_to is None:
            self.contents[target] = new
            self.changes.append(Change("M", name))
            return
        destination, moved_name = self.resolve(operation.move_to, operation.move_line)
        if destination != target:
            self.check_creatable(destination, "Move to")
            self.contents[target] = None
        self.contents[destination] = new
        self.changes.append(Change("M", moved_name, moved_from=name if destination != target else None))

    def write(self) -> None:
        """Deletions first, so a deleted file can make room for a directory of the same name."""
        for target, content in self.contents.items():
            if content is None:
                target.unlink(missing_ok=True)
        for target, content in self.contents.items():
            if content is not None:
                write_atomically(target, content.encode("utf-8"))


def plan_patch(workspace: Path, text: str, policy: SandboxPolicy | None = None) -> PatchPlan:
    """Parse `text` and apply it in memory; PatchError when any part would fail or cross `policy`."""
    plan = PatchPlan(workspace, policy)
    for operation in parse_patch(text):
        if isinstance(operation, AddFile):
            plan.add(operation)
        elif isinstance(operation, DeleteFile):
            plan.delete(operation)
        else:
            plan.update(operation)
    return plan


class ApplyPatchArgs(ToolArgs):
    """`apply_patch`'s arguments."""

    patch: str


class ApplyPatchTool(Tool[ApplyPatchArgs]):
    """Adds, updates, moves and deletes files from one patch, all or nothing."""

    name = "apply_patch"
    description = (
        "Edit files with a patch: '*** Begin Patch', then '*** Add File: p' (+lines), "
        "'*** Delete File: p', or '*** Update File: p' [+ '*** Move to: q'] with '@@ optional anchor' "
        "hunks of ' ' context, '-' removed, '+' added lines; then '*** End Patch'. All or nothing."
    )
    Args = ApplyPatchArgs

    async def run(self, args: ApplyPatchArgs, context: ToolContext) -> ToolResult:
        """Apply the patch; a patch that does not parse or apply is `ok=False` and writes nothing."""
        try:
            plan = await asyncio.to_thread(plan_patch, context.workspace, args.patch, context.sandbox)
        except PatchError as error:
            return refusal(f"patch not applied, nothing was written: {error}")
        try:
            await asyncio.to_thread(plan.write)
        except OSError as error:
            return refusal(
                f"patch checked but writing failed part-way, so some files may have changed: "
                f"{error.strerror or error} ({error.filename})"
            )
        touched = dict.fromkeys(relative(context.workspace, target) for target in plan.contents)
        return ToolResult(
            output="\n".join(str(change) for change in plan.changes),
            files_touched=tuple(touched),
        )
