"""What a goal's commands may touch: the sandbox policy, built from the contract's boundaries.

Pure data; sandbox/bwrap.py turns it into a bubblewrap command line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SandboxMode = Literal["read-only", "workspace-write", "danger-full-access"]

#: Files and folders hidden from every command by default (configurable).
DEFAULT_SECRETS: tuple[str, ...] = (".env*", "*.pem", "id_rsa*", "id_ed25519*", ".netrc", ".aws/", ".ssh/")


#: Environment variables never passed to the agent's commands: credentials the harness holds.
SECRET_ENV = re.compile(r"(API_KEY|_TOKEN|_SECRET|PASSWORD)$|^(AWS_|GOALKEEPER_)", re.IGNORECASE)


def command_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for the agent's commands and the checks: the runner's, less its credentials."""
    return {name: value for name, value in environ.items() if not SECRET_ENV.search(name)}


@dataclass(frozen=True)
class SandboxPolicy:
    """How the shell tool, the checks and the keep_green commands of one goal are confined."""

    mode: SandboxMode
    workspace: Path
    """Absolute, resolved workspace root: the only writable place (in workspace-write)."""
    protect: tuple[str, ...] = ()
    """Globs (workspace-relative) re-bound read-only inside the workspace."""
    paths: tuple[str, ...] = ()
    """Globs that may be changed; empty means anything not protected (enforced by the file tools and at
    checkpoints; the sandbox itself cannot express "only these files")."""
    secrets: tuple[str, ...] = DEFAULT_SECRETS
    """Globs masked (made empty/unreadable) in the workspace and in $HOME."""
    network: bool = False
    max_processes: int = 512
    """Upper bound on processes a single command may run at once (a fork bomb stops there)."""
    max_output_bytes: int = 4 * 1024 * 1024
    """Output kept per command; the rest is dropped from the middle."""
    extra_writable: tuple[Path, ...] = field(default_factory=tuple)
    """Further absolute paths commands may write (e.g. a tool cache the user allows)."""
