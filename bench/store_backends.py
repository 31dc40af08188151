"""Benchmark: what the store's hot calls cost on each backend, the SQLite file and a PostgreSQL database.

On one goal, through the Store API, best of --rounds rounds of --calls calls each:
- commit: `Store.commit` of a step's three events (a model's, so not fsynced on SQLite);
- poll: the inbox's read, `Store.events(thread, goal, kinds=[control kinds])` finding nothing new;
- last_seq: `Store.last_seq(thread)`;
then two writer processes committing --writers-events single events each at once: their wall time; and on
PostgreSQL, `reopen`: the server drops the store's connection (`pg_terminate_backend`), then the next
`last_seq` (which finds it dropped, reconnects and reads again) is timed, the median of --drops drops.

PostgreSQL is a server started as the tests start it (tests/pg.py: local TCP, fsync off), or --url. Over a
network every call adds its round trips (about 4 per write: BEGIN, the lock, the statements, COMMIT).

    PYTHONPATH=src:tests .venv/bin/python bench/store_backends.py [--calls 500] [--rounds 5] [--drops 10] [--url URL]

It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from goalkeeper.events import ChatMessageEvent, ControlAppliedEvent, ControlRequestEvent
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import GoalSettings
from goalkeeper.store import Store, new_id, start_state

WRITER = """
import sys
from goalkeeper.events import ChatMessageEvent
from goalkeeper.store import Store
store = Store(sys.argv[1])
sys.stdin.readline()
for i in range(int(sys.argv[3])):
    store.append_events(sys.argv[2], [ChatMessageEvent(actor="model", content=str(i))])
"""


def best_us(call: Callable[[], object], calls: int, rounds: int) -> float:
    """The best round's mean time per call, in microseconds."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - started) / calls)
    return best * 1e6


def reopen_ms(store: Store, url: str, drops: int) -> str:
    """The median time of the first call after the server dropped the store's connection, in ms."""
    import psycopg

    times = []
    for _ in range(drops):
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                          "WHERE application_name LIKE %s", (f"goalkeeper % pid {os.getpid()}",))
        started = time.perf_counter()
        try:
            store.last_seq()
        except Exception as error:  # the store before reconnecting existed: every later call fails
            return f"fails ({type(error).__name__})"
        times.append(time.perf_counter() - started)
    return f"{statistics.median(times) * 1000:.1f} ms"


def measure(location: Path | str, calls: int, rounds: int, writer_events: int, drops: int = 0) -> str:
    root = Path(tempfile.mkdtemp(prefix="gk-backends-"))
    with Store(location) as store:
        thread = store.create_thread(root)
        goal_id = new_id("goal")
        contract = Contract.model_validate({"outcome": "x", "checks": [{"name": "t", "run": "true"}]})
        store.put_goal(thread.thread_id, contract, start_state(goal_id, contract, GoalSettings()), GoalSettings(),
                       [], goal_id=goal_id)
        step = [ChatMessageEvent(actor="model", content="a" * 200)] * 3
        commit = best_us(lambda: store.commit(goal_id, step), calls, rounds)
        poll = best_us(lambda: store.events(thread.thread_id, after_seq=10**9, goal_id=goal_id,
                                            kinds=[ControlRequestEvent, ControlAppliedEvent]), calls, rounds)
        last = best_us(lambda: store.last_seq(thread.thread_id), calls, rounds)
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(location), thread.thread_id,
                                     str(writer_events)], stdin=subprocess.PIPE, text=True) for _ in range(2)]
        time.sleep(1.5)  # both have imported and opened the store
        started = time.perf_counter()
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.close()
        for writer in writers:
            writer.wait(timeout=300)
        both = time.perf_counter() - started
        reopen = f"   reopen {reopen_ms(store, location, drops)}" if isinstance(location, str) and drops else ""
    return (f"{store.backend:10s}  commit {commit:7.0f} us   poll {poll:6.0f} us   last_seq {last:6.0f} us   "
            f"2 writers x {writer_events}: {both:.2f} s{reopen}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--writer-events", type=int, default=500)
    parser.add_argument("--drops", type=int, default=10, help="connection drops timed on PostgreSQL")
    parser.add_argument("--url", help="a PostgreSQL store_url (an empty database); default: a local test server")
    args = parser.parse_args()
    print(measure(Path(tempfile.mkdtemp(prefix="gk-backends-")) / "state.db", args.calls, args.rounds,
                  args.writer_events))
    if args.url:
        print(measure(args.url, args.calls, args.rounds, args.writer_events, args.drops))
        return
    from pg import start_postgres  # tests/pg.py

    server = start_postgres()
    try:
        print(measure(server.new_database(), args.calls, args.rounds, args.writer_events, args.drops))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
