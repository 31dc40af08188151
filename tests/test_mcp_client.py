"""MCP servers' tools in a goal (tools/mcp.py, tools/mcp_session.py): a Python server written for the tests
(mcp_server_fixture.py) over stdio inside the sandbox and over streamable HTTP, the npm filesystem server, tool
filtering, a crash in the middle of a call, a tool timeout, and the rules that judge MCP tools by name."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from goalkeeper.config.schema import McpServer
from goalkeeper.models.base import ToolCall
from goalkeeper.sandbox.policy import SandboxPolicy, command_environment
from goalkeeper.tools.base import ToolContext, ToolResult
from goalkeeper.tools.mcp import McpServers, start_servers, tool_name
from goalkeeper.tools.mcp_session import MAX_RESTARTS, McpCallError, McpConnection, McpServerError
from goalkeeper.tools.registry import ToolRegistry, default_registry
from helpers import free_port, stop_group

FIXTURE = Path(__file__).with_name("mcp_server_fixture.py")


def stdio_table(marker: str = "", **keys: object) -> McpServer:
    """The fixture server over stdio, with `marker` among its arguments so its processes can be found."""
    return McpServer.model_validate({"command": sys.executable, "args": [str(FIXTURE), "stdio", marker], **keys})


def sandbox(workspace: Path) -> SandboxPolicy:
    return SandboxPolicy("workspace-write", workspace.resolve())


def context(workspace: Path) -> ToolContext:
    return ToolContext(workspace.resolve(), sandbox=sandbox(workspace))


async def call(registry: ToolRegistry, name: str, workspace: Path, **arguments: object) -> ToolResult:
    return await registry.execute(ToolCall(f"call_{name}", name, json.dumps(arguments)), context(workspace))


def processes_with(marker: str) -> list[int]:
    """The pids whose command line holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


async def started(tables: dict[str, McpServer], workspace: Path) -> McpServers:
    return await start_servers(tables, sandbox(workspace), command_environment(os.environ))


def test_a_stdio_server_runs_in_the_sandbox_and_its_tools_join_the_registry(workspace: Path, tmp_path: Path) -> None:
    marker = f"mcp-test-{uuid.uuid4().hex}"
    escaped = FIXTURE.parent / f".{marker}"  # beside the tests: writable here, read-only in the sandbox

    async def scenario() -> None:
        servers = await started({"fixture": stdio_table(marker)}, workspace)
        try:
            registry = default_registry().adding(servers.tools)
            names = [spec.name for spec in registry.specs]
            assert names[-6:] == ["fixture__add", "fixture__crash", "fixture__echo", "fixture__nap",
                                  "fixture__touch", "fixture__where"]
            assert names[:-6] == [spec.name for spec in default_registry().specs]  # built-ins first, unchanged
            add = registry.tools["fixture__add"].spec
            assert add.parameters["properties"]["a"]["type"] == "integer" and add.parameters["required"] == ["a", "b"]
            assert (await call(registry, "fixture__add", workspace, a=2, b=3)).output == "5"
            where = await call(registry, "fixture__where", workspace)
            assert f"cwd={workspace.resolve()}" in where.output
            inside = await call(registry, "fixture__touch", workspace, path=str(workspace / "note.txt"))
            assert inside.ok and (workspace / "note.txt").exists()
            # Outside the workspace the file system is read-only, and /tmp is the sandbox's own.
            outside = await call(registry, "fixture__touch", workspace, path=str(escaped))
            assert "Read-only file system" in outside.output and not escaped.exists()
            await call(registry, "fixture__touch", workspace, path=str(tmp_path / "escaped.txt"))
            assert not (tmp_path / "escaped.txt").exists()
            assert processes_with(marker)
        finally:
            await servers.aclose()
            escaped.unlink(missing_ok=True)
        assert not processes_with(marker)  # its process group went with the goal

    asyncio.run(scenario())


@pytest.mark.slow  # three server starts and two backoffs
def test_a_crash_mid_call_and_a_timeout_are_tool_errors_and_the_server_is_restarted(workspace: Path) -> None:
    marker = f"mcp-test-{uuid.uuid4().hex}"

    async def scenario() -> None:
        servers = await started({"fixture": stdio_table(marker, tool_timeout_s=1)}, workspace)
        registry = default_registry().adding(servers.tools)
        [connection] = servers.connections
        try:
            began = time.monotonic()
            crashed = await call(registry, "fixture__crash", workspace)
            assert not crashed.ok and "stopped during this call" in crashed.output
            assert time.monotonic() - began < 5  # at once, never a hang
            assert (await call(registry, "fixture__echo", workspace, text="again")).output == "again"
            assert connection.restarts == 1
            began = time.monotonic()
            slow = await call(registry, "fixture__nap", workspace, seconds=30)
            assert not slow.ok and "did not answer within tool_timeout_s = 1s" in slow.output
            assert time.monotonic() - began < 10
            assert (await call(registry, "fixture__add", workspace, a=1, b=1)).output == "2"
        finally:
            await servers.aclose()
        assert not processes_with(marker)

    asyncio.run(scenario())


def test_a_server_that_crashes_every_time_is_given_up_after_three_restarts(workspace: Path) -> None:
    script = workspace / "dies.sh"
    script.write_text("exit 1\n")
    table = McpServer(command="bash", args=[str(script)], startup_timeout_s=5)

    async def scenario() -> None:
        with pytest.raises(McpServerError, match="MCP server `dies` failed to start"):
            await started({"dies": table}, workspace)
        connection = McpConnection("dies", table, sandbox(workspace), {})
        connection.restarts = MAX_RESTARTS
        with pytest.raises(McpCallError, match="restarted 3 times"):
            await connection.call("anything", {})

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    """The fixture server over streamable HTTP on a free port: its URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, str(FIXTURE), "http", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop_group(process)


def test_an_http_server_is_the_configured_url_and_tools_are_filtered(http_server: str, workspace: Path) -> None:
    tables = {"only": McpServer(url=http_server, enabled_tools=["echo", "add", "nosuch"]),
              "most": McpServer(url=http_server, disabled_tools=["crash", "nap", "touch"]),
              "off": McpServer(url=http_server, enabled=False)}

    async def scenario() -> None:
        servers = await started(tables, workspace)
        try:
            registry = default_registry().adding(servers.tools)
            assert [tool.spec.name for tool in servers.tools] == ["most__add", "most__echo", "most__where",
                                                                   "only__add", "only__echo"]
            assert (await call(registry, "only__echo", workspace, text="over http")).output == "over http"
            wrong = await call(registry, "most__add", workspace, a="one", b=2)
            assert not wrong.ok  # the server validates its own arguments: a tool error, the goal goes on
        finally:
            await servers.aclose()

    asyncio.run(scenario())


def test_tool_names_fit_the_providers_charset_and_stay_unique() -> None:
    assert tool_name("fs", "read.file") == "fs__read_file"
    long = tool_name("server", "x" * 100)
    assert len(long) == 64 and long.startswith("server__x")
    assert tool_name("fs", "read file", {"fs__read_file"}) == "fs__read_file_2"
