"""What the sandbox costs per command: `true` through run_sandboxed versus plain run_command.

Prints p50/p95 per way of running; asserts nothing about timing.

    .venv/bin/python bench/sandbox_cost.py [--calls 200] [--workspace PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from goalkeeper.sandbox import limits
from goalkeeper.sandbox.bwrap import run_sandboxed, scan_layout
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.sandbox.process import run_command


def percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


async def measure(calls: int, run: Callable[[], Awaitable[int]]) -> list[float]:
    """Milliseconds per call, after two unmeasured warm-up calls."""
    for _ in range(2):
        await run()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        exit_code = await run()
        samples.append((time.perf_counter() - started) * 1000)
        assert exit_code == 0, "the benchmark command failed"
    return samples


async def main(calls: int, workspace: Path) -> None:
    sandboxed = SandboxPolicy(mode="workspace-write", workspace=workspace, protect=("tests/**",))
    unconfined = SandboxPolicy(mode="danger-full-access", workspace=workspace)

    async def plain() -> int:
        return (await run_command("true", workspace, 10)).exit_code

    async def full_access() -> int:
        return (await run_sandboxed(unconfined, "true", workspace, 10)).exit_code

    async def workspace_write() -> int:
        return (await run_sandboxed(sandboxed, "true", workspace, 10)).exit_code

    started = time.perf_counter()
    scan_layout(sandboxed, Path.home())
    scan_ms = (time.perf_counter() - started) * 1000
    print(f"workspace: {workspace}  calls: {calls}  {limits.describe()}")
    print(f"one scan of the workspace and $HOME for protected/secret paths: {scan_ms:.1f} ms")
    print("| way | p50 ms | p95 ms | mean ms |")
    print("|---|---|---|---|")
    for name, run in (("run_command (unsandboxed)", plain), ("run_sandboxed, danger-full-access", full_access),
                      ("run_sandboxed, workspace-write", workspace_write)):
        samples = await measure(calls, run)
        print(f"| {name} | {percentile(samples, 0.5):.1f} | {percentile(samples, 0.95):.1f} | "
              f"{statistics.fmean(samples):.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--workspace", type=Path, help="run in this directory (default: a small temp one)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        workspace = options.workspace or Path(temporary)
        if options.workspace is None:
            (workspace / "tests").mkdir()
            (workspace / "tests" / "test_app.py").write_text("assert True\n")
            (workspace / ".env").write_text("TOKEN=x\n")
        asyncio.run(main(options.calls, workspace.resolve()))
