"""`gk batch` against a slow model: wall time, memory per running goal, and the overhead per turn.

    .venv/bin/python bench/batch.py [--goals 100] [--parallel 10 50] [--delay 1.0] [--requests 4] [--tty]

A tiny git repository, goals whose one check is `test -f done.txt`, and the Chat Completions server of
tests/chat_server.py answering every request after `--delay` seconds. Each goal makes `--requests` requests
(a few tool calls, then `update_goal complete`), each its own turn boundary or tool step, then its checks
pass. The script runs, in one session:

1. two single goals one after the other (`gk exec --file`, each in a repository of its own), the reference;
2. `gk batch DIR --parallel N` over `--goals` goals, for each N; with `--tty`, once more at the highest N with
   its output on a pseudo-terminal, where it draws its live table.

For each run it prints the wall time, the peak RSS of the `gk` process and its worker processes (sampled from
/proc every 0.2 s; a batch's goals run in one worker process a core) and,
for the batch, the RSS above the single goal's divided by the goals running at the peak; and the **harness
gap**: for each request after a goal's first, the time from the server finishing its previous answer to this
request arriving (what the harness spends between two model requests: tools, commits, checks, waiting for a
core), p50 and p95. The target is the batch at the highest --parallel within 1.3x the two singles' wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import pty
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import itertools

from chat_server import ChatServer, Completion, ToolCallReply, UsageReply

SCRIPT = re.compile(r"\[goal:([a-z0-9-]+)\]")


class SlowModel:
    """Answers every goal the same way, `delay_s` after its request: (requests - 1) tool calls, then complete;
    records when each goal's requests arrive."""

    def __init__(self, requests: int, delay_s: float) -> None:
        self.requests = requests
        self.delay_s = delay_s
        self.arrivals: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Completion:
        found = SCRIPT.search(json.dumps(body.get("messages", [])))
        name = found.group(1) if found else "?"
        with self.lock:
            self.arrivals.setdefault(name, []).append(time.monotonic())
        answered = sum(message["role"] == "assistant" for message in body.get("messages", []))
        tools = {tool["function"]["name"] for tool in body.get("tools", [])}
        if "shell" not in tools or answered >= self.requests:
            return Completion(text="Done.", delay_s=self.delay_s, usage=UsageReply(1500, 20, 1400))
        if answered == self.requests - 1:
            call = ToolCallReply("update_goal", {"status": "complete", "summary": "done.txt written"})
        elif answered == 0:
            call = ToolCallReply("write_file", {"path": "done.txt", "content": "done\n"})
        else:
            call = ToolCallReply("read_file", {"path": "README.md" if answered % 2 else "done.txt"})
        return Completion(tool_calls=(call,), delay_s=self.delay_s, usage=UsageReply(1500, 40, 1400))

    def gaps(self) -> list[float]:
        """Per request after each goal's first: arrival minus the previous answer's end."""
        return [later - (earlier + self.delay_s) for times in self.arrivals.values()
                for earlier, later in itertools.pairwise(times)]


def make_repo(root: Path, name: str = "repo") -> Path:
    repo = root / name
    repo.mkdir()
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "bench@example.com"],
                 ["config", "user.name", "Bench"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "README.md").write_text("bench\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=repo, check=True)
    return repo


def goal_files(folder: Path, count: int, prefix: str) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for number in range(count):
        path = folder / f"{prefix}{number:03d}.toml"
        path.write_text(f'outcome = "Write done.txt [goal:{prefix}{number:03d}]"\n'
                        '[[checks]]\nname = "done"\nrun = "test -f done.txt"\n')
        paths.append(path)
    return paths


def run_gk(args: list[str], env: dict[str, str], tty: bool = False) -> tuple[float, int, int, float]:
    """(wall seconds, exit code, peak RSS in bytes, CPU seconds of it and its children) of one `gk` run, RSS
    sampled every 0.2 s; with `tty`, its output goes to a pseudo-terminal of 120 x 40 (a batch draws its live
    table), read and dropped."""
    cpu_before = _children_cpu()
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as errors, _terminal() if tty else contextlib.nullcontext() as screen:
        process = subprocess.Popen([sys.executable, "-m", "goalkeeper", *args], stdout=screen or subprocess.DEVNULL,
                                   env={**env, "COLUMNS": "120", "LINES": "40"} if tty else env, stderr=errors,
                                   text=True)
        peak = 0
        while process.poll() is None:
            peak = max(peak, _rss(process.pid))
            time.sleep(0.2)
        took = time.monotonic() - started
        if process.returncode != 0:
            errors.seek(0)
            print(f"  gk {' '.join(args[:2])} exited {process.returncode}: {errors.read()[-800:]}")
    return took, process.returncode, peak, _children_cpu() - cpu_before


@contextlib.contextmanager
def _terminal() -> Iterator[int]:
    """A pseudo-terminal's writing end, its output read (and dropped) by a thread until the block ends."""
    reader, writer = pty.openpty()

    def drain() -> None:
        with contextlib.suppress(OSError):  # the writing end closed
            while os.read(reader, 1 << 16):
                pass

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        yield writer
    finally:
        os.close(writer)
        thread.join(timeout=5)
        os.close(reader)


def _children_cpu() -> float:
    """User + system seconds of the finished children of this process (and theirs, once they waited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _rss(pid: int) -> int:
    """The RSS of `gk` (`pid`) and of its worker processes (its children running the same program): a batch's
    goals run in those. Pages they share since the fork count in each, so the sum overstates a little."""
    total = _own_rss(pid)
    try:
        program = os.readlink(f"/proc/{pid}/exe")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    for child in children:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{child}/exe") == program:
                total += _own_rss(int(child))
    return total


def _own_rss(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(found.group(1)) * 1024 if found else 0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))] if ordered else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", type=int, default=100)
    parser.add_argument("--parallel", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--tty", action="store_true",
                        help="also run the batch at the highest --parallel on a terminal (its live table drawn)")
    options = parser.parse_args()
    print(f"bench/batch.py on {platform.node()} ({os.cpu_count()} cores), python {platform.python_version()}; "
          f"{options.goals} goals, {options.requests} requests each, {options.delay:g} s a request")
    with tempfile.TemporaryDirectory(prefix="gk-bench-batch-") as temp:
        root = Path(temp)
        repo = make_repo(root)
        env = {**os.environ, "GOALKEEPER_HOME": str(root / "home"), "OPENAI_API_KEY": "bench"}
        rows: list[tuple[str, float, int, float, float, str]] = []
        single_wall, single_rss, single_cpu = 0.0, 0, 0.0
        model = SlowModel(options.requests, options.delay)
        with ChatServer(reply_fn=model) as server:
            model_flags = ["--base-url", server.base_url, "--model", "bench-model"]
            flags = [*model_flags, "--cwd", str(repo)]
            for number, path in enumerate(goal_files(root / "single", 2, "single")):
                # A plain `gk exec`, each in a repository of its own (a goal's branch is checked out in its repo).
                alone = make_repo(root, f"single-repo{number}")
                took, _, peak, cpu = run_gk(["exec", "--file", str(path), *model_flags, "--cwd", str(alone)], env)
                single_wall, single_rss, single_cpu = single_wall + took, max(single_rss, peak), single_cpu + cpu
            rows.append(("2 single goals, one after the other", single_wall, single_rss, percentile(model.gaps(), 0.5),
                         percentile(model.gaps(), 0.95), f"{single_cpu / 2:.2f} CPU s/goal"))
            runs = [(parallel, False) for parallel in options.parallel]
            runs += [(max(options.parallel), True)] if options.tty else []
            for parallel, tty in runs:
                model.arrivals.clear()
                # Not "p50-…": gk lint reads "p50" in an objective as a latency goal that needs a metric.
                files = goal_files(root / f"parallel{parallel}{'-tty' if tty else ''}", options.goals,
                                   f"x{parallel}{'t' if tty else ''}-")
                took, code, peak, cpu = run_gk(["batch", str(files[0].parent), "--parallel", str(parallel), *flags],
                                               env, tty)
                per_goal = (peak - single_rss) / min(parallel, options.goals)
                rows.append((f"batch of {options.goals}, --parallel {parallel}{', on a terminal' if tty else ''}",
                             took, peak,
                             percentile(model.gaps(), 0.5), percentile(model.gaps(), 0.95),
                             f"{per_goal / 2**20:.1f} MB/goal; {cpu / options.goals:.2f} CPU s/goal; "
                             f"{took / single_wall:.2f}x the singles; exit {code}"))
    print()
    print("| run | wall | peak RSS | harness gap p50 | p95 | notes |")
    print("|---|---|---|---|---|---|")
    for name, wall, rss, p50, p95, notes in rows:
        print(f"| {name} | {wall:.1f} s | {rss / 2**20:.0f} MB | {p50 * 1000:.0f} ms | {p95 * 1000:.0f} ms | {notes} |")
    print("\nper-turn overhead of the batch over the single goal (gap p50): "
          + "; ".join(f"{row[0].partition(', ')[2]}: {(row[3] - rows[0][3]) * 1000:+.0f} ms" for row in rows[1:]))


if __name__ == "__main__":
    main()
