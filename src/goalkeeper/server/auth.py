"""The server's bearer token: made once, kept in `$GOALKEEPER_HOME/server-token` (mode 0600), checked per request.

The token is compared in constant time; a missing or wrong one is a 401 that names what to send. The file is
never reached through a symbolic link (O_NOFOLLOW), and its folder is made 0700, whatever the umask.
"""

from __future__ import annotations

import errno
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from goalkeeper.config.load import goalkeeper_home
from goalkeeper.errors import ConfigError
from goalkeeper.goals.service import private_folder

TOKEN_FILE = "server-token"

bearer = HTTPBearer(auto_error=False, description="The token `gk serve` printed (`gk serve --show-token`).")
"""The security scheme the OpenAPI spec declares on every data route."""


def token_path() -> Path:
    """`$GOALKEEPER_HOME/server-token`."""
    return goalkeeper_home() / TOKEN_FILE


def read_token(path: Path | None = None) -> str | None:
    """The stored token, or None when `gk serve` never ran. A file others can read is tightened to 0600; a link
    or anything but a regular file is refused."""
    path = path or token_path()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ConfigError(f"the server token file {path} is a symbolic link; goalkeeper does not follow it",
                              f"delete {path} (the link only); `gk serve` then makes a new token") from None
        raise ConfigError(f"cannot read the server token {path}: {error.strerror}",
                          f"make {path} readable by you, or delete it; `gk serve` then makes a new one") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"the server token {path} is not a regular file", f"delete {path}")
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            os.fchmod(fd, 0o600)
        token = handle.read(4096).decode("utf-8", errors="replace").strip()
    if not token:
        raise ConfigError(f"the server token file {path} is empty", f"delete {path}; `gk serve` then makes a new one")
    return token


def ensure_token(path: Path | None = None) -> tuple[str, bool]:
    """The stored token, made now if there is none; the flag says whether it was just made (print it once)."""
    path = path or token_path()
    existing = read_token(path)
    if existing is not None:
        return existing, False
    private_folder(path.parent)
    token = secrets.token_urlsafe(32)
    # Written whole under a name of its own (0600 from the first byte, never widened; a planted link is not
    # followed), then linked into place: a reader never finds it empty or half written, and of two servers
    # starting at once only one token lands.
    scratch = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(fd, 0o600)
            handle.write(token + "\n")
        os.link(scratch, path)
    except FileExistsError:
        return ensure_token(path)
    finally:
        scratch.unlink(missing_ok=True)
    return token, True


def token_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison, so the response time tells nothing about how much of a guess was right."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def require_token(request: Request,
                        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    """The dependency every data route has: `Authorization: Bearer <token>` or 401."""
    if credentials is None:
        raise unauthorized("missing bearer token: send `Authorization: Bearer <token>` "
                           "(`gk serve --show-token` prints it)")
    if not token_matches(request.app.state.token, credentials.credentials):
        raise unauthorized("wrong bearer token (`gk serve --show-token` prints the right one)")
