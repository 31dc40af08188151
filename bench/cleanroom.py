"""What the clean room costs: verification there versus one bare run of the checks, and the time to build the
verification tree of a repository with many files.

Prints figures; asserts nothing about timing.

    .venv/bin/python bench/cleanroom.py [--runs 5] [--files 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.sandbox.bwrap import run_sandboxed
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.verify.cleanroom import baseline_of, built_room, keep_baseline, run_in_room

SDIST = Path(__file__).resolve().parent.parent / "tests" / "data" / "more-itertools-10.5.0.tar.gz"
CHECK = "python -m unittest -q"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], cwd=repo, check=True,
                   capture_output=True)


def committed(repo: Path) -> Path:
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    return repo


def head(repo: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


async def suite_ratio(root: Path, runs: int) -> None:
    """Median clean-room verification (build + checks) over the median bare sandboxed run, same check."""
    with tarfile.open(SDIST) as sdist:
        sdist.extractall(root, filter="data")
    repo = committed(next(root.iterdir()))
    policy = SandboxPolicy("workspace-write", repo.resolve())
    contract = contract_from_flags("bench", checks=[f"tests={CHECK}"])
    base = baseline_of(keep_baseline(repo, "bench-suite", head(repo), None), "bench-suite")
    with (repo / "more_itertools" / "recipes.py").open("a") as source:
        source.write("\n# a change of the goal's\n")  # one change taken into the room
    bare, clean = [], []
    for _ in range(runs):
        started = time.perf_counter()
        result = await run_sandboxed(policy, CHECK, repo, 600)
        bare.append(time.perf_counter() - started)
        assert result.exit_code == 0, result.output[-2000:]
        started = time.perf_counter()
        evidence, _changes, _built = await run_in_room(repo, base, contract, [], policy, None, None)
        clean.append(time.perf_counter() - started)
        assert evidence[0].passed, evidence[0].output_tail
    tests = result.output.strip().splitlines()
    print(f"more-itertools 10.5.0, `{CHECK}` ({next((line for line in tests if line.startswith('Ran')), '')})")
    print(f"  bare sandboxed run: median {statistics.median(bare):.2f}s  (runs: {fmt(bare)})")
    print(f"  clean room:         median {statistics.median(clean):.2f}s  (runs: {fmt(clean)})")
    print(f"  ratio: {statistics.median(clean) / statistics.median(bare):.2f}x")


def big_tree(root: Path, files: int) -> Path:
    repo = root / "big"
    for index in range(files):
        folder = repo / f"d{index // 100:04d}"
        if index % 100 == 0:
            folder.mkdir(parents=True)
        (folder / f"f{index % 100:03d}.py").write_text(f"VALUE = {index}\n")
    return committed(repo)


def tree_build(root: Path, files: int, runs: int) -> None:
    """The goal-start cost, and each room's build (changes found + hardlink copy + changes written + removal)."""
    started = time.perf_counter()
    repo = big_tree(root, files)
    made = time.perf_counter() - started
    started = time.perf_counter()
    base = baseline_of(keep_baseline(repo, "bench-big", head(repo), None), "bench-big")
    mirrored = time.perf_counter() - started
    middle = files // 2
    for name in ("d0000/f000.py", f"d{middle // 100:04d}/f{middle % 100:03d}.py"):
        (repo / name).write_text("VALUE = -1\n")
    (repo / "new_module.py").write_text("NEW = 1\n")
    builds = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        with built_room(repo, base, None, "", copy_env=False) as (tree, changes):
            builds.append(time.perf_counter() - started)
            assert len(changes.taken) == 3 and (tree / "new_module.py").is_file()
    print(f"{files} files ({made:.1f}s to write and commit them)")
    print(f"  at goal start (mirror, environment snapshot, base checkout, workspace stats): {mirrored:.2f}s")
    print(f"  first room (every changed-looking file compared): {builds[0]:.2f}s")
    print(f"  each later room: median {statistics.median(builds[1:]):.2f}s  (runs: {fmt(builds[1:])})")


def fmt(samples: list[float]) -> str:
    return ", ".join(f"{sample:.2f}" for sample in samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--files", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gk-bench-") as folder:
        os.environ["GOALKEEPER_HOME"] = str(Path(folder) / "home")
        (Path(folder) / "suite").mkdir()
        asyncio.run(suite_ratio(Path(folder) / "suite", args.runs))
        tree_build(Path(folder), args.files, args.runs)


if __name__ == "__main__":
    main()
