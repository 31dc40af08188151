"""What the sandbox costs per command: a goalkeeper sandboxed call against bare bubblewrap with the same binds.

Prints p50/p95 per way of running, for `true` and a small pipeline; asserts nothing about timing. With
`--before SRC` (the `src` folder of another checkout) both versions run in the same run, in alternating rounds.
With `--workspaces N`, one more way: the sandboxed call in N copies of the workspace (hardlinked) in turn, as
the goals of a batch call it, each in its own worktree.

    PYTHONPATH=src .venv/bin/python bench/sandbox_cost.py [--calls 200] [--rounds 4] [--workspace PATH] \\
        [--workspaces 50] [--before /tmp/base16s/src]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

#: The commands measured: nothing at all, and a small pipeline of three processes.
COMMANDS = ("true", "ls -la | wc -l")

#: The ways of running a command, measured one call of each after another.
WAYS = ("bare bwrap, same binds", "run_sandboxed, workspace-write", "run_sandboxed, danger-full-access (cgroup only)",
        "run_command (unsandboxed)")


def percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


async def bare(argv: list[str], cwd: Path) -> int:
    """`argv` spawned and waited on, nothing else: no script file, no cgroup, no scan."""
    process = await asyncio.create_subprocess_exec(*argv, cwd=cwd, stdin=subprocess.DEVNULL,
                                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    await process.communicate()
    return process.returncode if process.returncode is not None else -1


async def measure_child(calls: int, workspace: Path, command: str, copies: list[Path]) -> dict[str, list[float]]:
    """Milliseconds per call for each way, the ways interleaved call by call, after two warm-up rounds.

    Uses only what the code before issue 16 also has, so one script measures both versions."""
    from goalkeeper.sandbox.bwrap import run_sandboxed, sandbox_argv
    from goalkeeper.sandbox.policy import SandboxPolicy
    from goalkeeper.sandbox.process import run_command

    sandboxed = SandboxPolicy(mode="workspace-write", workspace=workspace, protect=("tests/**",))
    unconfined = SandboxPolicy(mode="danger-full-access", workspace=workspace)
    argv = sandbox_argv(sandboxed, command, Path.home(), workspace)  # `bash -c command` under the same binds
    runs: dict[str, Callable[[], Awaitable[int]]] = {
        WAYS[0]: lambda: bare(argv, workspace),
        WAYS[1]: lambda: exit_code(run_sandboxed(sandboxed, command, workspace, 10)),
        WAYS[2]: lambda: exit_code(run_sandboxed(unconfined, command, workspace, 10)),
        WAYS[3]: lambda: exit_code(run_command(command, workspace, 10)),
    }
    if copies:
        each = [SandboxPolicy(mode="workspace-write", workspace=copy, protect=("tests/**",))
                for copy in (workspace, *copies)]
        turn = iter(range(10**9))

        def next_workspace() -> Awaitable[int]:
            policy = each[next(turn) % len(each)]
            return exit_code(run_sandboxed(policy, command, policy.workspace, 10))

        runs[f"run_sandboxed, workspace-write, {len(each)} workspaces in turn"] = next_workspace
        for policy in each:  # each worktree's first call, as a goal's start makes it: the steady state is measured
            await exit_code(run_sandboxed(policy, command, policy.workspace, 10))
    samples: dict[str, list[float]] = {way: [] for way in runs}
    for call in range(calls + 2):
        for way, run in runs.items():
            started = time.perf_counter()
            code = await run()
            if call >= 2:
                samples[way].append((time.perf_counter() - started) * 1000)
            assert code == 0, f"{way}: the benchmark command failed"
    return samples


async def exit_code(result: Awaitable[object]) -> int:
    return int(getattr(await result, "exit_code"))  # noqa: B009 (the CommandResult of either version)


def run_child(src: Path, calls: int, workspace: Path, command: str, copies: list[Path]) -> dict[str, list[float]]:
    """One child interpreter importing goalkeeper from `src`: its samples."""
    argv = [sys.executable, __file__, "--child", "--calls", str(calls), "--workspace", str(workspace),
            "--command", command, "--copies", os.pathsep.join(map(str, copies))]
    done = subprocess.run(argv, env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True,
                          check=True, timeout=600)
    samples: dict[str, list[float]] = json.loads(done.stdout)
    return samples


def report(versions: dict[str, Path], calls: int, rounds: int, workspace: Path, copies: list[Path]) -> None:
    """Alternate the versions round by round for each command, then print one table per command."""
    print(f"workspace: {workspace}  calls per way: {calls} in {rounds} rounds  load: {os.getloadavg()[0]:.2f}")
    for command in COMMANDS:
        merged: dict[str, dict[str, list[float]]] = {name: {} for name in versions}
        for _ in range(rounds):
            for name, src in versions.items():
                for way, samples in run_child(src, calls // rounds, workspace, command, copies).items():
                    merged[name].setdefault(way, []).extend(samples)
        print(f"\ncommand: `{command}`\n")
        print("| version | way | p50 ms | p95 ms | mean ms | p50 / bare | p95 / bare |")
        print("|---|---|---|---|---|---|---|")
        for name in versions:
            base = merged[name][WAYS[0]]
            for way in merged[name]:
                samples = merged[name][way]
                p50, p95 = percentile(samples, 0.5), percentile(samples, 0.95)
                print(f"| {name} | {way} | {p50:.1f} | {p95:.1f} | {statistics.fmean(samples):.1f} | "
                      f"{p50 / percentile(base, 0.5):.2f}× | {p95 / percentile(base, 0.95):.2f}× |")
    print(f"\nload after: {os.getloadavg()[0]:.2f}")


def small_workspace(root: Path) -> Path:
    """A few files: `tests/` protected, one `.env` masked."""
    (root / "tests").mkdir()
    (root / "tests" / "test_app.py").write_text("assert True\n")
    (root / "app.py").write_text("print('app')\n")
    (root / ".env").write_text("TOKEN=x\n")
    return root.resolve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per way, version and command")
    parser.add_argument("--rounds", type=int, default=4, help="alternations of the versions")
    parser.add_argument("--workspace", type=Path, help="run in this directory (default: a small temp one)")
    parser.add_argument("--before", type=Path, help="the src folder of the code to compare against")
    parser.add_argument("--workspaces", type=int, default=1, help="also call in N copies of the workspace in turn")
    parser.add_argument("--copies", default="", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--command", default="true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        copies = [Path(copy) for copy in options.copies.split(os.pathsep) if copy]
        print(json.dumps(asyncio.run(measure_child(options.calls, options.workspace, options.command, copies))))
        return
    here = Path(__file__).resolve().parent.parent / "src"
    versions = {"before": options.before.resolve(), "after": here} if options.before else {"this checkout": here}
    with tempfile.TemporaryDirectory() as temporary:
        workspace = options.workspace.resolve() if options.workspace else small_workspace(Path(temporary))
        copies = [Path(temporary) / f"copy-{number}" for number in range(1, options.workspaces)]
        for copy in copies:  # hardlinks: a search reads folders, and nothing here writes
            subprocess.run(["cp", "-al", str(workspace), str(copy)], check=True)
        report(versions, options.calls, options.rounds, workspace, [copy.resolve() for copy in copies])


if __name__ == "__main__":
    main()
