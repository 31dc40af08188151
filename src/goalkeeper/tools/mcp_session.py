"""One MCP server's connection for the length of a goal run: started, watched, restarted, stopped.

A stdio server runs inside the goal's sandbox, exactly as a `shell` command would (bwrap argv from
sandbox/bwrap.py, the process limit of sandbox/limits.py, the commands' environment less its credentials),
in its own process group, which the SDK's transport kills when the connection closes. An HTTP server is
the URL the person configured.

The connection lives in a task of its own (the SDK's transports must be entered and left in one task);
calls are made from the tool calls' tasks. A call never hangs: `tool_timeout_s` bounds it, and a server
that dies answers every call in flight at once (the SDK fails them with CONNECTION_CLOSED). A crashed
server is started again at the next call, after a backoff, at most MAX_RESTARTS times in a run.

The `mcp` SDK is imported only when a server starts: read-only commands never load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from goalkeeper.config.schema import McpServer
from goalkeeper.errors import GoalkeeperError
from goalkeeper.sandbox.bwrap import require_sandbox, sandbox_argv
from goalkeeper.sandbox.limits import process_limit
from goalkeeper.sandbox.policy import SandboxPolicy

if TYPE_CHECKING:
    from mcp.client import Client
    from mcp_types import CallToolResult, Tool

MAX_RESTARTS = 3
"""Restarts of a crashed server in one run; after them its calls are tool errors until the next run."""
BACKOFF_S = (0.5, 1.0, 2.0)
"""The wait before each restart."""
MAX_TOOL_PAGES = 100
"""tools/list pages read at most: a server that pages forever cannot hang the start."""
STDERR_TAIL = 2_000
"""Bytes of a server's stderr kept (the rest is dropped as it arrives), shown when it fails to start."""


class McpServerError(GoalkeeperError):
    """An MCP server could not be started (or listed its tools wrongly): the run stops with what to fix."""


class McpCallError(Exception):
    """A call that got no answer from the server (it crashed, timed out or cannot start): a tool error."""


@dataclass
class McpConnection:
    """One `[mcp_servers.NAME]` server for one run."""

    name: str
    table: McpServer
    sandbox: SandboxPolicy
    env: Mapping[str, str]
    """The commands' environment (credentials removed); the table's `env` is laid over it."""
    client: Client | None = None
    restarts: int = 0
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _stderr: _Tail = field(default_factory=lambda: _Tail())
    """The end of the server's stderr: shown when it fails to start, never on the person's terminal."""

    async def start(self) -> list[Tool]:
        """Start the server and list its tools, within `startup_timeout_s`; McpServerError says why not."""
        try:
            return await asyncio.wait_for(self._open(), self.table.startup_timeout_s)
        except TimeoutError:
            said = self._stderr_tail()
            if self._task is not None:
                self._task.cancel()  # stuck before the handshake ended: `_stop` would never be looked at
            await self.aclose()
            raise McpServerError(f"MCP server `{self.name}` did not start and list its tools within "
                                 f"{self.table.startup_timeout_s:g}s{said}",
                                 f"raise startup_timeout_s in [mcp_servers.{self.name}], fix the server, or set "
                                 "enabled = false") from None
        except McpServerError:
            await self.aclose()
            raise

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        """Call `tool` on the server within `tool_timeout_s`; McpCallError when no answer came."""
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED

        client = await self._ready()
        try:
            return await asyncio.wait_for(client.call_tool(tool, arguments), self.table.tool_timeout_s)
        except TimeoutError:
            await self._stop_client()  # a server stuck on one call may be stuck for the next: start afresh
            raise McpCallError(f"MCP server `{self.name}` did not answer within tool_timeout_s = "
                               f"{self.table.tool_timeout_s:g}s; the call was abandoned and the server is "
                               "restarted for the next call") from None
        except MCPError as error:
            if error.code != CONNECTION_CLOSED:  # the server answered, with an error: the connection is fine
                raise McpCallError(f"MCP server `{self.name}` refused the call: {error.message}") from None
            self.client = None  # it died: the next call starts it again
            raise McpCallError(f"MCP server `{self.name}` stopped during this call (connection closed); it is "
                               "restarted for the next call") from None
        except Exception as error:  # the transport's own failure (an HTTP error, a broken pipe): no answer came
            self.client = None
            raise McpCallError(f"MCP server `{self.name}` failed during this call ({_describe(error)}); it is "
                               "restarted for the next call") from None

    async def aclose(self) -> None:
        """Stop the server (its process group is killed if it does not exit on its own) and wait for it."""
        await self._stop_client()

    async def _ready(self) -> Client:
        """The live client, after starting the server again if it died (bounded, with backoff)."""
        async with self._lock:
            if self.client is not None and self._task is not None and not self._task.done():
                return self.client
            await self._stop_client()
            if self.restarts >= MAX_RESTARTS:
                raise McpCallError(f"MCP server `{self.name}` stopped and was restarted {MAX_RESTARTS} times; it "
                                   "is not started again in this run: do without its tools")
            await asyncio.sleep(BACKOFF_S[min(self.restarts, len(BACKOFF_S) - 1)])
            self.restarts += 1
            try:
                await self.start()
            except McpServerError as error:
                raise McpCallError(f"{error.message}; its tools are unavailable for now") from None
            assert self.client is not None
            return self.client

    async def _open(self) -> list[Tool]:
        """Start the connection's task and wait until it has listed the server's tools."""
        listed: asyncio.Future[list[Tool]] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._serve(listed), name=f"mcp:{self.name}")
        return await listed

    async def _serve(self, listed: asyncio.Future[list[Tool]]) -> None:
        """Hold the connection open until `_stop`; the tools listed (or the failure) go to `listed`."""
        from mcp.client import Client

        try:
            async with self._transport() as transport, Client(transport, mode="legacy") as client:
                tools = await _list_tools(client)
                self.client = client
                listed.set_result(tools)
                await self._stop.wait()
        except Exception as error:  # the SDK raises what its transport met: all of it means "did not start"
            if not listed.done():
                listed.set_exception(McpServerError(f"MCP server `{self.name}` failed to start: "
                                                    f"{_describe(error)}{self._stderr_tail()}",
                                                    f"fix [mcp_servers.{self.name}] or set enabled = false"))
        finally:
            self.client = None

    async def _stop_client(self) -> None:
        """End the connection's task, which closes the transport and stops the server."""
        task, self._task, self.client = self._task, None, None
        if task is None:
            return
        self._stop.set()
        done, _ = await asyncio.wait({task}, timeout=10)  # the SDK's own shutdown is bounded to ~6 s
        if not done:
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)  # a cancelled task's CancelledError is not ours

    @contextlib.asynccontextmanager
    async def _transport(self) -> AsyncIterator[Any]:
        """The SDK transport for the table: stdio inside the sandbox, or streamable HTTP."""
        if self.table.url is not None:
            async with _http_transport(self.name, self.table, self.env) as transport:
                yield transport
            return
        from mcp.client.stdio import StdioServerParameters, stdio_client

        # Kept open across restarts (closed by aclose), so a failed start can say what the server printed.
        async with process_limit(self.sandbox.max_processes) as limit, self._stderr.pipe() as errlog:
            argv = [*limit.prefix, *await asyncio.to_thread(self._sandboxed_argv)]
            env = {**self.env, **self.table.env}
            params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=self.sandbox.workspace)
            yield stdio_client(params, errlog=errlog)

    def _sandboxed_argv(self) -> list[str]:
        """The server's command line wrapped as a `shell` command is (the sandbox's checks read files)."""
        require_sandbox(self.sandbox)
        command = "exec " + shlex.join([self.table.command or "", *self.table.args])
        home = Path(self.env.get("HOME") or Path.home())
        return sandbox_argv(self.sandbox, command, home, self.sandbox.workspace)

    def _stderr_tail(self) -> str:
        """`; it said: …` with the end of the server's stderr, or nothing."""
        said = self._stderr.text()
        return f"; it said: {said}" if said else ""


class _Tail(asyncio.Protocol):
    """Reads a server's stderr from a pipe as it comes, keeping only its last STDERR_TAIL bytes: a server that
    writes without end costs neither memory nor disk."""

    def __init__(self) -> None:
        self.kept = b""

    def data_received(self, data: bytes) -> None:
        self.kept = (self.kept + data)[-STDERR_TAIL:]

    def text(self) -> str:
        return self.kept.decode("utf-8", errors="replace").strip()

    @contextlib.asynccontextmanager
    async def pipe(self) -> AsyncIterator[TextIO]:
        """A pipe's writing end for the server's stderr, read into this tail while the block runs."""
        self.kept = b""
        reading, writing = os.pipe()
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(lambda: self, os.fdopen(reading, "rb", 0))
        errlog = os.fdopen(writing, "w")
        try:
            yield errlog
        finally:
            errlog.close()
            await asyncio.sleep(0.05)  # what a server said just before it died is still in the pipe
            transport.close()


@contextlib.asynccontextmanager
async def _http_transport(name: str, table: McpServer, env: Mapping[str, str]) -> AsyncIterator[Any]:
    """streamable HTTP to `table.url`, with the bearer token its variable holds (read from the runner's
    environment: the commands' has the credentials removed)."""
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    headers: dict[str, str] = {}
    if table.bearer_token_env_var is not None:
        token = os.environ.get(table.bearer_token_env_var)
        if not token:
            raise McpServerError(f"MCP server `{name}`: bearer_token_env_var {table.bearer_token_env_var} is not "
                                 "set", f"export {table.bearer_token_env_var}=… before the run")
        headers["Authorization"] = f"Bearer {token}"
    async with create_mcp_http_client(headers=headers) as http:
        yield streamable_http_client(table.url or "", http_client=http)


async def _list_tools(client: Client) -> list[Tool]:
    """Every tool the server lists, page after page."""
    tools: list[Tool] = []
    cursor: str | None = None
    for _ in range(MAX_TOOL_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            return tools
    raise McpServerError(f"it listed more than {MAX_TOOL_PAGES} pages of tools", "fix the server")


def _describe(error: BaseException) -> str:
    """An exception in a few words, through the groups anyio wraps errors in."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    if isinstance(error, McpServerError):
        return error.message
    return str(error) or type(error).__name__
