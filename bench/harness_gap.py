"""Benchmark: the harness's own time between model requests, request size, prompt-prefix stability, peak RSS.

Drives one real goal (a git repo, the SQLite store, the real tools) against the local Chat Completions
server from tests/chat_server.py, and times it from the server's side. It prints figures and asserts nothing.

    .venv/bin/python bench/harness_gap.py [--turns 200] [--calls-per-turn 1]

Every turn is two requests: the model reads one small file, then answers with text, which ends the turn. A
turn with a tool call is not text-only, so the (always failing) check does not run after each turn. The
turns read three files in rotation: the same call three turns running would be stopped as stuck. With
`--calls-per-turn N` each turn makes N calls before its text (`--turns 1 --calls-per-turn 1000`: one long turn).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.core.state import GoalState
from goalkeeper.events import Event, ModelResponseEvent, ToolIntentEvent, TurnStartedEvent
from goalkeeper.goals import control
from goalkeeper.models.openai_chat import OpenAIChatModel
from goalkeeper.run.runner import Runner, RunResult
from goalkeeper.spec.settings import GoalSettings, ModelSettings, RunSettings
from goalkeeper.store import EventRecord, Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from chat_server import ChatServer, Completion, ToolCallReply, UsageReply

GAP_P50_TARGET_MS = 15.0
PREFIX_SHARE_TARGET = 0.99
PEAK_RSS_TARGET_MB = 90.0
GC_LONG_PAUSE_MS = 40.0
TRACKED_EVERY = 100
CACHED_SHARE = 0.9
"""The share of each prompt the server reports as cached, so the budget's cache accounting runs."""
READ_ROTATION = ("README.md", "src/app.py", "src/util.py")
"""The files the turns read in turn: never the same call three times running, never A-B-A-B (both are
stopped as stuck by `decide`'s repeat detector, which remembers calls across turns)."""


@dataclass
class Exchange:
    """One request as the server saw it."""

    received: float
    """perf_counter once the whole request body had arrived."""
    sent: float = 0.0
    """perf_counter after the whole response was written to the socket."""
    chars: int = 0
    """Characters of the JSON-serialised `messages` plus `tools`."""
    prefix_share: float | None = None
    """Common prefix with the previous request's messages, over that request's length (None for the first)."""
    tools_changed: bool = False
    """The tool list differs from the previous request's."""
    after_tool_call: bool = False
    """The request answers a tool call (within a turn); otherwise it opens a turn."""


@dataclass
class Probe:
    """What the server records per request; it keeps only the previous request's messages, not every body."""

    exchanges: list[Exchange] = field(default_factory=list)
    tracked: dict[int, int] = field(default_factory=dict)
    """Request number → objects the garbage collector tracked then (every TRACKED_EVERY requests)."""
    _previous: list[str] = field(default_factory=list)
    _previous_tools: str = ""

    def observe(self, exchange: Exchange, body: dict[str, Any]) -> None:
        """Measure `body` (the newest exchange's) against the request before it."""
        messages = [json.dumps(message) for message in body.get("messages", [])]
        tools = json.dumps(body.get("tools", []))
        exchange.chars = sum(len(text) for text in messages) + len(tools)
        exchange.after_tool_call = bool(body.get("messages")) and body["messages"][-1].get("role") == "tool"
        if len(self.exchanges) > 1:
            previous_length = sum(len(text) for text in self._previous)
            exchange.prefix_share = common_prefix_chars(self._previous, messages) / max(1, previous_length)
            exchange.tools_changed = tools != self._previous_tools
        self._previous, self._previous_tools = messages, tools


def common_prefix_chars(before: list[str], after: list[str]) -> int:
    """Characters shared from the start: whole equal messages, then characters of the first that differs."""
    shared = 0
    for old, new in zip(before, after, strict=False):
        if old != new:
            return shared + next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b),
                                 min(len(old), len(new)))
        shared += len(old)
    return shared


def reply(body: dict[str, Any], number: int, calls_per_turn: int = 1) -> Completion:
    """A request whose turn has `calls_per_turn` tool results gets text (the turn ends); anything else gets one
    `read_file` call. The wrap-up turn, which offers no `read_file`, gets text after its first result.

    The call id and the file are set from the request `number`: the server's default id counts the request
    bodies it keeps, and this benchmark keeps none. With one call a turn, a turn is two requests, so
    `number // 2` counts turns; with more, consecutive requests read the files in turn.
    """
    prompt_tokens = len(json.dumps(body.get("messages", []))) // 4
    usage = UsageReply(prompt_tokens, 8, cached_tokens=int(prompt_tokens * CACHED_SHARE))
    turn = list(itertools.takewhile(lambda m: m.get("role") != "user", reversed(body.get("messages", []))))
    results = sum(message.get("role") == "tool" for message in turn)
    offered = {tool["function"]["name"] for tool in body.get("tools", [])}
    if results >= calls_per_turn or (results and "read_file" not in offered):
        return Completion(text="ok", usage=usage)
    rotation = number // 2 if calls_per_turn == 1 else number
    path = READ_ROTATION[rotation % len(READ_ROTATION)]
    return Completion(tool_calls=(ToolCallReply("read_file", {"path": path}, id=f"call_{number}"),), usage=usage)


class TimedChatServer(ChatServer):
    """The test server, timing each request from its arrival to the last byte of its answer."""

    def __init__(self, probe: Probe, calls_per_turn: int = 1) -> None:
        super().__init__(reply_fn=self._observed_reply, model="bench-model")
        self.probe, self.calls_per_turn = probe, calls_per_turn

    def _observed_reply(self, body: dict[str, Any]) -> Completion:
        self.probe.observe(self.probe.exchanges[-1], body)
        number = len(self.probe.exchanges)
        if number % TRACKED_EVERY == 0:
            # While the runner waits for this answer: what a full collection would walk, the body aside.
            self.probe.tracked[number] = len(gc.get_objects())
        return reply(body, number, self.calls_per_turn)

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        await request.read()  # the whole body is in (aiohttp keeps it for the handler's request.json())
        self.probe.exchanges.append(Exchange(received=time.perf_counter()))
        response = await super()._chat_completions(request)
        with self._lock:
            # Every body kept would be charged to the harness's peak RSS; freed before answering, so
            # the server thread does not spend the harness's gap freeing it.
            self.requests.clear()
        # Written here rather than by aiohttp after we return, so `sent` is when the client can read it.
        await response.prepare(request)
        await response.write_eof()
        self.probe.exchanges[-1].sent = time.perf_counter()
        return response


class CountingStore(Store):
    """The store, counting its goal commits: each is one transaction, fsynced before it returns."""

    commits = 0
    committed_events = 0

    def commit(self, goal_id: str, events: Sequence[Event], state: GoalState | None = None,
               expected_version: int | None = None,
               settings: GoalSettings | None = None) -> tuple[int, list[EventRecord]]:
        self.commits += 1
        self.committed_events += len(events)
        return super().commit(goal_id, events, state=state, expected_version=expected_version, settings=settings)


@dataclass
class GcWatch:
    """The garbage collector's pauses in this process (harness and server thread), in ms."""

    pauses: list[float] = field(default_factory=list)
    _started: float = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((time.perf_counter() - self._started) * 1000)

    def rows(self, tracked: dict[int, int]) -> list[Row]:
        long = [pause for pause in self.pauses if pause >= GC_LONG_PAUSE_MS]
        first, last = (tracked[min(tracked)], tracked[max(tracked)]) if tracked else (0, 0)
        return [Row(f"GC pauses >= {GC_LONG_PAUSE_MS:g} ms / all", f"{len(long)} / {len(self.pauses)}"),
                Row("GC pause max / total (ms)", f"{max(self.pauses, default=0):.1f} / {sum(self.pauses):.0f}"),
                Row(f"GC-tracked objects, request {min(tracked, default=0)} / {max(tracked, default=0)}",
                    f"{first:,} / {last:,}")]


def make_repo(root: Path) -> Path:
    """A small git repository with one commit."""
    repo = root / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "README.md").write_text("# bench\n")
    (repo / "src" / "app.py").write_text("def add(a: int, b: int) -> int:\n    return a + b\n")
    (repo / "src" / "util.py").write_text("def double(a: int) -> int:\n    return 2 * a\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "initial"], cwd=repo, check=True)
    return repo


def run_goal(store: Store, repo: Path, base_url: str, turns: int) -> RunResult:
    """Set a goal whose check always fails and whose only limit is `turns`, and drive it to its end."""
    contract = contract_from_flags("Benchmark the harness gap", checks=["tests=false"],
                                   budget_turns=turns, no_progress_turns=100_000)
    model = ModelSettings(provider="chat", model="bench-model", base_url=base_url, api_key_env="BENCH_KEY")
    goal = control.set_goal(store, repo, contract, GoalSettings(model=model, run=RunSettings()))
    runner = Runner(store, goal, OpenAIChatModel("bench-model", base_url, "x"), repo)
    return asyncio.run(runner.run())


@dataclass(frozen=True)
class TurnCount:
    """The run's turns as the store recorded them."""

    opened: int
    answered: int
    """Turns that sent at least one model request."""
    wrap_up: int
    tool_calls: int


def count_turns(store: Store, goal_id: str) -> TurnCount:
    """Count the goal's turns, and those that got a model response, from its events."""
    goal = store.get_goal_by_id(goal_id)
    kinds: dict[int, str] = {}
    answered: set[int] = set()
    turn = calls = 0
    for record in store.events(goal.thread_id, goal_id=goal_id,
                               kinds=[TurnStartedEvent, ModelResponseEvent, ToolIntentEvent]):
        if isinstance(event := record.event, TurnStartedEvent):
            turn = event.turn
            kinds[turn] = event.turn_kind
        elif isinstance(event, ToolIntentEvent):
            calls += 1
        else:
            answered.add(turn)
    return TurnCount(len(kinds), len(answered), sum(kind == "wrap_up" for kind in kinds.values()), calls)


def peak_rss_mb() -> float:
    """This process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def harness_import_rss_mb() -> float:
    """Peak RSS of a fresh interpreter that imports only the harness (no aiohttp, no server).

    Read from VmHWM: a child's ru_maxrss would start at this process's size (Linux carries it over fork
    and exec).
    """
    code = ("import goalkeeper.run.runner, goalkeeper.models.openai_chat; "
            "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out) / 1024


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def gaps_ms(exchanges: list[Exchange], after_tool_call: bool | None = None) -> list[float]:
    """Server finished answering request i-1 → request i arrived, in ms; optionally only one kind of i."""
    return [(now.received - before.sent) * 1000 for before, now in itertools.pairwise(exchanges)
            if after_tool_call is None or now.after_tool_call == after_tool_call]


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    name: str
    value: str
    target: str = ""
    met: bool | None = None


def gap_rows(exchanges: list[Exchange]) -> list[Row]:
    """The harness gap overall, by kind of request, and early against late in the run."""
    gaps = gaps_ms(exchanges)
    within, between = gaps_ms(exchanges, after_tool_call=True), gaps_ms(exchanges, after_tool_call=False)
    edge = max(1, len(gaps) // 8)

    def pair(values: list[float]) -> str:
        return f"{percentile(values, 0.5):.1f} / {percentile(values, 0.95):.1f}" if values else "none"

    return [
        Row("harness gap p50 (ms)", f"{percentile(gaps, 0.5):.1f}", f"< {GAP_P50_TARGET_MS:g}",
            percentile(gaps, 0.5) < GAP_P50_TARGET_MS),
        Row("harness gap p95 (ms)", f"{percentile(gaps, 0.95):.1f}"),
        Row("  after a tool call p50 / p95", pair(within)),
        Row("  opening a turn p50 / p95", pair(between)),
        Row(f"  first / last {edge} requests p50", f"{percentile(gaps[:edge], 0.5):.1f} / "
            f"{percentile(gaps[-edge:], 0.5):.1f}"),
    ]


def size_rows(exchanges: list[Exchange]) -> list[Row]:
    """Request sizes and how much of each request repeats the one before it."""
    shares = [e.prefix_share for e in exchanges if e.prefix_share is not None]
    chars = [e.chars for e in exchanges]
    lowest = min(range(len(shares)), key=shares.__getitem__)
    return [
        Row("chars/request first / median / max", f"{chars[0]:,} / {statistics.median(chars):,.0f} / {max(chars):,}"),
        Row("prefix share min", f"{shares[lowest]:.4f} (#{lowest + 1})", f">= {PREFIX_SHARE_TARGET}",
            shares[lowest] >= PREFIX_SHARE_TARGET),
        Row("prefix share mean", f"{statistics.fmean(shares):.4f}", f">= {PREFIX_SHARE_TARGET}",
            statistics.fmean(shares) >= PREFIX_SHARE_TARGET),
        Row("requests whose tool list changed", str(sum(e.tools_changed for e in exchanges))),
    ]


def rss_rows(rss: dict[str, float]) -> list[Row]:
    """Peak RSS of this process (harness and server thread together) and two baselines."""
    return [
        Row("peak RSS, harness + server (MB)", f"{rss['peak']:.1f}", f"< {PEAK_RSS_TARGET_MB:g}",
            rss["peak"] < PEAK_RSS_TARGET_MB),
        Row("  before the server started (MB)", f"{rss['before_server']:.1f}"),
        Row("  harness imports alone (MB)", f"{rss['imports_only']:.1f}"),
    ]


def commit_rows(store: CountingStore, turns: TurnCount) -> list[Row]:
    """Goal commits (fsynced transactions) per tool call, and events per commit."""
    return [
        Row("store commits per tool call", f"{store.commits / max(1, turns.tool_calls):.2f}"),
        Row("  commits / events / tool calls", f"{store.commits} / {store.committed_events} / {turns.tool_calls}"),
    ]


def report(exchanges: list[Exchange], result: RunResult, turns: TurnCount, budget_turns: int,
           wall_s: float, rss: dict[str, float], extra: list[Row]) -> None:
    """Print the run, the figures, the targets and whether each is met."""
    print(f"machine: {os.cpu_count()} cpus, Python {platform.python_version()}, {platform.platform()}")
    print(f"run: {result.status} ({result.reason}) in {wall_s:.1f}s, {len(exchanges)} requests; "
          f"{turns.opened} turns opened ({turns.wrap_up} wrap-up), {turns.answered} sent requests")
    if result.status != "budget_limited" or turns.opened != budget_turns + 1 or turns.wrap_up != 1:
        print(f"WARNING: expected budget_limited after {budget_turns} turns and one wrap-up turn")
    if turns.answered < turns.opened:
        print(f"note: {turns.opened - turns.answered} turn(s) opened but sent no request (with a turn budget "
              "of N, turn N finds the budget used up at its first request and the wrap-up turn begins)")
    print(f"\n{'figure':<36} {'measured':>26}  {'target':<8} met")
    for row in [*gap_rows(exchanges), *size_rows(exchanges), *rss_rows(rss), *extra]:
        met = "" if row.met is None else ("yes" if row.met else "NO")
        print(f"{row.name:<36} {row.value:>26}  {row.target:<8} {met}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200, help="the goal's turn budget (two requests a turn)")
    parser.add_argument("--calls-per-turn", type=int, default=1, help="tool calls each turn makes before its text")
    args = parser.parse_args()
    watch = GcWatch()
    with tempfile.TemporaryDirectory(prefix="gk-bench-") as temp:
        root = Path(temp)
        os.environ["GOALKEEPER_HOME"] = str(root / "home")
        repo = make_repo(root)
        store = CountingStore(root / "home" / "state.db")
        rss = {"before_server": peak_rss_mb(), "imports_only": harness_import_rss_mb()}
        probe = Probe()
        with TimedChatServer(probe, args.calls_per_turn) as server:
            gc.callbacks.append(watch)
            started = time.perf_counter()
            result = run_goal(store, repo, server.base_url, args.turns)
            wall_s = time.perf_counter() - started
            gc.callbacks.remove(watch)
        rss["peak"] = peak_rss_mb()
        turns = count_turns(store, result.goal_id)
        commits = commit_rows(store, turns)
        store.close()
    report(probe.exchanges, result, turns, args.turns, wall_s, rss, [*commits, *watch.rows(probe.tracked)])


if __name__ == "__main__":
    main()
