"""A small MCP server for tests/test_mcp_client.py, run as `python mcp_server_fixture.py [stdio | http PORT]`.

Its tools: `echo`, `add`, `where` (its pid and working directory: a restart shows as a new pid), `touch`
(writes a file, to show what the sandbox lets a server write), `nap` (sleeps: the tool timeout) and `crash`
(exits in the middle of the call: the client must answer with a tool error, then restart it).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer

server = MCPServer("fixture")


@server.tool()
def echo(text: str) -> str:
    """Returns `text` unchanged."""
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@server.tool()
def where() -> str:
    """This server's process id and working directory."""
    return f"pid={os.getpid()} cwd={os.getcwd()}"


@server.tool()
def touch(path: str) -> str:
    """Writes `path` (absolute, or relative to the working directory); says what happened."""
    try:
        Path(path).write_text("written by the MCP server\n")
    except OSError as error:
        return f"refused: {error.strerror}"
    return f"wrote {path}"


@server.tool()
async def nap(seconds: float) -> str:
    """Sleeps `seconds`, then answers."""
    await asyncio.sleep(seconds)
    return "rested"


@server.tool()
def crash() -> str:
    """Exits the server in the middle of the call."""
    os._exit(3)


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
