"""The contract's artifacts, checked by the harness like a check: each path or glob must match enough files.

A file counts when git would see it (tracked or untracked, not ignored: what a checkpoint can commit) and it is
a regular file, not a link: a link the model made to some other file proves nothing was written.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from goalkeeper.events import Evidence
from goalkeeper.sandbox.globs import path_matches
from goalkeeper.spec.contract import Artifact
from goalkeeper.verify.pins import workspace_files

_SHOWN = 20
"""Matching paths listed in an artifact's evidence."""


def artifact_evidence(artifacts: list[Artifact], workspace: Path) -> list[Evidence]:
    """One piece of evidence per artifact: passed when at least `min` regular files match its path or glob."""
    if not artifacts:
        return []
    started = time.monotonic()
    files = [path for path in workspace_files(workspace) if _regular(workspace / path)]
    return [_judge(artifact, files, time.monotonic() - started) for artifact in artifacts]


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _judge(artifact: Artifact, files: list[str], duration_s: float) -> Evidence:
    found = [path for path in files if path_matches(artifact.path, path)]
    passed = len(found) >= artifact.min
    wanted = "a file" if artifact.min == 1 else f"at least {artifact.min} files"
    listing = "\n".join(found[:_SHOWN]) + (f"\n… and {len(found) - _SHOWN} more" if len(found) > _SHOWN else "")
    summary = f"{len(found)} matching file(s), {wanted} required" + (f":\n{listing}" if found else "")
    error = None if passed else (f"missing: no file matches `{artifact.path}`" if not found
                                 else f"only {len(found)} of {artifact.min} files match `{artifact.path}`")
    return Evidence(name=artifact.path, kind="artifact", command=f"artifact {artifact.path}",
                    exit_code=0 if passed else 1, duration_s=duration_s, output_tail=summary, passed=passed,
                    error=error, basis="files", room="workspace")
