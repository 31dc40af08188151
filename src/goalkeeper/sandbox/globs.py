"""The one glob matcher: protect, paths and secrets globs against workspace paths, and rule globs against commands.

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

import functools
import re
from collections.abc import Iterable
from pathlib import Path


def _segment(text: str, any_char: str) -> str:
    """One glob segment as a regex; `any_char` says what `*` and `?` may match (in paths, never `/`).

    `[abc]` and `[!abc]` are character classes, as in the shell.
    """
    out: list[str] = []
    for part in re.split(r"(\*+|\?|\[!?[^\]]+\])", text):
        if part.startswith("*"):
            out.append(f"{any_char}*")
        elif part == "?":
            out.append(any_char)
        elif part.startswith("[") and part.endswith("]") and len(part) > 2:
            body = part[1:-1].replace("\\", "\\\\")
            out.append(f"[^{body[1:]}]" if body.startswith("!") and len(body) > 1 else f"[{body}]")
        else:
            out.append(re.escape(part))
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def compile_path_glob(pattern: str, descend: bool = True) -> re.Pattern[str] | None:
    """The regex for a path glob (see the module docstring); None for a blank glob, which matches nothing.

    `descend=False` matches only what the glob names, not what lies under it (a secret file glob).
    """
    text = pattern.strip()
    anchored = text.startswith("/") or "/" in text.strip("/")
    segments = [part for part in text.strip("/").split("/") if part]
    if not segments:
        return re.compile(r"^.*$") if text else None  # "/" is the whole workspace
    body = ""
    for index, part in enumerate(segments):
        last = index == len(segments) - 1
        if part != "**":
            body += _segment(part, "[^/]") + ("" if last else "/")
        elif not last:
            body += "(?:[^/]*/)*"
        elif body:  # `dir/**` covers `dir` itself too, so nothing new can be made in its place
            body = body.removesuffix("/")
        else:
            body = ".*"
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(f"^{prefix}{body}(?:/.*)?$" if descend else f"^{prefix}{body}$")


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
        if not path_matches(pattern, name):
            continue
        leaf = compile_path_glob(pattern, descend=False)
        if pattern.strip().endswith("/") or root is None or (leaf is not None and leaf.match(name)):
            return pattern
        parts = name.split("/")
        if not any((root / "/".join(parts[:end]) / "pyvenv.cfg").is_file() for end in range(1, len(parts))):
            return pattern
    return None


@functools.lru_cache(maxsize=1024)
def compile_command_glob(pattern: str) -> re.Pattern[str]:
    """The regex for a command rule's `match`: `*` is any text (spaces and `/` included), `?` one character.

    Runs of whitespace count as one space, and the pattern covers the whole command: `git push` is only
    the bare command, `git push*` also every form with arguments.
    """
    text = " ".join(pattern.split())
    return re.compile(f"^{_segment(text, '.')}$", re.DOTALL)


def command_matches(pattern: str, command: str) -> bool:
    """Whether the rule glob `pattern` covers `command` (whitespace collapsed)."""
    return compile_command_glob(pattern).match(" ".join(command.split())) is not None
