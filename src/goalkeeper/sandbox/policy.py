"""What a goal's commands may touch: the sandbox policy, built from the contract's boundaries.

Pure data; sandbox/bwrap.py turns it into a bubblewrap command line.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SandboxMode = Literal["read-only", "workspace-write", "danger-full-access"]

#: Files and folders hidden from every command by default (configurable).
DEFAULT_SECRETS: tuple[str, ...] = (".env*", "*.pem", "id_rsa*", "id_ed25519*", ".netrc", ".aws/", ".ssh/")


#: Environment variable names (case-insensitive globs) never passed to the agent's commands: credentials the
#: harness holds. `[sandbox] secret_env` in config.toml adds to them; the provider's own `env_key` is always
#: removed too, whatever its name (see `command_environment`). The helper owning the sandbox refines this list.
DEFAULT_SECRET_ENV: tuple[str, ...] = ("*API_KEY", "*_TOKEN", "*_SECRET", "*PASSWORD*", "AWS_*", "GOALKEEPER_*")


def command_environment(environ: Mapping[str, str], secret_env: Sequence[str] = DEFAULT_SECRET_ENV,
                        also: Sequence[str] = ()) -> dict[str, str]:
    """The environment for the agent's commands and the checks: the runner's, less its credentials.

    `secret_env` are name globs; `also` are exact names always removed (the model provider's `env_key`).
    """
    patterns = [re.compile(fnmatch.translate(glob.upper())) for glob in secret_env]
    dropped = {name.upper() for name in also}
    return {name: value for name, value in environ.items()
            if name.upper() not in dropped and not any(p.match(name.upper()) for p in patterns)}


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
    secret_env: tuple[str, ...] = DEFAULT_SECRET_ENV
    """Environment variable name globs removed from every command's environment (see command_environment)."""
    network: bool = False
    max_processes: int = 512
    """Upper bound on processes a single command may run at once (a fork bomb stops there)."""
    max_output_bytes: int = 4 * 1024 * 1024
    """Output kept per command; the rest is dropped from the middle."""
    extra_writable: tuple[Path, ...] = field(default_factory=tuple)
    """Further absolute paths commands may write (e.g. a tool cache the user allows)."""
