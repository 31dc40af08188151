"""What a goal's commands may touch: the sandbox policy, built from the contract's boundaries.

Pure data; sandbox/bwrap.py turns it into a bubblewrap command line.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SandboxMode = Literal["read-only", "workspace-write", "danger-full-access"]

#: Files and folders hidden from every command by default (configurable), in the workspace and in $HOME.
#: A glob ending in `/` masks a directory; any other masks files only (`.env*` spares a virtualenv `.env/`).
#: $GOALKEEPER_HOME is masked whole besides (sandbox/bwrap.py).
DEFAULT_SECRETS: tuple[str, ...] = (
    ".env*", "*.pem", "id_rsa*", "id_ed25519*", "id_ecdsa*", "id_dsa*", ".netrc", ".git-credentials", ".npmrc",
    ".pypirc", ".docker/config.json", ".aws/", ".ssh/", ".gnupg/", ".kube/", ".azure/", ".config/gh/",
    ".config/gcloud/", ".pgpass",
)


#: Environment variable names (case-insensitive globs) never passed to the agent's commands: credentials the
#: harness holds. `[sandbox] secret_env` in config.toml adds to them; the provider's own `env_key` is always
#: removed too, whatever its name, and so is any variable whose value carries credentials (see
#: `command_environment`).
DEFAULT_SECRET_ENV: tuple[str, ...] = (
    "*_KEY", "*API_KEY*", "*APIKEY*", "*_PAT", "GITHUB_PAT", "*_TOKEN", "*_SECRET", "*PASSWORD*", "*PASSWD*",
    "*_CREDENTIALS", "*_AUTH", "AWS_*", "GOALKEEPER_*",
)

#: A URL carrying credentials: `scheme://user:password@host` or `scheme://token@host`.
_URL_USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#@\s]+@", re.IGNORECASE)

#: A query parameter that carries a credential: `?token=…`, `&api_key=…`, `&X-Amz-Signature=…`.
_URL_SECRET_PARAM = re.compile(
    r"[?&;](?:[a-z0-9]*[_.-])*(?:token|key|apikey|secret|password|passwd|pwd|signature|sig|auth|credentials?)"
    r"=[^&#\s]", re.IGNORECASE)


_HELD_ENV: set[str] = set()
_HELD_FILES: set[Path] = set()


def hold_secrets(env: Iterable[str] = (), files: Iterable[Path] = ()) -> None:
    """Credentials this process holds that no config names (a worker's `--api-key-env` variable, its TLS
    certificate and key files, given by flag): from now on no command it runs sees the variables, and the
    sandbox masks the files wherever they lie."""
    _HELD_ENV.update(name.upper() for name in env)
    _HELD_FILES.update(path.absolute() for path in files)


def held_files() -> tuple[Path, ...]:
    """The files `hold_secrets` named, for the sandbox to mask."""
    return tuple(sorted(_HELD_FILES))


def holds_credentials(value: str) -> bool:
    """Whether `value` is (or contains) a URL with credentials in it (DATABASE_URL, PIP_INDEX_URL, a proxy)."""
    return "://" in value and (_URL_USERINFO.search(value) is not None
                               or _URL_SECRET_PARAM.search(value) is not None)


def command_environment(environ: Mapping[str, str], secret_env: Sequence[str] = DEFAULT_SECRET_ENV,
                        also: Sequence[str] = ()) -> dict[str, str]:
    """The environment for the agent's commands and the checks: the runner's, less its credentials.

    `secret_env` are name globs; `also` are exact names always removed (the model provider's `env_key`).
    A variable of any name whose value is a URL with credentials (`postgres://user:pass@db/x`,
    `https://host/?token=…`) is removed too: the name cannot tell DATABASE_URL from a harmless *_URL.
    """
    patterns = [re.compile(fnmatch.translate(glob.upper())) for glob in secret_env]
    dropped = {name.upper() for name in also} | _HELD_ENV
    return {name: value for name, value in environ.items()
            if name.upper() not in dropped and not any(p.match(name.upper()) for p in patterns)
            and not holds_credentials(value)}


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
    secret_files: tuple[Path, ...] = ()
    """Absolute files masked wherever they lie (the certificate, key and CA of the user's `[temporal]`)."""
    network: bool = False
    max_processes: int = 512
    """Upper bound on processes a single command may run at once (a fork bomb stops there)."""
    max_output_bytes: int = 4 * 1024 * 1024
    """Output kept per command; the rest is dropped from the middle."""
    extra_writable: tuple[Path, ...] = field(default_factory=tuple)
    """Further absolute paths commands may write (e.g. a tool cache the user allows)."""
    bound_at: Path | None = None
    """Where `workspace` appears inside the sandbox, when elsewhere: the clean room's tree is bound at the real
    workspace's path, so absolute paths in configs still work."""
    ro_binds: tuple[tuple[Path, Path], ...] = ()
    """(source, path inside) bound read-only over the workspace: the clean room's environment snapshot."""
    writable_only: tuple[Path, ...] | None = None
    """With a tuple (absolute, resolved paths in the workspace): the workspace is bound read-only but for these,
    a child agent's `paths` (run/subagents.py); protect and secret binds still lie over them."""
