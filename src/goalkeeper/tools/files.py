"""The `read_file` and `write_file` tools, and the atomic write that `apply_patch` shares.

Every path goes through `resolve_in_workspace`, then the goal's boundaries (`check_read`, `check_write`);
nothing here touches a file outside the workspace.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import stat
from pathlib import Path

from goalkeeper.context.tokens import EstimatedTokens
from goalkeeper.tools.base import Count, Tool, ToolArgs, ToolContext, ToolResult
from goalkeeper.tools.paths import (
    BoundaryRefused,
    PathRefused,
    check_read,
    check_write,
    relative,
    resolve_in_workspace,
)
from goalkeeper.tools.replies import refusal

MAX_LINES = 2000
"""Lines one read_file call returns when the model names no limit."""
MAX_LINE_CHARS = 2000
"""A longer line (minified code, data) is cut, so one line cannot eat the whole output budget."""
FOOTER_TOKENS = 24
"""Tokens kept for the `[lines A-B of N; read more with offset=…]` footer."""
SNIFF_BYTES = 8192
"""A NUL byte in this much of the start of a file marks it binary (as git and grep decide)."""


def looks_binary(head: bytes) -> bool:
    """True when the first bytes of a file say it is not text."""
    return b"\0" in head[:SNIFF_BYTES]


def blocking_parent(target: Path) -> Path | None:
    """The nearest existing ancestor of `target` when it is not a directory (so `target` cannot be made)."""
    for parent in target.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def write_atomically(target: Path, data: bytes) -> None:
    """Write `data` to `target` through a temp file and os.replace, creating parent directories.

    Readers (a running check, the model's next read) see the old file or the new one, never half of
    one. A replaced file keeps its permission bits.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode: int | None = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = None
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _numbered(number: int, raw: bytes) -> str:
    text = raw.rstrip(b"\n").removesuffix(b"\r").decode("utf-8", errors="replace")
    if len(text) > MAX_LINE_CHARS:
        text = f"{text[:MAX_LINE_CHARS]}... [{len(text) - MAX_LINE_CHARS} more chars on this line]"
    return f"{number:5d}\t{text}\n"


def read_numbered(target: Path, name: str, first: int, limit: int, token_limit: int,
                  counter: EstimatedTokens) -> ToolResult:
    """Lines `first`.. of `target`, numbered: at most `limit` lines and `token_limit` tokens by `counter`.

    Lines are counted one by one (a token never spans a numbered line's start), so a window stops at the
    line that would pass the limit, and the footer says where to read on.
    """
    if not target.exists():
        return refusal(f"no such file: {name}; use `search` to find the right path")
    if target.is_dir():
        return refusal(f"{name} is a directory, not a file; list it with `shell` (ls) or use `search`")
    shown: list[str] = []
    used = total = 0
    try:
        with target.open("rb") as handle:
            if looks_binary(handle.read(SNIFF_BYTES)):
                size = target.stat().st_size
                return refusal(f"{name} is a binary file ({size} bytes); read_file shows text files only")
            handle.seek(0)
            budget = token_limit - FOOTER_TOKENS
            for total, raw in enumerate(handle, start=1):
                if total < first or len(shown) >= limit or used >= budget:
                    continue
                line = _numbered(total, raw)
                tokens = counter.count(line)
                if shown and used + tokens > budget:
                    used = budget  # full: stop adding, keep counting lines
                    continue
                shown.append(line)
                used += tokens
    except OSError as error:
        return refusal(f"cannot read {name}: {error.strerror or error}")
    if total == 0 and first == 1:
        return ToolResult(output=f"({name} is empty)")
    if first > total:
        return refusal(f"offset {first} is past the end of {name} ({total} lines)")
    last = first + len(shown) - 1
    if first > 1 or last < total:
        more = f"; read more with offset={last + 1}" if last < total else ""
        shown.append(f"[lines {first}-{last} of {total}{more}]\n")
    return ToolResult(output="".join(shown))


class ReadFileArgs(ToolArgs):
    """`read_file`'s arguments."""

    path: str
    offset: Count | None = None
    limit: Count | None = None


class ReadFileTool(Tool[ReadFileArgs]):
    """Reads a text file with line numbers, a window of lines at a time."""

    name = "read_file"
    description = "Read a text file with line numbers; offset: first line (1-based), limit: line count."
    Args = ReadFileArgs

    async def run(self, args: ReadFileArgs, context: ToolContext) -> ToolResult:
        """Read the requested lines; a missing, binary or outside file is `ok=False` with the reason."""
        try:
            target = resolve_in_workspace(context.workspace, args.path)
            check_read(context.workspace, args.path, target, context.sandbox)
        except (PathRefused, BoundaryRefused) as error:
            return refusal(str(error))
        name = relative(context.workspace, target)
        return await asyncio.to_thread(
            read_numbered, target, name, args.offset or 1, args.limit or MAX_LINES, context.output_token_limit,
            context.token_counter(),
        )


class WriteFileArgs(ToolArgs):
    """`write_file`'s arguments."""

    path: str
    content: str


class WriteFileTool(Tool[WriteFileArgs]):
    """Creates or replaces a whole file, atomically."""

    name = "write_file"
    description = "Create or overwrite a file with content (parent directories are created)."
    Args = WriteFileArgs

    async def run(self, args: WriteFileArgs, context: ToolContext) -> ToolResult:
        """Write the file; refusals (outside the workspace or the boundaries, a directory in the way) are
        `ok=False`, and nothing is written."""
        try:
            target = resolve_in_workspace(context.workspace, args.path)
            check_write(context.workspace, args.path, target, context.sandbox)
            data = args.content.encode("utf-8")
        except (PathRefused, BoundaryRefused) as error:
            return refusal(str(error))
        except UnicodeEncodeError as error:
            return refusal(f"argument 'content' is not valid text: {error.reason} at index {error.start}")
        name = relative(context.workspace, target)
        if target.is_dir():
            return refusal(f"{name} is a directory; write_file needs a file path")
        blocker = blocking_parent(target)
        if blocker is not None:
            return refusal(f"cannot create {name}: {relative(context.workspace, blocker)} is a file")
        existed = target.exists()
        try:
            await asyncio.to_thread(write_atomically, target, data)
        except OSError as error:
            return refusal(f"cannot write {name}: {error.strerror or error}")
        verb = "overwrote" if existed else "created"
        return ToolResult(
            output=f"{verb} {name} ({len(data)} bytes)",
            facts={"bytes_written": len(data)},
            files_touched=(name,),
        )
