"""What observing the verification surface costs at baseline: the checks under strace versus without it.

Extracts the vendored more-itertools 10.5.0 sdist (817 unittest tests) into a temporary git repository
and runs its suite in the sandbox, alternately plain (run_confined) and traced (Tracer.run), then reads
the traces into a Surface. Prints the median wall time of each, the ratio and the parse time; asserts
nothing about timing (the target is traced / plain <= 1.2).

    .venv/bin/python bench/tracer.py [--rounds 5] [--runner unittest|pytest]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from goalkeeper.sandbox.bwrap import run_confined
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.spec.contract import Check, Contract
from goalkeeper.verify.observed import observed_surface
from goalkeeper.verify.pins import pin_verification_surface
from goalkeeper.verify.trace import Tracer, tracer_problem

SDIST = Path(__file__).resolve().parent.parent / "tests" / "data" / "more-itertools-10.5.0.tar.gz"
COMMANDS = {"unittest": f"{sys.executable} -m unittest -q",
            "pytest": f"{sys.executable} -m pytest -q -p no:cacheprovider tests"}


def repository(parent: Path) -> Path:
    """The sdist as a git repository with one commit."""
    with tarfile.open(SDIST) as archive:
        archive.extractall(parent, filter="data")
    repo = parent / "more-itertools-10.5.0"
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=b", "-c", "user.email=b@b.invalid", "commit",
                                                 "-q", "-m", "sdist"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


async def plain(policy: SandboxPolicy, command: str, repo: Path) -> float:
    started = time.perf_counter()
    result = await run_confined(policy, command, repo, 600)
    assert result.exit_code == 0, result.output[-2000:]
    return time.perf_counter() - started


async def traced(policy: SandboxPolicy, command: str, repo: Path, contract: Contract) -> tuple[float, float, int]:
    """(run seconds, seconds to read the trace into a Surface, paths on the surface)."""
    tracer = Tracer()
    try:
        started = time.perf_counter()
        result = await tracer.run(policy, command, repo, 600)
        ran = time.perf_counter() - started
        assert result.exit_code == 0, result.output[-2000:]
        started = time.perf_counter()
        accesses, _ = tracer.accesses()
        surface = observed_surface(accesses, repo, pin_verification_surface(repo, contract))
        return ran, time.perf_counter() - started, len(surface.paths)
    finally:
        tracer.close()


async def main(rounds: int, runner: str) -> None:
    with tempfile.TemporaryDirectory(prefix="gk-bench-tracer-") as folder:
        repo = repository(Path(folder))
        policy = SandboxPolicy("workspace-write", repo.resolve())
        problem = tracer_problem(policy)
        if problem is not None:
            sys.exit(f"cannot trace here: {problem}")
        command = COMMANDS[runner]
        contract = Contract.model_validate({"outcome": "bench", "checks": [Check(name="tests", run=command)]})
        await plain(policy, command, repo)  # warm the page cache and the bytecode
        untraced, with_trace, parse, paths = [], [], [], 0
        for _ in range(rounds):  # alternate, so drift on a shared machine hits both alike
            untraced.append(await plain(policy, command, repo))
            ran, read, paths = await traced(policy, command, repo, contract)
            with_trace.append(ran)
            parse.append(read)
        base, cost = statistics.median(untraced), statistics.median(with_trace)
        print(f"more-itertools 10.5.0 ({runner}), {rounds} rounds, sandbox workspace-write")
        print(f"plain    median {base:6.2f} s  (min {min(untraced):.2f})")
        print(f"traced   median {cost:6.2f} s  (min {min(with_trace):.2f})")
        print(f"ratio    {cost / base:.2f}x of the medians, {min(with_trace) / min(untraced):.2f}x of the minima "
              "(target <= 1.2)")
        print(f"reading the trace into a Surface: median {statistics.median(parse) * 1000:.0f} ms; "
              f"{paths} paths on the surface")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runner", choices=sorted(COMMANDS), default="unittest")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.runner))
