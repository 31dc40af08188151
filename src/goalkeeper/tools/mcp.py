"""MCP servers' tools in a goal: each server's tools join the registry as `NAME__tool`.

`start_servers` starts the enabled `[mcp_servers]` of config.toml (tools/mcp_session.py), lists their tools,
keeps those `enabled_tools` and `disabled_tools` allow, and makes one `McpTool` of each: a name in the
providers' charset, the server's JSON schema passed through, a description capped. The list is sorted, so
the tool definitions sent to the model are the same on every turn and every resume (the prompt cache holds).

A call's arguments go to the server as the model sent them (the server validates them against its own
schema); a server's error, a crash or a timeout is a tool error the model reads, never an exception. The
registry judges each call by the tool's name (sandbox/rules.py `decide_tool`) before it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from goalkeeper.config.schema import McpServer
from goalkeeper.models.base import ToolSpec
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.tools.base import Document, Tool, ToolContext, ToolResult
from goalkeeper.tools.mcp_session import McpCallError, McpConnection
from goalkeeper.tools.replies import text_result

if TYPE_CHECKING:
    from mcp_types import CallToolResult
    from mcp_types import Tool as ListedTool

SEPARATOR = "__"
"""Between the server's NAME and its tool's name: `fs__read_file`."""
MAX_NAME = 64
"""The longest tool name every provider takes (OpenAI's limit; Anthropic's is larger)."""
MAX_DESCRIPTION = 1_024
"""Chars of a server's tool description sent to the model: a server cannot fill the prompt."""


class McpTool(Tool[Document]):
    """One tool of an MCP server, under its namespaced name."""

    name = "mcp"
    description = "A tool of an MCP server (each instance has its own spec)."
    Args = Document

    def __init__(self, connection: McpConnection, remote: str, spec: ToolSpec) -> None:
        self.connection, self.remote, self.spec = connection, remote, spec

    async def run(self, args: Document, context: ToolContext) -> ToolResult:
        """Send the call to the server; its answer, or why none came, is the result."""
        try:
            answer = await self.connection.call(self.remote, args.fields())
        except McpCallError as error:
            return ToolResult(str(error), ok=False, facts={"mcp_server": self.connection.name, "answered": False})
        facts: dict[str, Any] = {"mcp_server": self.connection.name, "answered": True, "is_error": answer.is_error}
        return text_result(answer_text(answer), context, ok=not answer.is_error, facts=facts)


@dataclass
class McpServers:
    """The MCP servers one run started, and their tools."""

    connections: list[McpConnection] = field(default_factory=list)
    tools: list[McpTool] = field(default_factory=list)

    async def aclose(self) -> None:
        """Stop every server (each in its own process group, killed if it lingers)."""
        await asyncio.gather(*(connection.aclose() for connection in self.connections))


async def start_servers(tables: Mapping[str, McpServer], sandbox: SandboxPolicy,
                        env: Mapping[str, str]) -> McpServers:
    """Start the enabled servers side by side and collect their tools, sorted by name. A server that cannot
    start stops them all and raises McpServerError: a goal never runs with fewer tools than configured."""
    servers = McpServers([McpConnection(name, table, sandbox, env)
                          for name, table in sorted(tables.items()) if table.enabled])
    started = await asyncio.gather(*(connection.start() for connection in servers.connections),
                                   return_exceptions=True)
    failed = next((outcome for outcome in started if isinstance(outcome, BaseException)), None)
    if failed is not None:
        await servers.aclose()
        raise failed
    taken: set[str] = set()
    for connection, listed in zip(servers.connections, started, strict=True):
        assert not isinstance(listed, BaseException)
        for tool in sorted(listed, key=lambda tool: tool.name):
            if _kept(tool.name, connection.table):
                servers.tools.append(McpTool(connection, tool.name, _spec(connection.name, tool, taken)))
    servers.tools.sort(key=lambda tool: tool.spec.name)
    return servers


def _kept(name: str, table: McpServer) -> bool:
    """Whether `enabled_tools` (when given) and `disabled_tools` let the tool `name` in."""
    return (table.enabled_tools is None or name in table.enabled_tools) and name not in table.disabled_tools


def _spec(server: str, tool: ListedTool, taken: set[str]) -> ToolSpec:
    """The tool as the model sees it: a unique namespaced name, its description capped, its schema as sent."""
    name = tool_name(server, tool.name, taken)
    taken.add(name)
    described = tool.description or tool.title or f"`{tool.name}` of the MCP server `{server}`"
    if len(described) > MAX_DESCRIPTION:
        described = described[:MAX_DESCRIPTION - 1] + "…"
    schema = dict(tool.input_schema)
    schema["type"] = "object"  # the providers take an object schema only; MCP says a tool's input is one
    schema.setdefault("properties", {})
    return ToolSpec(name, described, schema)


def tool_name(server: str, tool: str, taken: Set[str] = frozenset()) -> str:
    """`server__tool` in the providers' charset (`[A-Za-z0-9_-]`, at most MAX_NAME chars), made unique
    against `taken` with a numbered suffix."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", f"{server}{SEPARATOR}{tool}")[:MAX_NAME]
    name, number = base, 1
    while name in taken:
        number += 1
        suffix = f"_{number}"
        name = base[:MAX_NAME - len(suffix)] + suffix
    return name


def answer_text(answer: CallToolResult) -> str:
    """The server's answer as text for the model: its text blocks, a note for what text cannot carry, and the
    structured result when there is no text."""
    parts: list[str] = []
    for block in answer.content:
        kind = block.type
        if kind == "text":
            parts.append(str(getattr(block, "text", "")))
        elif kind == "resource":
            resource = getattr(block, "resource", None)
            parts.append(str(getattr(resource, "text", None) or f"[resource {getattr(resource, 'uri', '')}]"))
        elif kind == "resource_link":
            parts.append(f"[resource link {getattr(block, 'uri', '')}]")
        else:
            parts.append(f"[{kind} content ({getattr(block, 'mime_type', 'unknown type')}) not shown]")
    if not parts and answer.structured_content is not None:
        with contextlib.suppress(TypeError, ValueError):
            parts.append(json.dumps(answer.structured_content, indent=1))
    text = "\n".join(parts)
    return text if text.strip() else "(the tool returned nothing)"
