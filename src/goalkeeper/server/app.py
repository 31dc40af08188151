"""The server application: routes, errors as JSON, the dashboard's files, and `serve` (uvicorn on loopback).

A window on the store: it reads the store and changes goals through control.py; it never runs a goal.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

import goalkeeper
from goalkeeper.errors import (
    BlobNotFoundError,
    ConfigError,
    GoalkeeperError,
    GoalNotFoundError,
    LeaseHeldError,
    StaleGoalError,
    StoreError,
    StoreLockedError,
    WorkspaceError,
)
from goalkeeper.goals import control, service
from goalkeeper.goals.batch import BatchNotFoundError
from goalkeeper.server import api, batches, goals
from goalkeeper.server.auth import ensure_token
from goalkeeper.server.guard import HEADER_TIMEOUT_S, App, Guard, HeaderDeadline
from goalkeeper.server.sse import KEEP_ALIVE_S, Broadcaster, EventFeed, Fanout

STATIC_DIR = Path(__file__).parent / "static"
"""The dashboard: index.html and its JS/CSS. They hold no data, so they are served without the token."""
DEFAULT_PORT = 8765

_STATUS: list[tuple[type[GoalkeeperError], int]] = [
    (GoalNotFoundError, 404), (BlobNotFoundError, 404), (BatchNotFoundError, 404), (StoreLockedError, 503),
    (StaleGoalError, 409), (LeaseHeldError, 409), (StoreError, 503), (control.GoalExistsError, 409),
    (control.ControlRejected, 409), (WorkspaceError, 409), (ConfigError, 422), (GoalkeeperError, 422),
]
"""The HTTP status of each error type, most specific first (ContractError is a GoalkeeperError: 422)."""


def create_app(store_path: Path | None = None, token: str | None = None, *, poll_s: float = 0.1,
               fanout: Fanout = "shared", keep_alive_s: float = KEEP_ALIVE_S, static_dir: Path = STATIC_DIR) -> FastAPI:
    """The ASGI app over the store at `store_path` ($GOALKEEPER_HOME/state.db by default). Every data route
    needs `Authorization: Bearer <token>` (the stored server token by default). Streams poll the store every
    `poll_s` and send a keep-alive comment every `keep_alive_s` when idle."""
    store = service.open_store(store_path)
    feed = EventFeed(store.location)
    broadcaster = Broadcaster(feed, poll_s, fanout, keep_alive_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await broadcaster.close()  # the store stays open: `close_app` closes it (test clients run lifespans often)

    app = FastAPI(title="goalkeeper", version=goalkeeper.__version__, lifespan=lifespan, openapi_url=None,
                  docs_url=None, redoc_url=None,
                  description="A window on goalkeeper's store: threads, goals, events (paged and as server-sent "
                              "events), checkpoints, evidence, reports and diffs, and batches of goals (`gk "
                              "batch`); goals are set, paused, resumed, cleared and given budget through the same "
                              "control path as `gk goal`. The server never runs a goal: `gk run` does. Every "
                              "route needs `Authorization: Bearer <token>` (`gk serve --show-token`).")
    app.state.store, app.state.feed, app.state.broadcaster = store, feed, broadcaster
    app.state.token = token if token is not None else ensure_token()[0]
    # Outside routing and body parsing: the token is checked, and the body capped, before a byte is read.
    app.add_middleware(Guard, token=lambda: app.state.token)
    app.include_router(api.router)
    app.include_router(goals.router)
    app.include_router(batches.router)
    _add_dashboard(app, static_dir)
    _add_error_handlers(app)
    return app


def close_app(app: FastAPI) -> None:
    """Close the app's store connections (after the server has stopped)."""
    app.state.feed.close()
    app.state.store.close()


def _add_dashboard(app: FastAPI, static_dir: Path) -> None:
    """`/` and `/static/*` without the token: the page asks for it and keeps it in the browser session."""

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        page = static_dir / "index.html"
        if not page.is_file():
            return JSONResponse({"detail": "the dashboard is not installed"}, status_code=404)
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    app.mount("/static", _Assets(static_dir), name="static")


class _Assets:
    """StaticFiles that answers 404 (not a 500) while the directory does not exist."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = StaticFiles(directory=directory, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.directory.is_dir():
            await JSONResponse({"detail": "Not Found"}, status_code=404)(scope, receive, send)
            return
        await self.files(scope, receive, send)


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is `{"detail": ..., "hint": ...}` (ErrorOut), validation errors included."""

    @app.exception_handler(GoalkeeperError)
    async def goalkeeper_error(request: Request, error: GoalkeeperError) -> JSONResponse:
        status = next(code for kind, code in _STATUS if isinstance(error, kind))
        return JSONResponse({"detail": error.message, "hint": error.hint}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [_problem(item) for item in error.errors()]
        detail = "; ".join(f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in problems)
        return JSONResponse({"detail": detail or "invalid request", "hint": None, "errors": problems},
                            status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(error.detail)}, status_code=error.status_code, headers=error.headers)


def _problem(item: Any) -> dict[str, Any]:
    """A validation error reduced to what is JSON-safe and useful: where, what, which kind."""
    return {"loc": [str(part) for part in item.get("loc", ())], "msg": str(item.get("msg", "")),
            "type": str(item.get("type", ""))}


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int, allow_remote: bool) -> socket.socket:
    """A listening socket on `host:port`; a non-loopback host needs `allow_remote`."""
    if not is_loopback(host) and not allow_remote:
        raise ConfigError(f"refusing to listen on {host}: it is not a loopback address, and the API can change "
                          "goals (only a bearer token stands in the way, sent without TLS)",
                          "serve on 127.0.0.1 (the default) and tunnel to it, or pass --allow-remote knowingly")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}",
                          "pick another --port, or stop what is using it") from None
    sock.listen(128)
    return sock


def server_config(app: App, header_timeout_s: float = HEADER_TIMEOUT_S) -> uvicorn.Config:
    """uvicorn's settings for `app`: h11 with a deadline on request heads (slow headers are cut), a short
    keep-alive, and a 16 KB cap on a request head (h11's incomplete-event limit)."""
    protocol = type("HeaderDeadline", (HeaderDeadline,), {"header_timeout_s": header_timeout_s})
    return uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="on", http=protocol,
                          timeout_keep_alive=5, h11_max_incomplete_event_size=16 * 1024)


def serve(host: str = "127.0.0.1", port: int = DEFAULT_PORT, allow_remote: bool = False,
          echo: Callable[[str], None] = print) -> None:
    """Serve the API and the dashboard until Ctrl-C. The token is printed only when it is first made."""
    sock = bind(host, port, allow_remote)
    token, created = ensure_token()
    app = create_app(token=token)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    echo(f"goalkeeper server: http://{shown}:{bound}/ (store {app.state.store.shown})")
    if created:
        echo(f"token (printed once; `gk serve --show-token` prints it again): {token}")
    if not is_loopback(host):
        echo("warning: listening beyond loopback without TLS; the token travels in clear text")
    config = server_config(app)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        close_app(app)
