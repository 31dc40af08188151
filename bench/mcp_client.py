"""What an MCP server costs a goal: starting it (sandboxed and not), and one tool call through the registry
against a `shell` call in the same sandbox. Prints p50/p95; asserts nothing about timing.

    PYTHONPATH=src .venv/bin/python bench/mcp_client.py [--starts 5] [--calls 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from goalkeeper.config.schema import McpServer
from goalkeeper.models.base import ToolCall
from goalkeeper.sandbox.policy import SandboxMode, SandboxPolicy, command_environment
from goalkeeper.tools.base import ToolContext
from goalkeeper.tools.mcp import start_servers
from goalkeeper.tools.registry import default_registry

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "mcp_server_fixture.py"


def percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


def row(label: str, samples: list[float]) -> str:
    p50, p95 = percentile(samples, 0.5) * 1000, percentile(samples, 0.95) * 1000
    return f"| {label} | {len(samples)} | {p50:.1f} | {p95:.1f} |"


async def starts(workspace: Path, count: int) -> dict[SandboxMode, list[float]]:
    """Seconds from `start_servers` to the tools listed (the stop is not timed), the modes alternating."""
    table = McpServer(command=sys.executable, args=[str(FIXTURE)])
    taken: dict[SandboxMode, list[float]] = {"workspace-write": [], "danger-full-access": []}
    await (await start_servers({"warm": table}, SandboxPolicy("danger-full-access", workspace), {})).aclose()
    for _ in range(count):
        for mode, samples in taken.items():
            policy = SandboxPolicy(mode, workspace)
            began = time.perf_counter()
            servers = await start_servers({"fixture": table}, policy, command_environment(os.environ))
            samples.append(time.perf_counter() - began)
            await servers.aclose()
    return taken


async def calls(workspace: Path, count: int) -> tuple[list[float], list[float]]:
    """Seconds per `fixture__echo` call and per `shell` `echo` call, through the registry, alternating."""
    policy = SandboxPolicy("workspace-write", workspace)
    servers = await start_servers({"fixture": McpServer(command=sys.executable, args=[str(FIXTURE)])}, policy,
                                  command_environment(os.environ))
    registry = default_registry().adding(servers.tools)
    context = ToolContext(workspace, sandbox=policy)
    mcp: list[float] = []
    shell: list[float] = []
    try:
        for n in range(count):
            pairs = (("fixture__echo", {"text": "x"}, mcp), ("shell", {"command": "echo x"}, shell))
            for name, arguments, into in pairs:
                began = time.perf_counter()
                result = await registry.execute(ToolCall(f"c{n}", name, json.dumps(arguments)), context)
                into.append(time.perf_counter() - began)
                assert result.ok, result.output
    finally:
        await servers.aclose()
    return mcp, shell


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workspace = Path(folder).resolve()
        started = await starts(workspace, options.starts)
        mcp, shell = await calls(workspace, options.calls)
    print("| what | n | p50 ms | p95 ms |\n|---|---|---|---|")
    measured = [(f"server start, {mode}", samples) for mode, samples in started.items()]
    for label, samples in [*measured, ("fixture__echo call (sandboxed stdio server)", mcp), ("shell `echo x`", shell)]:
        print(row(label, samples))


if __name__ == "__main__":
    asyncio.run(main())
