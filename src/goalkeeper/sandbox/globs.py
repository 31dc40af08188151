"""The one glob matcher: protect, paths and secrets globs against workspace paths (through pathspec), and rule
globs against commands.

Pure string work: nothing here touches the file system, so the file tools, the sandbox and the checkpoint
checks all agree on what a glob covers.

Path globs follow .gitignore, which most people already know:

- `*` matches within one path segment, `?` one character other than `/`, `[abc]` one of those, `**` any
  number of segments (`tests/**`, `**/fixtures/`, `src/**/test_*.py`).
- A glob with no `/` except a trailing one matches at any depth: `*.lock` covers `a/b/poetry.lock`,
  `.env*` covers `deploy/.env.prod`. A glob with a `/` anywhere else, or a leading `/`, is anchored at the
  workspace root: `src/app.py` is that one file, `/tests/` only the top-level folder.
- A glob covers what it names and everything under it: `vendor` and `vendor/` both cover `vendor/x.py`.
  The trailing `/` says "a directory" for the reader (and for the sandbox, which binds directories).
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable
from pathlib import Path

EVERYTHING = re.compile(".*")
"""The regex of a glob that covers and names every path (`/`, `*`, `**`)."""


@functools.lru_cache(maxsize=1024)
def compile_path_glob(pattern: str) -> re.Pattern[str] | None:
    """The regex for a path glob (see the module docstring); None for a blank glob, which matches nothing.

    `regex.match(path)` says whether the glob covers `path`; `regex.fullmatch(path)` whether it names `path`
    itself rather than a folder above it. pathspec's gitignore patterns do the matching; what this adds is our
    two departures from .gitignore: `dir/` and `dir/**` cover `dir` itself too, and a leading `#` or `!`
    is a plain character, not a comment or a negation.
    """
    text = pattern.strip()
    anchored = text.startswith("/") or "/" in text.strip("/")
    segments = [part for part in text.strip("/").split("/") if part]
    while len(segments) > 1 and segments[-1] == "**":
        segments.pop()  # `dir/**` covers `dir` itself too, so nothing new can be made in its place
    if not segments:
        return EVERYTHING if text else None  # "/" is the whole workspace
    body = "/".join(segments).replace("\\", "\\\\")
    glob = f"/{body}" if anchored else (f"\\{body}" if body[0] in "#!" else body)
    from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern  # 4 MiB and 25 ms: only matching needs it

    regex = GitIgnoreSpecPattern(glob).regex
    if not isinstance(regex, re.Pattern):
        return None
    return EVERYTHING if regex.pattern == "." else regex  # pathspec's "any path" (`*`, `**`) names every path too


def normalize_path(path: str) -> str:
    """A workspace-relative posix path without a leading `./` or `/`, or a trailing `/`."""
    text = path.replace("\\", "/").strip()
    while text.startswith("./"):
        text = text[2:]
    return text.strip("/")


def path_matches(pattern: str, path: str) -> bool:
    """Whether the path glob `pattern` covers the workspace-relative posix `path`."""
    regex = compile_path_glob(pattern)
    return regex is not None and regex.match(normalize_path(path)) is not None


def first_path_match(patterns: Iterable[str], path: str) -> str | None:
    """The first of `patterns` that covers `path`, or None."""
    return next((pattern for pattern in patterns if path_matches(pattern, path)), None)


def first_secret_match(secrets: Iterable[str], path: str, root: Path | None = None) -> str | None:
    """The first secret glob that covers `path`, as the sandbox masks them: what a glob names and everything
    under it, except inside a virtualenv (a folder holding `pyvenv.cfg` below `root`), which the sandbox
    never searches: `.env*` hides `.env`, `.env.local` and `secrets.env/key`, but not a `.env/` virtualenv."""
    name = normalize_path(path)
    for pattern in secrets:
        regex = compile_path_glob(pattern)
        if regex is None or not regex.match(name):
            continue
        if pattern.strip().endswith("/") or root is None or regex.fullmatch(name):
            return pattern
        parts = name.split("/")
        if not any((root / "/".join(parts[:end]) / "pyvenv.cfg").is_file() for end in range(1, len(parts))):
            return pattern
    return None


def command_matches(pattern: str, command: str) -> bool:
    """Whether the rule glob `pattern` covers all of `command`: shell-style, so `*` is any text (spaces and `/`
    included), `?` one character, `[abc]` one of those. Runs of whitespace count as one space in both, so
    `git push` is only the bare command, `git push*` also every form with arguments."""
    # `[^abc]` negates, as it did before fnmatch (which spells it `[!abc]`): a deny rule must not match less.
    shell_style = " ".join(pattern.split()).replace("[^", "[!")
    return fnmatch.fnmatchcase(" ".join(command.split()), shell_style)
