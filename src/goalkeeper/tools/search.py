"""The `search` tool: a regex search of the workspace, through ripgrep when installed, else in Python.

Both back ends produce the same `path:line:text` lines, so the model sees one tool whichever ran.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from goalkeeper.sandbox.globs import first_secret_match
from goalkeeper.sandbox.process import run_command
from goalkeeper.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from goalkeeper.tools.files import looks_binary
from goalkeeper.tools.paths import PathRefused, relative, resolve_in_workspace
from goalkeeper.tools.replies import refusal, text_result

MAX_MATCHES = 200
"""Matches shown; the rest are counted, so the model knows to narrow the search."""
MAX_MATCH_CHARS = 300
"""A matching line longer than this is cut (minified files would otherwise flood the output)."""
SKIPPED_DIRS = frozenset({".git", ".venv", "node_modules", "__pycache__"})
"""Directories never searched unless named as the path: tool state and vendored code, not the work."""


class SearchFailed(ValueError):
    """The search could not run (bad regex, a ripgrep error); the message is for the model."""


@dataclass(frozen=True)
class Match:
    """One matching line."""

    path: str
    """Workspace-relative posix path."""
    line: int
    text: str


@dataclass
class Found:
    """What one search turned up: the first matches and how many there were in all."""

    matches: list[Match] = field(default_factory=list)
    total: int = 0
    notes: list[str] = field(default_factory=list)
    """Why the count may be short (a timeout, output too large to keep)."""

    def add(self, match: Match) -> None:
        self.total += 1
        if len(self.matches) < MAX_MATCHES:
            self.matches.append(match)


def format_found(found: Found, pattern: str, scope: str) -> str:
    """`path:line:text` lines, then a footer when matches were left out or the search stopped early."""
    if not found.matches:
        return "\n".join([f"no matches for {pattern!r} in {scope}", *found.notes])
    lines = []
    for match in found.matches:
        text = match.text
        if len(text) > MAX_MATCH_CHARS:
            text = f"{text[:MAX_MATCH_CHARS]}... [{len(text) - MAX_MATCH_CHARS} more chars]"
        lines.append(f"{match.path}:{match.line}:{text}")
    if found.total > len(found.matches):
        lines.append(f"[{len(found.matches)} of {found.total} matches shown; narrow the pattern or the path]")
    return "\n".join(lines + found.notes)


def _walk(directory: Path) -> Iterator[Path]:
    """Files under `directory` in path order (as `rg --sort path`), skipping symlinks and SKIPPED_DIRS."""
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        if entry.is_symlink():
            continue  # a link may point outside the workspace
        if entry.is_dir():
            if entry.name not in SKIPPED_DIRS:
                yield from _walk(Path(entry.path))
        elif entry.is_file():
            yield Path(entry.path)


def search_in_python(workspace: Path, scope: Path, pattern: str, timeout_s: float) -> Found:
    """The fallback when ripgrep is missing: walk, skip binary files, match line by line."""
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise SearchFailed(f"pattern {pattern!r} is not a valid regular expression: {error}") from error
    deadline = time.monotonic() + timeout_s
    found = Found()
    for file in [scope] if scope.is_file() else _walk(scope):
        if time.monotonic() > deadline:
            found.notes.append(f"[search stopped after {timeout_s:g}s; narrow the path]")
            break
        try:
            data = file.read_bytes()
        except OSError:
            continue
        if looks_binary(data):
            continue
        text = data.decode("utf-8", errors="replace")
        lines = text.split("\n")
        if text.endswith("\n"):
            lines.pop()
        name = relative(workspace, file)
        for number, line in enumerate(lines, start=1):
            line = line.removesuffix("\r")
            if regex.search(line):
                found.add(Match(name, number, line))
    return found


async def search_with_ripgrep(
    rg: str, workspace: Path, scope: str, pattern: str, timeout_s: float, env: dict[str, str] | None
) -> Found:
    """Run ripgrep at `rg`, NUL after each path, so a ':' in a file name cannot confuse the parse."""
    argv = [
        rg,
        "--no-config",
        "--line-number",
        "--no-heading",
        "--with-filename",
        "--null",
        "--color",
        "never",
        "--sort",
        "path",
        "--hidden",
    ]
    for skipped in sorted(SKIPPED_DIRS):
        argv += ["--glob", f"!{skipped}"]
    argv += ["-e", pattern, "--"] + ([scope] if scope != "." else [])
    result = await run_command(argv, workspace, timeout_s, env=env)
    found = Found()
    problems = []
    for line in result.output.split("\n"):
        path, nul, rest = line.partition("\0")
        number, colon, text = rest.partition(":")
        if nul and colon and number.isdigit():
            found.add(Match(path.removeprefix("./"), int(number), text.removesuffix("\r")))
        elif line.strip() and not line.startswith("[... "):
            problems.append(line.removeprefix("rg: "))
    if result.timed_out:
        found.notes.append(f"[search stopped after {timeout_s:g}s; narrow the path]")
    if result.truncated_bytes:
        found.notes.append("[more matches were found than could be kept; the count is short]")
    if result.exit_code not in (0, 1) and not found.matches and not result.timed_out:
        raise SearchFailed(f"rg could not search for {pattern!r}: " + "\n".join(problems))
    return found


def _without_secrets(found: Found, secrets: Sequence[str]) -> Found:
    """Drop matches in secret files: their contents are never shown to the model."""
    kept = [match for match in found.matches if first_secret_match(secrets, match.path) is None]
    hidden = len(found.matches) - len(kept)
    notes = [*found.notes, f"[{hidden} matching line(s) in secret files hidden]"] if hidden else found.notes
    return Found(kept, found.total - hidden, notes)


class SearchArgs(ToolArgs):
    """`search`'s arguments."""

    pattern: str
    path: str | None = None


class SearchTool(Tool[SearchArgs]):
    """Finds lines matching a regex in the workspace's files."""

    name = "search"
    description = ("Regex search of file contents; prints path:line:text. path (file or directory) "
                   "narrows it; default the whole workspace.")
    Args = SearchArgs

    async def run(self, args: SearchArgs, context: ToolContext) -> ToolResult:
        """Search; no match is ok=True with a note, a bad regex or path is ok=False."""
        pattern = args.pattern
        try:
            scope = resolve_in_workspace(context.workspace, args.path or ".")
        except PathRefused as error:
            return refusal(str(error))
        if not pattern:
            return refusal("argument 'pattern' is empty; give a regular expression")
        name = relative(context.workspace, scope)
        if not scope.exists():
            return refusal(f"no such path: {name}; leave out 'path' to search the whole workspace")
        rg = shutil.which("rg", path=(context.env or os.environ).get("PATH"))
        try:
            if rg is not None:
                found = await search_with_ripgrep(
                    rg, context.workspace.resolve(), name, pattern, context.default_timeout_s, context.env
                )
            else:
                found = await asyncio.to_thread(
                    search_in_python, context.workspace, scope, pattern, context.default_timeout_s
                )
        except SearchFailed as error:
            return refusal(str(error))
        if context.sandbox is not None:
            found = _without_secrets(found, context.sandbox.secrets)
        output = format_found(found, pattern, name)
        return text_result(output, context, facts={"matches": found.total})
