"""The `apply_patch` grammar: the patch format Codex-style models emit, read into file operations.

Pure parsing: it never touches the workspace (that is patch.py); every error names the patch line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

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
