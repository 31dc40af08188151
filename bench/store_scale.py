"""Benchmark: read commands and the server's thread list on a big store (1,000 goals, 1 M events).

The store is built through the store API (Store.put_goal and batched Store.commit), in a temp folder or at
--store: one goal has --big events (a long goal: 100 K by default), the others share the rest, each a baseline
and turns of a model response, tool calls and results, a checkpoint and a check run with a metric. Then it
times, against `python -c pass` in the same run:
- opening the store (in this process; the first open after building, then warm opens);
- `gk status`, `gk goal`, `gk threads`, `gk report` and `gk log` (each a fresh process, median of --repeat),
  on the long goal and on a typical one: total time and peak RSS, and for `gk log` the time to its first line;
  then the same command in a process that has imported the CLI already (its own time, without start-up);
- `GET /threads` through FastAPI's TestClient in this process (the app `gk serve` runs, without uvicorn).

    PYTHONPATH=src .venv/bin/python bench/store_scale.py [--goals 1000] [--events 1000000] [--big 100000]
        [--repeat 3] [--store PATH]

A --store that exists is not rebuilt: point a newer goalkeeper at a store an older one built to time its
migration (the first open). It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from goalkeeper.events import (
    BaselineEvent,
    CallMade,
    CheckpointEvent,
    Event,
    Evidence,
    EvidenceEvent,
    GoalSetEvent,
    MessageEvent,
    ModelResponseEvent,
    ToolIntentEvent,
    ToolResultEvent,
    TurnEndedEvent,
    TurnStartedEvent,
    Usage,
)
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import GoalSettings
from goalkeeper.store import Store, start_state

TOKEN = "bench-token"
BATCH = 500
"""Events per commit while building."""


def evidence(turn: int) -> list[Evidence]:
    return [Evidence(name="tests", kind="check", command="python -m pytest -q", exit_code=turn % 2,
                     duration_s=1.5, output_tail="." * 300, passed=turn % 2 == 0),
            Evidence(name="p95", kind="check", command="python bench.py", exit_code=0, duration_s=0.5,
                     output_tail="p95_ms=120", passed=True, metric=200.0 - turn % 100, target="< 120")]


def turn_events(turn: int) -> list[Event]:
    """One turn: 12 events, about what a turn with two tool calls writes."""
    usage = Usage(input_tokens=4000, cached_input_tokens=3000, output_tokens=200, charged_tokens=4200)
    events: list[Event] = [TurnStartedEvent(turn_kind="continuation", turn=turn),
                           MessageEvent(turn_kind="continuation", content=f"Turn {turn}: continue. " + "c" * 200)]
    for call in range(2):
        call_id = f"call_{turn}_{call}"
        events += [ModelResponseEvent(content="Reading the file.", tool_calls=[
                       CallMade(id=call_id, name="read_file", arguments='{"path": "app.py"}')],
                       usage=usage, usd=0.001, model="bench", finish_reason="tool_calls"),
                   ToolIntentEvent(call_id=call_id, name="read_file", arguments='{"path": "app.py"}'),
                   ToolResultEvent(call_id=call_id, name="read_file", output="x = 1\n" * 60, ok=True, signal=None,
                                   data={}, files_touched=[], full_output_chars=None)]
    events += [CheckpointEvent(turn=turn, turn_kind="continuation", note={"done": f"step {turn}"},
                               files_touched=["app.py"], commands=["pytest"], tokens=4200, tree_hash="1" * 40),
               EvidenceEvent(trigger="completion", turn=turn, evidence=evidence(turn), tree_hash="1" * 40),
               TurnEndedEvent(turn=turn, turn_kind="continuation", tool_calls=2, signal=None)]
    return events


def goal_events(count: int) -> list[Event]:
    """About `count` events: a baseline and whole turns."""
    events: list[Event] = [BaselineEvent(evidence=evidence(0), keep_green_active=[], keep_green_dropped=[],
                                         tree_hash="0" * 40)]
    turn = 0
    while len(events) < count:
        turn += 1
        events += turn_events(turn)
    return events


def build(path: Path, root: Path, goals: int, total: int, big: int) -> None:
    """The store: the first goal is the long one."""
    each = max(1, (total - big) // max(1, goals - 1))
    started = time.monotonic()
    with Store(path) as store:
        for number in range(goals):
            workspace = root / f"ws{number}"
            workspace.mkdir()
            contract = Contract.model_validate({"outcome": f"Goal {number}: make the tests pass",
                                                "checks": [{"name": "tests", "run": "python -m pytest -q"}]})
            settings = GoalSettings()
            thread = store.create_thread(workspace)
            goal, _ = store.put_goal(thread.thread_id, contract, start_state("g", contract, settings), settings,
                                     [GoalSetEvent(outcome=contract.outcome, verified=True, contract={})])
            events = goal_events(big if number == 0 else each)
            for at in range(0, len(events), BATCH):
                store.commit(goal.goal_id, events[at:at + BATCH])
            if number % 100 == 99:
                print(f"  built {number + 1} goals in {time.monotonic() - started:.0f}s", flush=True)


LAUNCH = """
import json, os, subprocess, sys, time
started = time.monotonic()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
first = 0.0
while child.stdout.read1(65536):
    first = first or time.monotonic() - started
_, status, usage = os.wait4(child.pid, 0)
total = time.monotonic() - started
print(json.dumps([os.waitstatus_to_exitcode(status), first or total, total, usage.ru_maxrss / 1024]))
"""
"""Runs one command and reports its figures. A child's peak RSS counts the memory of the process it was forked
from, so commands are started from this small launcher, never from the bench process that built the store."""


IN_PROCESS = """
import contextlib, io, json, sys, time
from goalkeeper.cli.glance import answer
from goalkeeper.cli.group import app
started = time.monotonic()
with contextlib.redirect_stdout(io.StringIO()):
    code = answer(sys.argv[1:])
    if code is None:
        code = app(sys.argv[1:], standalone_mode=False)
print(json.dumps([code, time.monotonic() - started]))
"""
"""Runs one command after its imports, as `gk` does (at a glance when it can, cli/glance.py): the command's own
time, whatever the start-up costs."""


def command_time(args: list[str], env: dict[str, str]) -> float:
    done = subprocess.run([sys.executable, "-c", IN_PROCESS, *args], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"gk {args} failed: {done.stderr[-2000:]}")
    code, seconds = json.loads(done.stdout.splitlines()[-1])
    if code not in (0, None):
        raise SystemExit(f"gk {args} returned {code}")
    return float(seconds)


def child_run(argv: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(seconds to the first line of output, total seconds, peak RSS in MiB) of one command."""
    done = subprocess.run([sys.executable, "-c", LAUNCH, *argv], env=env, capture_output=True, text=True,
                          check=True)
    code, first, total, rss = json.loads(done.stdout)
    if code != 0:
        raise SystemExit(f"{argv} exited {code}")
    return first, total, rss


def median_run(argv: list[str], env: dict[str, str], repeat: int) -> tuple[float, float, float]:
    runs = [child_run(argv, env) for _ in range(repeat)]
    return tuple(statistics.median(run[i] for run in runs) for i in range(3))  # type: ignore[return-value]


def time_open(path: Path, repeat: int) -> tuple[float, float]:
    """(first open, median warm open) in seconds."""
    times = []
    for _ in range(repeat + 1):
        started = time.monotonic()
        Store(path).close()
        times.append(time.monotonic() - started)
    return times[0], statistics.median(times[1:])


def time_threads_endpoint(path: Path, repeat: int) -> tuple[float, int]:
    """(median seconds, threads listed) of GET /threads through TestClient."""
    from fastapi.testclient import TestClient

    from goalkeeper.server import create_app

    times, count = [], 0
    with TestClient(create_app(path, token=TOKEN)) as client:
        for _ in range(repeat):
            started = time.monotonic()
            response = client.get("/threads", headers={"Authorization": f"Bearer {TOKEN}"})
            times.append(time.monotonic() - started)
            response.raise_for_status()
            count = len(response.json())
    return statistics.median(times), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--goals", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=100_000, help="events of the long goal")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store", type=Path, help="use (or build and keep) the store in this folder")
    args = parser.parse_args()
    folder = args.store or Path(tempfile.mkdtemp(prefix="gk-scale-"))
    path, root = folder / "state.db", folder / "workspaces"
    if path.exists():
        print(f"store {path} exists: not rebuilt")
    else:
        root.mkdir(parents=True)
        started = time.monotonic()
        build(path, root, args.goals, args.events, min(args.big, args.events))
        print(f"built {args.goals} goals in {time.monotonic() - started:.0f}s")
    first, warm = time_open(path, args.repeat)
    with Store(path) as store:  # as the store has them (a copied store keeps its old paths)
        threads = store.list_threads()
        workspace, typical = Path(threads[-1].workspace), Path(threads[-2].workspace)
    print(f"store: {path.stat().st_size / 2**20:.0f} MiB")
    print(f"store open: first {first * 1000:.0f} ms (a migration, if any, included), warm {warm * 1000:.1f} ms")
    env = {**os.environ, "GOALKEEPER_HOME": str(folder)}
    base = median_run([sys.executable, "-c", "pass"], env, args.repeat)
    print(f"python -c pass: {base[1] * 1000:.0f} ms, {base[2]:.0f} MiB")
    gk = [sys.executable, "-m", "goalkeeper"]
    for name, argv in [("status", ["status"]), ("goal", ["goal"]), ("threads", ["threads"]),
                       ("report", ["report"]), ("log", ["log"])]:
        for goal, place in [("the long goal", workspace), ("a typical goal", typical)]:
            if name == "threads" and goal != "the long goal":
                continue
            where = [] if name == "threads" else ["--cwd", str(place)]
            first_line, total, rss = median_run(gk + argv + where, env, args.repeat)
            own = statistics.median(command_time(argv + where, env) for _ in range(args.repeat))
            shown = f", first line {first_line * 1000:.0f} ms" if name == "log" else ""
            print(f"gk {name}{'' if name == 'threads' else ' (' + goal + ')'}: {total * 1000:.0f} ms{shown}, "
                  f"peak RSS {rss:.0f} MiB; after its imports {own * 1000:.0f} ms")
    seconds, count = time_threads_endpoint(path, args.repeat)
    print(f"GET /threads (TestClient, {count} threads): {seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()
