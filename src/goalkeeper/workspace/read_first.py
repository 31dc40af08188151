"""The contract's `read_first` files, read from a commit (the goal's start), never from the working tree.

A commit cannot change under the goal, so a resumed goal is shown the same text, and a blob is bytes: a link
committed in the repository is not followed (its mode says so), and nothing outside the repository is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from goalkeeper.sandbox.globs import path_matches
from goalkeeper.workspace.git import probe, run_git

_FILE_MODES = ("100644", "100755")
"""Regular files; links (120000) and submodules (160000) are left out."""


@dataclass(frozen=True)
class FileText:
    """One file as shown to the model: its path, its text (perhaps cut) and what was left out."""

    path: str
    text: str
    size: int
    cut: bool = False


def read_first_files(top: Path, commit: str, patterns: list[str], max_chars: int) -> tuple[list[FileText], list[str]]:
    """The files at `commit` that `patterns` name, in the order the patterns give them, together at most
    `max_chars` characters (a file that does not fit is cut, and says so); and the patterns that named none."""
    listed = probe(top, "ls-tree", "-r", "-z", "--full-tree", commit) if patterns else None
    if listed is None or listed.returncode != 0:
        return [], list(patterns)
    blobs = [(fields.split(" ")[0], path) for fields, _, path in
             (entry.partition("\t") for entry in listed.stdout.split("\0") if entry)]
    chosen: list[str] = []
    missing: list[str] = []
    for pattern in patterns:
        named = [path for mode, path in blobs if mode in _FILE_MODES and path_matches(pattern, path)]
        chosen += [path for path in named if path not in chosen]
        missing += [] if named else [pattern]
    files: list[FileText] = []
    left = max_chars
    for path in chosen:
        data = run_git(top, "cat-file", "blob", f"{commit}:{path}").stdout
        text = data.decode("utf-8", "replace")
        files.append(FileText(path, text[:max(left, 0)], len(data), cut=len(text) > left))
        left -= len(text)
    return files, missing
