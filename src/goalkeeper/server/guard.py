"""The server's outer layer: the token before the body, a cap on the body, security headers, slow headers cut.

It wraps the whole ASGI app, so nothing inside (FastAPI's body parsing included) ever sees a request from
someone without the token, or a body over the cap: a 400 MB unauthenticated upload is answered 401 after its
headers, with none of it read. Every response, errors and the dashboard's files included, carries the
security headers. `HeaderDeadline` is the uvicorn protocol that closes a connection whose request headers do
not arrive in time (uvicorn has no such limit of its own; its keep-alive timer restarts on every byte).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from goalkeeper.server.auth import token_matches

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 1024 * 1024
"""The largest request body: a goal's TOML and flags are a few KB, so 1 MB is generous."""

HEADER_TIMEOUT_S = 10.0
"""How long a connection may take to send a request's headers, from its first byte or the previous response."""

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
"""The dashboard loads only its own files: no inline script or style, no frames, no other origin."""

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]

PUBLIC_PATHS = ("/", "/static/")
"""The dashboard page and its files hold no data: they are served without the token (see app.py)."""


class Guard:
    """ASGI middleware: security headers on every response; for data routes, the token, then the body cap."""

    def __init__(self, app: App, token: Callable[[], str], max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        if not _is_public(scope["path"]):
            problem = self._refusal(scope)
            if problem is not None:
                await _answer(send, *problem)
                return
        body = await self._read_body(scope, receive)
        if body is None:
            await _answer(send, 413, f"request body over {self.max_body:,} bytes", None)
            return
        await self.app(scope, _replay(body, receive), send)

    def _refusal(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        """401 with what to send, or None when the bearer token is right. Only headers are looked at."""
        given = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.decode("latin-1").partition(" ")
                given = credentials.strip() if scheme.lower() == "bearer" else None
        challenge = {"www-authenticate": "Bearer"}
        if given is None:
            return 401, ("missing bearer token: send `Authorization: Bearer <token>` "
                         "(`gk serve --show-token` prints it)"), challenge
        if not token_matches(self.token(), given):
            return 401, "wrong bearer token (`gk serve --show-token` prints the right one)", challenge
        return None

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body (at most `max_body` bytes), or None as soon as it is known to be bigger."""
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                return None  # refused before a byte of it is read
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)  # the client went away; the app sees the disconnect next
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _is_public(path: str) -> bool:
    return path == PUBLIC_PATHS[0] or path.startswith(PUBLIC_PATHS[1])


def _with_headers(send: Send) -> Send:
    """`send` that adds the security headers to the response's start (the app's own are kept)."""

    async def sender(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(name, value) for name, value in SECURITY_HEADERS if name not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sender


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` that gives the app the body already read, then passes on what follows (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receiver() -> Message:
        return pending.pop() if pending else await receive()

    return receiver


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str] | None) -> None:
    """An error in the API's shape (`{"detail": ..., "hint": null}`), sent without touching the body.
    `connection: close`: the unread body is not drained, the connection ends after this answer."""
    payload = json.dumps({"detail": detail, "hint": None}).encode()
    extra = [(key.encode(), value.encode()) for key, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close"), *extra]})
    await send({"type": "http.response.body", "body": payload})


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol, with a deadline on request headers (slowloris): a connection that has not
    sent a whole request head `HEADER_TIMEOUT_S` after it opened, or after its previous response, is closed."""

    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # the head arrived: the request is the app's now (a slow body is its business)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # keep-alive: the next request's head gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()  # type: ignore[union-attr]
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()
