"""The `apply_patch` tool: parses the patch format Codex-style models emit and applies it all-or-nothing.

Every path is checked and every hunk located in memory before the first byte is written, so a patch
that fails leaves the workspace exactly as it was.
"""

from __future__ import annotations

import asyncio
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from goalkeeper.models.base import ToolSpec
from goalkeeper.tools.base import ToolContext, ToolResult
from goalkeeper.tools.files import looks_binary, write_atomically
from goalkeeper.tools.output import ArgumentError, check_argument_names, refusal, required_string
from goalkeeper.tools.paths import PathRefused, relative, resolve_in_workspace

BEGIN = "*** Begin Patch"
END = "*** End Patch"
ADD = "*** Add File:"
DELETE = "*** Delete File:"
UPDATE = "*** Update File:"
MOVE = "*** Move to:"
END_OF_FILE = "*** End of File"
HEREDOC = re.compile(r"^(?:apply_patch\s+)?<<-?\s*['\"]?(\w+)['\"]?\s*$")
"""Models sometimes wrap the patch in the shell heredoc they were trained to send it with."""
UNIFIED_RANGE = re.compile(r"^-\d+(?:,\d+)?\s+\+\d+(?:,\d+)?\s+@@\s*")
"""A unified-diff range (`@@ -3,7 +3,8 @@ def f():`); the numbers are ignored, the text after is kept."""
SHOWN_EXPECTED_LINES = 5

LineKind = Literal[" ", "-", "+"]
_KINDS: dict[str, LineKind] = {" ": " ", "-": "-", "+": "+"}


class PatchError(ValueError):
    """The patch is malformed or does not apply; the message points at the patch line or hunk."""


@dataclass
class Hunk:
    """One `@@` section: the lines to find (context and removed) and what replaces them."""

    patch_line: int
    headers: list[str] = field(default_factory=list)
    """Text after `@@`; each narrows the search to the file line containing it and below."""
    lines: list[tuple[LineKind, str]] = field(default_factory=list)
    at_end: bool = False
    """Marked `*** End of File`: the lines are looked for at the end of the file first."""
    trailing_blanks: int = 0
    """Blank patch lines at the end, which are usually separators rather than context."""

    def old(self) -> list[str]:
        return [text for kind, text in self.lines if kind != "+"]


@dataclass
class AddFile:
    path: str
    patch_line: int
    lines: list[str] = field(default_factory=list)


@dataclass
class DeleteFile:
    path: str
    patch_line: int


@dataclass
class UpdateFile:
    path: str
    patch_line: int
    move_to: str | None = None
    move_line: int = 0
    hunks: list[Hunk] = field(default_factory=list)


FileOperation = AddFile | DeleteFile | UpdateFile


def _show(line: str, width: int = 80) -> str:
    return repr(line if len(line) <= width else line[: width - 3] + "...")


def _path_after(line: str, marker: str, number: int) -> str:
    path = line.strip()[len(marker) :].strip()
    if not path:
        raise PatchError(f"patch line {number}: '{marker}' needs a path after it")
    return path


def _bounds(lines: list[str]) -> tuple[int, int]:
    """First and one-past-last meaningful line, without blank edges or a heredoc wrapper."""
    filled = [index for index, line in enumerate(lines) if line.strip()]
    if not filled:
        raise PatchError(f"the patch is empty; it must start with '{BEGIN}'")
    first, last = filled[0], filled[-1]
    wrapper = HEREDOC.match(lines[first].strip())
    if wrapper and last > first and lines[last].strip() == wrapper.group(1):
        inner = [index for index in filled if first < index < last]
        if not inner:
            raise PatchError(f"the patch is empty; it must start with '{BEGIN}'")
        first, last = inner[0], inner[-1]
    return first, last + 1


class _Parser:
    """Reads the patch grammar line by line; every error names the patch line (1-based)."""

    def __init__(self, text: str) -> None:
        self.lines = [line.removesuffix("\r") for line in text.split("\n")]
        start, self.stop = _bounds(self.lines)
        if self.lines[start].strip() != BEGIN:
            raise PatchError(
                f"patch line {start + 1}: the patch must start with '{BEGIN}', got {_show(self.lines[start])}"
            )
        self.at = start + 1

    def parse(self) -> list[FileOperation]:
        operations: list[FileOperation] = []
        while True:
            self._skip_blank()
            if self.at >= self.stop:
                raise PatchError(f"the patch ends without '{END}'; add it as the last line")
            line, number = self.lines[self.at].strip(), self.at + 1
            self.at += 1
            if line == END:
                self._skip_blank()
                if self.at < self.stop:
                    raise PatchError(
                        f"patch line {self.at + 1}: unexpected text after '{END}': "
                        f"{_show(self.lines[self.at])}"
                    )
                return operations
            if line.startswith(ADD):
                operations.append(self._add_file(AddFile(_path_after(line, ADD, number), number)))
            elif line.startswith(DELETE):
                operations.append(DeleteFile(_path_after(line, DELETE, number), number))
            elif line.startswith(UPDATE):
                operations.append(self._update_file(UpdateFile(_path_after(line, UPDATE, number), number)))
            else:
                raise PatchError(
                    f"patch line {number}: expected '{ADD}', '{UPDATE}', '{DELETE}' or "
                    f"'{END}' but got {_show(self.lines[number - 1])}"
                )

    def _skip_blank(self) -> None:
        while self.at < self.stop and not self.lines[self.at].strip():
            self.at += 1

    def _add_file(self, operation: AddFile) -> AddFile:
        blanks = 0  # blank lines count as empty lines only when more '+' lines follow
        while self.at < self.stop:
            line = self.lines[self.at]
            if line.startswith("+"):
                operation.lines.extend([""] * blanks + [line[1:]])
                blanks = 0
            elif not line.strip():
                blanks += 1
            elif line.startswith("***"):
                break
            else:
                raise PatchError(
                    f"patch line {self.at + 1}: expected a line starting with '+' "
                    f"(Add File: {operation.path}) but got {_show(line)}"
                )
            self.at += 1
        return operation

    def _update_file(self, operation: UpdateFile) -> UpdateFile:
        self._skip_blank()
        if self.at < self.stop and self.lines[self.at].strip().startswith(MOVE):
            operation.move_to = _path_after(self.lines[self.at], MOVE, self.at + 1)
            operation.move_line = self.at + 1
            self.at += 1
        hunk: Hunk | None = None
        while self.at < self.stop:
            line = self.lines[self.at]
            if line.startswith("***") and line.rstrip() != END_OF_FILE:
                break  # the next file operation, or the end of the patch
            hunk = self._hunk_line(operation, hunk, line, self.at + 1)
            self.at += 1
        return self._check_update(operation)

    def _hunk_line(self, operation: UpdateFile, hunk: Hunk | None, line: str, number: int) -> Hunk | None:
        """Take one line of an Update File section; returns the hunk now being read."""
        kind = _KINDS.get(line[:1])
        if line.startswith("@@"):
            if hunk is None or hunk.lines:
                hunk = Hunk(number)
                operation.hunks.append(hunk)
            header = UNIFIED_RANGE.sub("", line[2:].strip())
            if header:
                hunk.headers.append(header)
        elif line.rstrip() == END_OF_FILE:
            if hunk is None or not hunk.lines:
                raise PatchError(f"patch line {number}: '{END_OF_FILE}' must follow a hunk's lines")
            hunk.at_end = True
        elif not line.strip():
            if hunk is not None and not hunk.at_end:
                hunk.lines.append((" ", ""))
                hunk.trailing_blanks += 1
        elif kind is None:
            raise PatchError(
                f"patch line {number}: expected a line starting with ' ', '+' or '-' "
                f"but got {_show(line)} (context lines start with a space)"
            )
        elif hunk is not None and hunk.at_end:
            raise PatchError(f"patch line {number}: lines after '{END_OF_FILE}' need a new '@@' hunk")
        else:
            if hunk is None:  # the first hunk may leave out its '@@' line
                hunk = Hunk(number)
                operation.hunks.append(hunk)
            hunk.lines.append((kind, line[1:]))
            hunk.trailing_blanks = 0
        return hunk

    def _check_update(self, operation: UpdateFile) -> UpdateFile:
        if not operation.hunks and operation.move_to is None:
            raise PatchError(
                f"patch line {operation.patch_line}: Update File: {operation.path} has no "
                "hunks; start one with '@@'"
            )
        for hunk in operation.hunks:
            if hunk.trailing_blanks:
                del hunk.lines[-hunk.trailing_blanks :]
            if not any(kind != " " for kind, _ in hunk.lines):
                raise PatchError(
                    f"patch line {hunk.patch_line}: this hunk of {operation.path} has no "
                    "'+' or '-' lines, so it changes nothing"
                )
        return operation


def parse_patch(text: str) -> list[FileOperation]:
    """The file operations of `text`, in order; PatchError when the text breaks the grammar."""
    return _Parser(text).parse()


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

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.contents: dict[Path, str | None] = {}
        """New text per touched file; None means deleted."""
        self.changes: list[Change] = []

    def resolve(self, path: str, patch_line: int) -> tuple[Path, str]:
        try:
            target = resolve_in_workspace(self.workspace, path)
        except PathRefused as error:
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
        target, name = self.resolve(operation.path, operation.patch_line)
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


def plan_patch(workspace: Path, text: str) -> PatchPlan:
    """Parse `text` and apply it in memory; PatchError when any part would fail."""
    plan = PatchPlan(workspace)
    for operation in parse_patch(text):
        if isinstance(operation, AddFile):
            plan.add(operation)
        elif isinstance(operation, DeleteFile):
            plan.delete(operation)
        else:
            plan.update(operation)
    return plan


class ApplyPatchTool:
    """Adds, updates, moves and deletes files from one patch, all or nothing."""

    spec = ToolSpec(
        name="apply_patch",
        description=(
            "Edit files with a patch: '*** Begin Patch', then '*** Add File: p' (+lines), "
            "'*** Delete File: p', or '*** Update File: p' [+ '*** Move to: q'] with '@@ optional anchor' "
            "hunks of ' ' context, '-' removed, '+' added lines; then '*** End Patch'. All or nothing."
        ),
        parameters={
            "type": "object",
            "properties": {"patch": {"type": "string"}},
            "required": ["patch"],
            "additionalProperties": False,
        },
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        """Apply the patch; a patch that does not parse or apply is `ok=False` and writes nothing."""
        try:
            check_argument_names(arguments, self.spec)
            text = required_string(arguments, "patch")
        except ArgumentError as error:
            return refusal(str(error))
        try:
            plan = await asyncio.to_thread(plan_patch, context.workspace, text)
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
