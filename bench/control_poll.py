"""Benchmark: what one poll of a goal's control inbox costs as the goal's events grow (to 100 K by default).

Builds one goal through the store API (batched commits of a step's usual events: a response, a tool intent, a
tool result with a 1 KB output), with a control request and its marker every 10 K events and one request left
open. At each size it times two polls of the same inbox, each after one new step was committed:

- rescan: every control event of the goal read from seq 0 and folded, as the runner polled before issue 16;
- cursor: `run.inbox.Inbox.read`, the runner's poll now (only what arrived after the last read).

It prints figures and asserts nothing about timing, only that both polls find the same open requests.

    .venv/bin/python bench/control_poll.py [--events 100000] [--polls 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.events import (
    CallMade,
    ControlAppliedEvent,
    ControlRequestEvent,
    Event,
    ModelResponseEvent,
    ToolIntentEvent,
    ToolResultEvent,
    Usage,
)
from goalkeeper.goals import control
from goalkeeper.run.inbox import Inbox
from goalkeeper.spec.settings import GoalSettings
from goalkeeper.store import Goal, Store

BATCH_EVENTS = 3_000
"""Events per commit while the goal is built (the build is not what is measured)."""
CONTROL_EVERY = 10_000
"""A budget request and its marker every this many events: a poll has some history to fold."""
OUTPUT = "line of tool output\n" * 50


def step(number: int) -> list[Event]:
    """One tool call's events, about as large as a `read_file` step's."""
    call_id = f"call_{number}"
    arguments = '{"path": "src/app.py"}'
    usage = Usage(input_tokens=20_000, cached_input_tokens=18_000, output_tokens=40, charged_tokens=2_040)
    return [
        ModelResponseEvent(content="Reading the file.", tool_calls=[CallMade(id=call_id, name="read_file",
                                                                           arguments=arguments)],
                           usage=usage, usd=0.001, model="bench-model", finish_reason="tool_calls"),
        ToolIntentEvent(call_id=call_id, name="read_file", arguments=arguments),
        ToolResultEvent(call_id=call_id, name="read_file", output=OUTPUT, ok=True, signal=None, data={},
                        files_touched=[], full_output_chars=None),
    ]


def grow(store: Store, goal: Goal, events: int, written: int) -> int:
    """Commit steps (and a control request with its marker every CONTROL_EVERY events) until `events`."""
    batch: list[Event] = []
    while written < events:
        if written // CONTROL_EVERY != (written + 3) // CONTROL_EVERY:
            [asked] = store.commit(goal.goal_id, [ControlRequestEvent(action="budget", add_tokens=1_000)])[1]
            store.commit(goal.goal_id, [ControlAppliedEvent(actor="harness", request_seq=asked.seq)])
            written += 2
        batch += step(written)
        written += 3
        if len(batch) >= BATCH_EVENTS:
            store.commit(goal.goal_id, batch)
            batch = []
    if batch:
        store.commit(goal.goal_id, batch)
    return written


def rescan(store: Store, goal: Goal) -> list[int]:
    """The poll before issue 16: every control event of the goal, from seq 0, folded into the open requests."""
    records = store.events(goal.thread_id, goal_id=goal.goal_id, kinds=[ControlRequestEvent, ControlAppliedEvent])
    applied = {r.event.request_seq for r in records if isinstance(r.event, ControlAppliedEvent)}
    return [r.seq for r in records if isinstance(r.event, ControlRequestEvent) and r.seq not in applied]


def timed(store: Store, goal: Goal, polls: int, poll: Callable[[], list[int]]) -> tuple[list[float], list[int]]:
    """Milliseconds per poll, each after one more step was committed (as a runner polls once a step)."""
    samples, found = [], []
    for number in range(polls):
        store.commit(goal.goal_id, step(10_000_000 + number))
        started = time.perf_counter()
        found = poll()
        samples.append((time.perf_counter() - started) * 1000)
    return samples, found


def percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


def measure(store: Store, goal: Goal, inbox: Inbox, polls: int) -> tuple[str, str]:
    """Both polls' p50 / p95 at the goal's present size."""

    def cursor() -> list[int]:
        return [seq for seq, _ in inbox.read(store, goal.goal_id, goal.thread_id)]

    cursor()  # unmeasured: catches up with the events the goal grew by since the last size (a runner polls every step)
    old, old_open = timed(store, goal, polls, lambda: rescan(store, goal))
    new, new_open = timed(store, goal, polls, cursor)
    assert old_open == new_open, f"the polls disagree: {old_open} against {new_open}"
    return figures(old), figures(new)


def figures(samples: list[float]) -> str:
    return f"{percentile(samples, 0.5):.3f} / {percentile(samples, 0.95):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="the goal's size at the last measurement")
    parser.add_argument("--polls", type=int, default=50, help="polls timed per size and way")
    args = parser.parse_args()
    sizes = [size for size in (1_000, 10_000, 100_000, 1_000_000) if size < args.events] + [args.events]
    print(f"machine: {os.cpu_count()} cpus, Python {platform.python_version()}, {platform.platform()}")
    print(f"\n{'goal events':>12} {'rescan p50 / p95 (ms)':>24} {'cursor p50 / p95 (ms)':>24} {'build (s)':>10}")
    with tempfile.TemporaryDirectory(prefix="gk-poll-") as temp:
        root = Path(temp)
        os.environ["GOALKEEPER_HOME"] = str(root / "home")
        store = Store(root / "home" / "state.db")
        goal = control.set_goal(store, root, contract_from_flags("Poll the inbox", checks=["tests=false"]),
                                GoalSettings())
        [left_open] = store.commit(goal.goal_id, [ControlRequestEvent(action="pause")])[1]
        inbox, written = Inbox(), 1
        for size in sizes:
            started = time.perf_counter()
            written = grow(store, goal, size, written)
            build_s = time.perf_counter() - started
            old, new = measure(store, goal, inbox, args.polls)
            written += 6 * args.polls
            print(f"{store.last_seq(goal.thread_id):>12,} {old:>24} {new:>24} {build_s:>10.1f}")
        assert [seq for seq, _ in inbox.read(store, goal.goal_id, goal.thread_id)] == [left_open.seq]
        store.close()


if __name__ == "__main__":
    main()
