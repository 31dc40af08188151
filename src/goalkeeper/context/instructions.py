"""Project instructions: the AGENTS.md files (CLAUDE.md where a folder has none) a goal's prompt carries.

Found the way Codex finds them: the global file in `$GOALKEEPER_HOME`, then one file per folder from the
repository's root down to the goal's working folder, nearer files later so that they take precedence. The
repository's files are read from the goal's base commit with git, never from the working tree the model writes:
a file the goal changes takes effect for the next goal only, and a blob read from git is never a link that
escapes the repository (a link in the tree is reported, not followed). Their text is cut to
`project_doc_max_bytes` in all, and a cut file says so.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from goalkeeper.context.prompts import render
from goalkeeper.errors import WorkspaceError
from goalkeeper.events import InstructionFile, InstructionsLoadedEvent
from goalkeeper.workspace.git import ByCommit, git, objects_key, run_git

CANDIDATES = ("AGENTS.override.md", "AGENTS.md", "CLAUDE.md")
"""The names looked for in each folder, in order: the first one with text is that folder's file."""

GLOBAL_LABEL = "$GOALKEEPER_HOME"
"""How the global file's folder is named to the model and in views (the same on every machine)."""

READ_LIMIT_BYTES = 1_048_576
"""A file bigger than this is not read at all (the cap is at most this much): a hostile repository's
gigabyte AGENTS.md never reaches memory."""

_LINK, _REGULAR = "120000", ("100644", "100755")


@dataclass(frozen=True)
class Found:
    """One candidate file: its label, its size, and its bytes (None when it is not read: `skipped` says why)."""

    path: str
    size: int
    data: bytes | None
    skipped: str | None = None


def load_instructions(top: Path, commit: str, workdir: str, home: Path,
                      max_bytes: int) -> InstructionsLoadedEvent | None:
    """The instructions for a goal whose repository is `top`, read at `commit` from the root down to `workdir`
    (its working folder, '' for the root), after the global file in `home`; None when there are none."""
    if max_bytes <= 0:
        return None  # project_doc_max_bytes = 0: no instructions at all
    folders = folder_chain(workdir)
    found = [*_chosen([[_global_file(home, name) for name in CANDIDATES]]),
             *_chosen(_committed(top, commit, folders))]
    if not found:
        return None
    files, blocks = _assembled(found, max_bytes)
    text = render("instructions", files="\n\n".join(blocks)) if blocks else ""
    return InstructionsLoadedEvent(commit=commit, workdir=folders[-1], max_bytes=max_bytes,
                                   files=files, text=text)


def folder_chain(workdir: str) -> list[str]:
    """The folders from the root ('') down to `workdir`, each as a path in the repository: `a/b` gives
    ['', 'a', 'a/b']. Empty, `.` and `..` parts are dropped, so the chain never leaves the repository."""
    parts = [part for part in workdir.replace("\\", "/").split("/") if part not in ("", ".", "..")]
    return ["", *("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))]


def with_instructions(system: str, instructions: str) -> str:
    """The system prompt followed by the goal's instructions (the prompt alone when there are none)."""
    return f"{system}\n\n{instructions}" if instructions else system


def _chosen(folders: list[list[Found | None]]) -> list[Found]:
    """Each folder's file: its first candidate with text. Candidates that could not be read come before it,
    so a person sees why (`AGENTS.md` a link: CLAUDE.md was read instead)."""
    chosen: list[Found] = []
    for candidates in folders:
        for candidate in candidates:
            if candidate is None:
                continue
            if candidate.data is None:
                chosen.append(candidate)
            elif candidate.data.strip():
                chosen.append(candidate)
                break
    return chosen


def _global_file(home: Path, name: str) -> Found | None:
    """`home/name` read from disk: the person's own folder, which the sandbox hides from the model, so a link
    there is the person's and is followed; anything but a regular file is not read (a FIFO would block)."""
    label = f"{GLOBAL_LABEL}/{name}"
    try:
        fd = os.open(home / name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        return Found(label, 0, None, f"cannot be read: {error.strerror}")
    with os.fdopen(fd, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            return Found(label, 0, None, "not a regular file")
        if status.st_size > READ_LIMIT_BYTES:
            return Found(label, status.st_size, None, f"too big to read (over {READ_LIMIT_BYTES:,} bytes)")
        data = handle.read(READ_LIMIT_BYTES)
    return Found(label, len(data), data)


def _committed(top: Path, commit: str, folders: list[str]) -> list[list[Found | None]]:
    """Each folder's candidates as committed at `commit`: one `ls-tree` lists them all, one `cat-file` reads
    the regular files small enough to read. A link or a submodule is listed, never followed. Kept per commit
    and folders: the goals of a batch (worktrees of one repository) share their commit."""
    kept = _COMMITTED.get(commit, (objects_key(top), commit, tuple(folders)), lambda: _listed(top, commit, folders))
    return [list(candidates) for candidates in kept]


#: (the repository's objects, full commit id, folders) → the candidates there (`_committed`).
_COMMITTED: ByCommit[tuple[str, str, tuple[str, ...]], list[list[Found | None]]] = ByCommit(64)


def _listed(top: Path, commit: str, folders: list[str]) -> list[list[Found | None]]:
    wanted = [f"{folder}/{name}" if folder else name for folder in folders for name in CANDIDATES]
    listing = git(top, "--literal-pathspecs", "ls-tree", "-l", "-z", "--full-tree", commit, "--", *wanted)
    entries: dict[str, tuple[str, str, str, int]] = {}
    for line in filter(None, listing.split("\0")):
        meta, _, path = line.partition("\t")
        mode, kind, sha, size = meta.split()
        entries[path] = (mode, kind, sha, int(size) if size.isdigit() else 0)
    readable = {sha for mode, kind, sha, size in entries.values()
                if kind == "blob" and mode in _REGULAR and 0 < size <= READ_LIMIT_BYTES}
    blobs = _blobs(top, sorted(readable))
    return [[_candidate(path, entries.get(path), blobs) for path in wanted[start:start + len(CANDIDATES)]]
            for start in range(0, len(wanted), len(CANDIDATES))]


def _candidate(path: str, entry: tuple[str, str, str, int] | None, blobs: dict[str, bytes]) -> Found | None:
    """One listed path as a candidate; None when absent or not a file (a folder, a submodule)."""
    if entry is None:
        return None
    mode, kind, sha, size = entry
    if mode == _LINK:
        return Found(path, size, None, "a symbolic link: not followed")
    if kind != "blob" or mode not in _REGULAR:
        return None
    if size > READ_LIMIT_BYTES:
        return Found(path, size, None, f"too big to read (over {READ_LIMIT_BYTES:,} bytes)")
    return Found(path, size, blobs.get(sha, b""))


def _blobs(top: Path, shas: list[str]) -> dict[str, bytes]:
    """The bytes of each blob, read by one `git cat-file --batch` (stored bytes: no filter, no textconv)."""
    if not shas:
        return {}
    done = run_git(top, "cat-file", "--batch", stdin="".join(f"{sha}\n" for sha in shas).encode())
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", errors="replace").strip()
        raise WorkspaceError(f"git could not read the instruction files in {top}: {detail}",
                             hint="check the repository with `git fsck`")
    out, at = done.stdout, 0
    blobs: dict[str, bytes] = {}
    for sha in shas:
        end = out.index(b"\n", at)
        header = out[at:end].split()
        at = end + 1
        if len(header) == 3:  # `<sha> blob <size>`, then the bytes and a newline; a missing one is `<sha> missing`
            size = int(header[2])
            blobs[sha], at = out[at:at + size], at + size + 1
    return blobs


def _assembled(found: list[Found], max_bytes: int) -> tuple[list[InstructionFile], list[str]]:
    """What each file adds, within `max_bytes` of text in all (the earlier files first, as Codex fills it),
    and the prompt's block for each file read."""
    files: list[InstructionFile] = []
    blocks: list[str] = []
    room = max_bytes
    for item in found:
        if item.data is None:
            files.append(InstructionFile(path=item.path, size=item.size, loaded=0, skipped=item.skipped))
            continue
        whole = item.data.decode("utf-8", errors="replace").replace("\0", "").strip()
        encoded = whole.encode()
        # A cut ends on a character: `ignore` drops only the half of one that the byte limit split.
        text = encoded[:room].decode("utf-8", errors="ignore") if len(encoded) > room else whole
        loaded = len(text.encode())
        cut = loaded < len(encoded)
        room -= loaded
        files.append(InstructionFile(path=item.path, size=item.size, loaded=loaded, cut=cut))
        notice = render("instructions_cut", shown=f"{loaded:,}", size=f"{item.size:,}",
                        limit=f"{max_bytes:,}") if cut else ""
        blocks.append(render("instructions_file", path=item.path,
                             body="\n\n".join(part for part in (text, notice) if part)))
    return files, blocks
