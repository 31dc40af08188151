"""Benchmark: what waiting costs, one `wait` call against a model that polls with `shell`, for the same wall time.

Drives two goals in this process with the scripted model, a temp git repo, a temp store and the real sandbox. A
timer creates `ready` in the workspace after --seconds. In "wait" the model makes one `wait` call that probes
`test -f ready` every --interval seconds; in "poll" it does what a model without the tool does: one request per
poll, each a `shell` call of `sleep INTERVAL; test -f ready`, until the file is there. For each it prints the
model requests and tokens charged while waiting, the store commits and events, and the CPU seconds the runner
process and its children (the probes) used. It asserts nothing about timing.

    .venv/bin/python bench/wait.py [--seconds 20] [--interval 2]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from goalkeeper.cli.demo import prepare_sample
from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.core.outcomes import GoalState
from goalkeeper.events import Event
from goalkeeper.goals import control
from goalkeeper.models.base import ModelRequest, ModelResponse
from goalkeeper.models.scripted import ScriptedModel, ScriptedToolCall, ScriptStep
from goalkeeper.run.runner import Runner
from goalkeeper.spec.settings import GoalSettings, ModelSettings, RunSettings
from goalkeeper.store import EventRecord, Store


class CountingStore(Store):
    """The store, counting its goal commits and the events they wrote."""

    commits = 0
    events_written = 0

    def commit(self, goal_id: str, events: Sequence[Event], state: GoalState | None = None,
               expected_version: int | None = None,
               settings: GoalSettings | None = None) -> tuple[int, list[EventRecord]]:
        self.commits += 1
        self.events_written += len(events)
        return super().commit(goal_id, events, state=state, expected_version=expected_version, settings=settings)


class PollingModel(ScriptedModel):
    """Polls with `shell` until a result says the file is there, then completes. Each poll's command differs (a
    numbered comment): the same call three times running would be stopped as a repeat."""

    def __init__(self, interval_s: float) -> None:
        super().__init__([ScriptStep(text="polling")])
        self.interval_s = interval_s
        self.ready = False

    def _step_for(self, index: int) -> ScriptStep:
        if self.ready:
            return ScriptStep(tool_calls=(ScriptedToolCall("update_goal", {"status": "complete", "summary": "up"}),))
        command = f"sleep {self.interval_s:g}; test -f ready  # poll {index}"
        return ScriptStep(tool_calls=(ScriptedToolCall("shell", {"command": command}),))

    async def complete(self, request: ModelRequest) -> ModelResponse:
        last = request.messages[-1]
        self.ready = self.ready or (last.role == "tool" and last.content.startswith("exit code: 0"))
        return await super().complete(request)


@dataclass
class Figures:
    requests: int
    tokens: int
    commits: int
    events: int
    cpu_s: float
    wall_s: float


def run_one(kind: str, seconds: float, interval_s: float) -> Figures:
    """One goal that waits `seconds` for `ready`, the `kind` way; its figures."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        workspace = prepare_sample(root)
        with CountingStore(root / "state.db") as store:
            settings = GoalSettings(model=ModelSettings(provider="scripted", model="scripted", script="inline"),
                                    run=RunSettings(wait_min_interval_s=0.1))
            goal = control.set_goal(store, workspace, contract_from_flags("Ship once up", checks=["t=true"]),
                                    settings, replace_existing=True)
            wait = ScriptedToolCall("wait", {"until": "test -f ready", "interval_s": interval_s,
                                             "timeout_s": seconds * 10})
            done = ScriptedToolCall("update_goal", {"status": "complete", "summary": "up"})
            model = (ScriptedModel([ScriptStep(tool_calls=(wait,)), ScriptStep(tool_calls=(done,))])
                     if kind == "wait" else PollingModel(interval_s))
            threading.Timer(seconds, (workspace / "ready").touch).start()
            cpu = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
            started, commits, events = time.monotonic(), store.commits, store.events_written
            result = asyncio.run(Runner(store, goal, model, workspace, handle_signals=False).run())
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = (time.process_time() - cpu[0]) + (children.ru_utime - cpu[1].ru_utime) \
                + (children.ru_stime - cpu[1].ru_stime)
            assert result.status == "achieved", result
            state = store.get_goal_by_id(goal.goal_id).state
            return Figures(len(model.requests), state.spent.tokens, store.commits - commits,
                           store.events_written - events, used, time.monotonic() - started)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long until the file appears")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between two polls or probes")
    args = parser.parse_args(argv)
    print(f"{platform.node()} · {platform.python_version()} · wait {args.seconds:g}s, every {args.interval:g}s")
    print(f"{'':6} {'requests':>9} {'tokens':>8} {'commits':>8} {'events':>7} {'CPU s':>7} {'wall s':>7}")
    for kind in ("poll", "wait"):
        figures = run_one(kind, args.seconds, args.interval)
        print(f"{kind:6} {figures.requests:>9} {figures.tokens:>8} {figures.commits:>8} {figures.events:>7} "
              f"{figures.cpu_s:>7.2f} {figures.wall_s:>7.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
