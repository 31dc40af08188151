"""The server's bearer token: made once, kept in `$GOALKEEPER_HOME/server-token` (mode 0600), checked per request.

The token is compared in constant time; a missing or wrong one is a 401 that names what to send.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from goalkeeper.config import goalkeeper_home
from goalkeeper.errors import ConfigError

TOKEN_FILE = "server-token"

bearer = HTTPBearer(auto_error=False, description="The token `gk serve` printed (`gk serve --show-token`).")
"""The security scheme the OpenAPI spec declares on every data route."""


def token_path() -> Path:
    """`$GOALKEEPER_HOME/server-token`."""
    return goalkeeper_home() / TOKEN_FILE


def read_token(path: Path | None = None) -> str | None:
    """The stored token, or None when `gk serve` never ran. A file others can read is tightened to 0600."""
    path = path or token_path()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        path.chmod(0o600)
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise ConfigError(f"the server token file {path} is empty", f"delete {path}; `gk serve` then makes a new one")
    return token


def ensure_token(path: Path | None = None) -> tuple[str, bool]:
    """The stored token, made now if there is none; the flag says whether it was just made (print it once)."""
    path = path or token_path()
    existing = read_token(path)
    if existing is not None:
        return existing, False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # O_EXCL: two servers starting at once cannot both write a token; 0600 from the first byte, never widened.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return ensure_token(path)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
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
