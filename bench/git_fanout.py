"""How many git processes a checkpoint and a tree hash spawn, and how long a checkpoint takes.

Every git process is counted, the ones git itself starts included (`git maintenance run --auto`): a
global config file (GIT_CONFIG_GLOBAL, which the harness's hardened git keeps) turns on git's trace2
event log, and each process writes one "start" record to it. Each turn writes three files (one new, one
changed, one deleted) and is checkpointed with `commit_turn`, as a turn's end does; the tree hash of the
turn is timed and counted apart. Prints figures; asserts nothing.

    PYTHONPATH=src .venv/bin/python bench/git_fanout.py [--turns 30] [--files 2000]

Run it with PYTHONPATH pointing at another checkout's src to measure that one (before/after).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from goalkeeper.workspace.git import start_goal
from goalkeeper.workspace.goal import commit_turn
from goalkeeper.workspace.tree import tree_hash

GOAL_ID = "goal_1a2b3c4d5e6f"


def make_repo(root: Path, files: int) -> Path:
    repo = root / "repo"
    (repo / "src").mkdir(parents=True)
    for index in range(files):
        (repo / "src" / f"m{index}.py").write_text(f"VALUE = {index}\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "base"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


class Trace:
    """The trace2 event log every git process appends to."""

    def __init__(self, root: Path) -> None:
        self.log = root / "trace2.json"
        config = root / "global.gitconfig"
        config.write_text(f"[trace2]\n\teventTarget = {self.log}\n\teventBrief = true\n")
        os.environ["GIT_CONFIG_GLOBAL"] = str(config)

    def take(self) -> list[str]:
        """The argv of every git process started since the last take."""
        if not self.log.exists():
            return []
        started = []
        for line in self.log.read_text().splitlines():
            record = json.loads(line)
            if record.get("event") == "start":
                started.append(" ".join(record["argv"][1:3]))
        self.log.unlink()
        return started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gk-fanout-") as scratch:
        root = Path(scratch)
        trace = Trace(root)
        repo = make_repo(root, args.files)
        branch = start_goal(repo, GOAL_ID, "bench", allow_dirty=False)
        time.sleep(1.5)  # files written this recently are read again (the config cache's racy window)
        trace.take()
        counts, hash_counts, times, hash_times = [], [], [], []
        kinds: Counter[str] = Counter()
        for turn in range(1, args.turns + 1):
            (repo / "src" / f"new{turn}.py").write_text("NEW = 1\n")
            (repo / "src" / f"m{turn}.py").write_text(f"VALUE = -{turn}\n")
            (repo / "src" / f"m{args.files - turn}.py").unlink()
            started = time.perf_counter()
            tree_hash(repo)
            hash_times.append(time.perf_counter() - started)
            hash_counts.append(len(trace.take()))
            started = time.perf_counter()
            done = commit_turn(repo, branch, GOAL_ID, turn, None, 1, f"turn {turn}", [], [])
            times.append(time.perf_counter() - started)
            assert done["commit"], done
            spawned = trace.take()
            counts.append(len(spawned))
            kinds.update(spawned)
        print(f"{args.turns} checkpoints, {args.files} files in the repository")
        print(f"git processes per checkpoint: median {statistics.median(counts)}, max {max(counts)}")
        print(f"git processes per tree hash: median {statistics.median(hash_counts)}, max {max(hash_counts)}")
        print(f"checkpoint time: median {statistics.median(times) * 1000:.1f} ms, "
              f"max {max(times) * 1000:.1f} ms")
        print(f"tree hash time: median {statistics.median(hash_times) * 1000:.1f} ms")
        print("per checkpoint, by command:")
        for command, count in kinds.most_common():
            print(f"  {count / args.turns:5.1f}  git {command}")


if __name__ == "__main__":
    main()
