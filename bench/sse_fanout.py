"""Benchmark: the server's SSE fan-out and memory, with 200 goals in the store.

A temp store gets 200 goals, each with a baseline and 4 turns with a checkpoint and an evidence run (15 events
a goal). `gk serve`'s app runs under uvicorn in a child process. 50 SSE clients (50 browsers' worth) follow one
goal's stream; a writer in this process commits events to that goal at a steady rate and notes when each commit
returned. Each client notes when each event arrived, so commit→delivery latency is (arrival - commit return),
both on this machine's clock. The server's RSS is read from /proc at each stage.

Both fan-out designs are measured: one shared poller for every stream (the default) and one poll loop per
stream.

    .venv/bin/python bench/sse_fanout.py [--clients 50] [--goals 200] [--events 200] [--rate 20] [--poll 0.1]
        [--via append|commit]

`--rate 0 --via commit` commits as fast as the store takes them, through the runner's path: the events per
second the store sustains while the server streams to the clients.

It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.events import Event, parse_event
from goalkeeper.goals import control
from goalkeeper.spec.settings import GoalSettings
from goalkeeper.store import Store

TOKEN = "bench-token"


def stored(kind: str, payload: dict[str, Any], actor: str) -> Event:
    """An event as a stored row of that kind reads back (the bench writes payloads the way stores hold them)."""
    return parse_event(kind, actor, payload)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def seed(path: Path, goals: int, root: Path) -> str:
    """`goals` goals, each with a baseline, 4 evidence runs and 4 checkpoints; returns the first one's thread."""
    with Store(path) as store:
        first = ""
        for number in range(goals):
            workspace = root / f"ws{number}"
            workspace.mkdir()
            contract = contract_from_flags(f"Goal {number}: make the tests pass and keep p95 under 120 ms",
                                           checks=["tests=python -m pytest -q"], budget_tokens=200_000)
            goal = control.set_goal(store, workspace, contract, GoalSettings())
            first = first or goal.thread_id
            evidence = [{"name": "tests", "kind": "check", "command": "python -m pytest -q", "exit_code": 1,
                         "duration_s": 1.5, "output_tail": "F" * 400, "passed": False}]
            events = [stored("baseline", {"evidence": evidence, "keep_green_active": [], "keep_green_dropped": [],
                                            "tree_hash": "0" * 40}, "harness")]
            for turn in range(1, 5):
                events += [stored("turn_started", {"turn": turn, "kind": "continuation"}, "harness"),
                           stored("checkpoint", {"turn": turn, "kind": "continuation",
                                                   "note": {"done": f"step {turn}", "remaining": "more"},
                                                   "files_touched": ["app.py"], "commands": ["pytest"],
                                                   "tokens": 5000, "tree_hash": "1" * 40}, "harness"),
                           stored("evidence", {"trigger": "completion", "turn": turn, "evidence": evidence,
                                                 "surface": None, "tree_hash": "1" * 40}, "harness")]
            store.commit(goal.goal_id, events)
    return first


def serve(store_path: str, port_file: str, poll_s: float, fanout: str) -> None:
    """The child process: the app on a free loopback port (written to `port_file`) until killed."""
    import uvicorn

    from goalkeeper.server import create_app

    app = create_app(Path(store_path), token=TOKEN, poll_s=poll_s, fanout=fanout)  # type: ignore[arg-type]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    Path(port_file).write_text(str(sock.getsockname()[1]))
    uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on")).run(sockets=[sock])


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds `pid` has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of `pid` in MB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def follow(client: httpx.AsyncClient, url: str, expected: int, arrivals: dict[int, float],
                 connected: asyncio.Event, counter: list[int], clients: int) -> None:
    """One SSE client: note the arrival time of every event until `expected` have come."""
    async with client.stream("GET", url, headers=AUTH) as response:
        counter[0] += 1
        if counter[0] == clients:
            connected.set()
        seen = 0
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                arrivals[int(line[4:])] = time.time()
                seen += 1
                if seen == expected:
                    return


def write(store_path: Path, thread_id: str, goal_id: str, count: int, rate: float, commits: dict[int, float],
          via: str) -> None:
    """Commit `count` events to the goal, one a commit, at `rate` per second (0: as fast as the store takes them)
    through `via` (append_events, or commit: the runner's path); note when each commit returned."""
    with Store(store_path) as store:
        for number in range(count):
            started = time.monotonic()
            payload = {"role": "user", "kind": "continuation", "content": f"{number} " + "x" * 200}
            event = stored("message", payload, "harness")
            if via == "commit":
                _, [record] = store.commit(goal_id, [event])
            else:
                [record] = store.append_events(thread_id, [event], goal_id=goal_id)
            commits[record.seq] = time.time()
            if rate > 0:
                time.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))]


async def measure(base: str, store_path: Path, thread_id: str, goal_id: str, args: argparse.Namespace,
                  pid: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"rss_idle": rss_mb(pid)[0]}
    limits = httpx.Limits(max_connections=args.clients + 10)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            listed = (await client.get("/threads", headers=AUTH)).json()
            timings.append(time.perf_counter() - started)
        figures["threads_listed"] = len(listed)
        figures["list_ms"] = statistics.median(timings) * 1000
        figures["rss_after_list"] = rss_mb(pid)[0]
        with Store(store_path) as store:
            after = store.last_seq(thread_id)
        url = f"/threads/{thread_id}/events/stream?after={after}"
        arrivals = [dict[int, float]() for _ in range(args.clients)]
        connected, counter = asyncio.Event(), [0]
        readers = [asyncio.create_task(follow(client, url, args.events, arrivals[n], connected, counter,
                                              args.clients)) for n in range(args.clients)]
        await asyncio.wait_for(connected.wait(), 60)
        await asyncio.sleep(0.5)
        figures["rss_connected"] = rss_mb(pid)[0]
        commits: dict[int, float] = {}
        cpu_before = cpu_s(pid)
        writer = threading.Thread(target=write, args=(store_path, thread_id, goal_id, args.events, args.rate, commits,
                                                      args.via))
        writing = time.monotonic()
        writer.start()
        await asyncio.wait_for(asyncio.gather(*readers), 120)
        writer.join()
        figures["stream_s"] = time.monotonic() - writing
        figures["commits_per_s"] = len(commits) / (max(commits.values()) - min(commits.values()) or 1e-9)
        figures["server_cpu_s"] = cpu_s(pid) - cpu_before
        figures["rss_after_stream"], figures["rss_peak"] = rss_mb(pid)
    latencies = [(arrived[seq] - commits[seq]) * 1000 for arrived in arrivals for seq in commits if seq in arrived]
    figures["delivered"] = sum(len(a) for a in arrivals)
    figures["expected"] = args.clients * args.events
    figures["in_order"] = all(list(a) == sorted(a) for a in arrivals)
    figures["p50"], figures["p95"] = percentile(latencies, 0.50), percentile(latencies, 0.95)
    figures["max"] = max(latencies)
    return figures


def run_mode(fanout: str, store_path: Path, thread_id: str, goal_id: str, args: argparse.Namespace,
             work: Path) -> dict[str, Any]:
    port_file = work / f"port-{fanout}"
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(store_path), str(port_file), str(args.poll),
                              fanout])
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or child.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.1)
        base = f"http://127.0.0.1:{port_file.read_text()}"
        while True:
            try:
                httpx.get(f"{base}/threads/none", headers=AUTH, timeout=5)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        return asyncio.run(measure(base, store_path, thread_id, goal_id, args, child.pid))
    finally:
        child.terminate()
        child.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--goals", type=int, default=200)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0,
                        help="events committed per second (0: as fast as the store takes them)")
    parser.add_argument("--via", choices=["append", "commit"], default="append",
                        help="the writer's path: append_events, or Store.commit as the runner writes")
    parser.add_argument("--poll", type=float, default=0.1, help="the server's store poll interval, seconds")
    parser.add_argument("--modes", default="shared,per_connection")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        store_path = work / "state.db"
        started = time.perf_counter()
        thread_id = seed(store_path, args.goals, work)
        with Store(store_path) as store:
            goal = store.get_goal(thread_id)
            assert goal is not None
            total = sum(len(store.events(t.thread_id)) for t in store.list_threads())
        print(f"seeded {args.goals} goals, {total} events in {time.perf_counter() - started:.1f}s; "
              f"{args.clients} clients, {args.events} events at {args.rate:g}/s, poll {args.poll:g}s; "
              f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        results = {mode: run_mode(mode, store_path, thread_id, goal.goal_id, args, work)
                   for mode in args.modes.split(",")}
    print(json.dumps(results, indent=1))
    print("\n| figure | " + " | ".join(results) + " |\n|---|" + "---|" * len(results))
    rows = [("delivered / expected", lambda r: f"{r['delivered']} / {r['expected']}"),
            ("every stream in seq order", lambda r: "yes" if r["in_order"] else "NO"),
            ("commit→delivery p50", lambda r: f"{r['p50']:.0f} ms"),
            ("commit→delivery p95", lambda r: f"{r['p95']:.0f} ms"),
            ("commit→delivery max", lambda r: f"{r['max']:.0f} ms"),
            ("events committed per second while streaming", lambda r: f"{r['commits_per_s']:.0f}"),
            ("all delivered to every client after", lambda r: f"{r['stream_s']:.1f} s"),
            ("server CPU while the events streamed", lambda r: f"{r['server_cpu_s']:.1f} s"),
            (f"GET /threads ({args.goals} goals), median of 5", lambda r: f"{r['list_ms']:.0f} ms"),
            ("server RSS: idle", lambda r: f"{r['rss_idle']:.1f} MB"),
            ("server RSS: after GET /threads", lambda r: f"{r['rss_after_list']:.1f} MB"),
            (f"server RSS: {args.clients} streams open", lambda r: f"{r['rss_connected']:.1f} MB"),
            ("server RSS: after the events, peak", lambda r: f"{r['rss_after_stream']:.1f} MB, {r['rss_peak']:.1f} MB")]
    for label, cell in rows:
        print(f"| {label} | " + " | ".join(cell(r) for r in results.values()) + " |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(*sys.argv[2:4], float(sys.argv[4]), sys.argv[5])
    else:
        main()
