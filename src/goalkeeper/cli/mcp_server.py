"""`gk mcp-server`: goalkeeper's goals as MCP tools, over stdio (default) or streamable HTTP (`--http HOST:PORT`).

The tools live in goals/mcp_tools.py; this parses the options and serves them. Over HTTP it is guarded as `gk
serve` is: loopback unless `--allow-remote`, and every request needs the server's bearer token (the same token,
`gk serve --show-token`), checked before a byte of the body is read. The mcp SDK, uvicorn and the server's guard
load only when this command runs (tests/test_startup.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from goalkeeper.cli import console
from goalkeeper.errors import ConfigError
from goalkeeper.goals import service

if TYPE_CHECKING:
    from goalkeeper.store import Store

MCP_PATH = "/mcp"
"""Where the streamable HTTP endpoint answers."""


def mcp_server(
    http: Annotated[str | None, typer.Option("--http", metavar="HOST:PORT",
                                             help="Serve streamable HTTP on HOST:PORT instead of stdio.")] = None,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow a non-loopback --http host.")] = False,
    cwd: Annotated[Path, typer.Option("--cwd", help="The default workspace of the tools (default: the current "
                                                    "directory).")] = Path("."),
) -> int:
    """Serve goals as MCP tools (goal_set, goal_get, goal_pause, goal_resume, goal_clear, goal_report,
    goal_events) over stdio, or streamable HTTP with --http. A goal set or resumed runs in a detached `gk run`."""
    workspace = service.workspace_of(cwd)
    address = parse_address(http) if http is not None else None
    with service.open_store() as store:
        if address is None:
            serve_stdio(store, workspace)
        else:
            serve_http(store, workspace, *address, allow_remote)
    return 0


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:PORT` for IPv6) as (host, port); anything else is one clear error."""
    host, colon, port = text.strip().rpartition(":")
    if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"--http {text!r}: not HOST:PORT", "write --http 127.0.0.1:8766 (the port 1-65535)")
    return host.strip("[]"), int(port)


def serve_stdio(store: Store, workspace: Path) -> None:
    """Serve over this process's stdin and stdout until the client closes them (nothing else writes stdout)."""
    import anyio

    from goalkeeper.goals.mcp_tools import build_server  # the mcp SDK loads only here

    anyio.run(build_server(store, workspace).run_stdio_async)


def serve_http(store: Store, workspace: Path, host: str, port: int, allow_remote: bool) -> None:
    """Serve streamable HTTP at http://HOST:PORT/mcp until Ctrl-C, behind the token guard of `gk serve`."""
    from goalkeeper.server.app import bind, is_loopback, server_config

    sock = bind(host, port, allow_remote)  # refuses a non-loopback host without --allow-remote, before mcp loads
    import uvicorn

    from goalkeeper.goals.mcp_tools import build_server
    from goalkeeper.server.auth import ensure_token
    from goalkeeper.server.guard import Guard

    token, created = ensure_token()
    app = build_server(store, workspace).streamable_http_app(streamable_http_path=MCP_PATH, host=host)
    shown = f"[{host}]" if ":" in host else host
    console.out.print(f"goalkeeper MCP server: http://{shown}:{sock.getsockname()[1]}{MCP_PATH} "
                      f"(store {store.path})", markup=False)
    if created:
        console.out.print(f"token (printed once; `gk serve --show-token` prints it again): {token}", markup=False)
    if not is_loopback(host):
        console.out.print("warning: listening beyond loopback without TLS; the token travels in clear text")
    uvicorn.Server(server_config(Guard(app, token=lambda: token))).run(sockets=[sock])
