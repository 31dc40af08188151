"""Benchmark: a 1,200-step goal whose model refuses every compaction: the harness gap and the runner's peak RSS
as the goal goes on, and how big the context is after each refused compaction.

    .venv/bin/python bench/long_goal.py [--steps 1200] [--window 32000] [--summary refuse]

The runner drives one real goal (a git repo, the SQLite store, the real tools, `OpenAIChatModel`) in a child
process, so its peak RSS is its own; the Chat Completions server from tests/chat_server.py runs in this
process and times each request. A step is one model request. Every turn is two requests: the model reads
one ~1,500-character file (three in rotation, so the stuck detector stays quiet), then answers "ok". Each
tool output is under the 2,000 characters a fallback trim leaves alone, so only a real compaction can shrink
the context. The model is named gpt-4.1-mini (an OpenAI-family name: the family that once loaded the exact
tokenizer). `--summary` says how the model answers the compaction request: `refuse` (a tool call), `empty`
(no text), `error` (HTTP 400) or `text` (a proper summary). It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from chat_server import ChatServer, Completion, Failure, ToolCallReply

MODEL = "gpt-4.1-mini"
READS = ("a.txt", "b.txt", "c.txt")
FILE_LINES = 30
"""Lines per file: with read_file's line numbers, about 1,500 characters of tool output."""
SAMPLED_STEPS = (1, 100, 1000)
GAP_WINDOW = 50
"""The gap at step N is the median of the gaps of the GAP_WINDOW requests from N on (from 2 for step 1)."""
SUMMARY = "\n".join(f"## {name}\n(bench summary: {name.lower()})" for name in
                    ("Goal", "Constraints", "Decisions", "Failed approaches", "Current state", "Next step"))


# ---------------------------------------------------------------- the runner, in its own process


def vm_hwm_mb() -> float:
    """This process's peak resident set (VmHWM: fresh after exec, unlike ru_maxrss)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


def run_child(base_url: str, repo: Path, steps: int, window: int) -> None:
    """Set the goal and run it to its end; print the peak RSS at the sampled steps as one JSON line."""
    from goalkeeper.contract.flags import contract_from_flags
    from goalkeeper.goals import control
    from goalkeeper.models.base import ModelRequest, ModelResponse
    from goalkeeper.models.openai_chat import OpenAIChatModel
    from goalkeeper.run.runner import Runner
    from goalkeeper.spec.settings import GoalSettings, ModelSettings, RunSettings
    from goalkeeper.store import Store

    rss: dict[int, float] = {}

    class CountingModel(OpenAIChatModel):
        """Samples the process's peak RSS as each sampled request goes out."""

        calls = 0

        async def complete(self, request: ModelRequest) -> ModelResponse:
            self.calls += 1
            if self.calls in SAMPLED_STEPS:
                rss[self.calls] = vm_hwm_mb()
            return await super().complete(request)

    store = Store(Path(os.environ["GOALKEEPER_HOME"]) / "state.db")
    contract = contract_from_flags("Benchmark a long goal", checks=["tests=false"], budget_turns=steps // 2 + 1,
                                   budget_tokens=10**12, no_progress_turns=10**6)
    settings = ModelSettings(provider="custom", wire_api="chat", model=MODEL, base_url=base_url,
                             context_window=window)
    goal = control.set_goal(store, repo, contract, GoalSettings(model=settings, run=RunSettings()))
    result = asyncio.run(Runner(store, goal, CountingModel(MODEL, base_url, "x"), repo).run())
    store.close()
    print(json.dumps({"status": result.status, "reason": str(result.reason), "rss": rss, "peak": vm_hwm_mb()}))


# ---------------------------------------------------------------- the server, in this process


@dataclass
class Exchange:
    received: float
    sent: float = 0.0
    chars: int = 0
    """Characters of the request body."""
    summary: bool = False
    """The request asks for the compaction's hand-off summary."""


@dataclass
class Probe:
    exchanges: list[Exchange] = field(default_factory=list)
    compact_prompt: str = ""
    openings: int = 0
    """Requests that open a turn: the read rotation goes by them, so summary requests do not shift it."""


def is_summary(body: dict[str, Any], compact_prompt: str) -> bool:
    last = body["messages"][-1]
    return bool(last["role"] == "user" and last["content"] == compact_prompt)


class LongGoalServer(ChatServer):
    """The test server: times each request, keeps no bodies, answers as the module docstring says."""

    def __init__(self, probe: Probe, summary: str) -> None:
        super().__init__(reply_fn=self._reply, model="bench-model")
        self.probe, self.summary = probe, summary

    def _reply(self, body: dict[str, Any]) -> Completion | Failure:
        exchange, number = self.probe.exchanges[-1], len(self.probe.exchanges)
        exchange.summary = is_summary(body, self.probe.compact_prompt)
        if exchange.summary:
            return self._summary_reply(number)
        if body["messages"][-1]["role"] == "tool":
            return Completion(text="ok")
        self.probe.openings += 1
        path = READS[self.probe.openings % len(READS)]
        return Completion(tool_calls=(ToolCallReply("read_file", {"path": path}, id=f"call_{number}"),))

    def _summary_reply(self, number: int) -> Completion | Failure:
        if self.summary == "refuse":
            return Completion(tool_calls=(ToolCallReply("read_file", {"path": READS[0]}, id=f"call_{number}"),))
        if self.summary == "empty":
            return Completion(text="")
        if self.summary == "error":
            return Failure(400, "no summaries today", "bad_request", "invalid_request_error")
        return Completion(text=SUMMARY)

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.probe.exchanges.append(Exchange(received=time.perf_counter(), chars=len(raw)))
        response = await super()._chat_completions(request)
        with self._lock:
            self.requests.clear()
        await response.prepare(request)
        await response.write_eof()
        self.probe.exchanges[-1].sent = time.perf_counter()
        return response


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    for name in READS:
        lines = [f"{name} line {n:03d}: " + "lorem ipsum dolor sit amet" for n in range(FILE_LINES)]
        (repo / name).write_text("\n".join(lines) + "\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "initial"], cwd=repo, check=True)
    return repo


# ---------------------------------------------------------------- the step's own costs, in isolation


def step_costs(messages: int, repeats: int = 20) -> list[str]:
    """Microseconds to build and encode the next request body, per provider, and to fold one response
    into the conversation, with `messages` messages of ~1,500 characters already sent."""
    from goalkeeper.context.history import Conversation
    from goalkeeper.events import ModelResponseEvent, Usage
    from goalkeeper.models.anthropic_messages import AnthropicModel
    from goalkeeper.models.base import Message, ModelRequest, ToolCall
    from goalkeeper.models.openai_chat import OpenAIChatModel
    from goalkeeper.models.openai_responses import OpenAIResponsesModel
    from goalkeeper.store import EventRecord
    from goalkeeper.tools.registry import default_registry

    history: list[Message] = [Message("system", "s" * 5_000), Message("user", "c" * 2_000)]
    for n in range(messages // 2):
        call = ToolCall(f"call_{n}", "read_file", json.dumps({"path": f"f{n}.txt"}))
        history += [Message("assistant", "", tool_calls=(call,)),
                    Message("tool", f"line {n}\n" * 150, tool_call_id=call.id, name="read_file")]
    specs = default_registry().specs
    rows = []
    for model in (OpenAIChatModel("m", "http://127.0.0.1:9", "k"), OpenAIResponsesModel("m", "http://127.0.0.1:9", "k"),
                  AnthropicModel("m", "http://127.0.0.1:9", "k")):
        model._body(ModelRequest(tuple(history), specs), stream=False)  # the request before: its cache
        took = []
        for n in range(repeats):
            request = ModelRequest((*history, Message("user", f"next {n}")), specs)
            started = time.perf_counter()
            body = model._body(request, stream=False)
            if not isinstance(body, bytes):  # before issue 16 the SDK encoded the dict
                body = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            took.append(time.perf_counter() - started)
        rows.append(f"  {type(model).__name__} body: {statistics.median(took) * 1e6:,.0f} µs ({len(body):,} bytes)")
    # An estimated model's conversation (the only kind since issue 16): responses that report usage.
    conversation = Conversation("s" * 5_000, "c" * 2_000)

    def respond(number: int, content: str, reported: int) -> None:
        usage = Usage(input_tokens=reported, cached_input_tokens=0, output_tokens=1, charged_tokens=1)
        event = ModelResponseEvent(content=content, tool_calls=[], usage=usage, usd=0.0, model="m",
                                   finish_reason="stop")
        conversation.apply(EventRecord(seq=number, thread_id="t", goal_id="g", ts=0.0, event=event))

    for number in range(messages):
        respond(number, f"line {number}\n" * 150, 0)
    conversation.request_tokens(specs)
    took = []
    for n in range(repeats):
        started = time.perf_counter()
        respond(messages + n, "ok", 100_000)
        conversation.request_tokens(specs)
        took.append(time.perf_counter() - started)
    rows.append(f"  fold a response and size the next request (estimated model): "
                f"{statistics.median(took) * 1e6:,.0f} µs")
    return rows


# ---------------------------------------------------------------- figures


def gap_at(exchanges: list[Exchange], step: int) -> float | None:
    """Median harness gap (ms) of the GAP_WINDOW requests from `step` on (step 1 has none before it)."""
    first = max(step, 2) - 1  # index of the request numbered `step`, at least the second
    gaps = [(exchanges[i].received - exchanges[i - 1].sent) * 1000
            for i in range(first, min(first + GAP_WINDOW, len(exchanges)))]
    return statistics.median(gaps) if gaps else None


def context_rows(exchanges: list[Exchange], window: int) -> list[str]:
    """Request sizes, and the size of the request right after each compaction request."""
    after = [exchanges[i + 1].chars for i, e in enumerate(exchanges[:-1]) if e.summary]
    biggest = max(e.chars for e in exchanges)
    rows = [f"summary requests: {sum(e.summary for e in exchanges)}",
            f"largest request: {biggest:,} chars (~{biggest // 4:,} tokens at 4 chars a token; window {window:,})",
            f"last request: {exchanges[-1].chars:,} chars"]
    if after:
        rows.append(f"request after each summary request: first {after[0]:,} / median "
                    f"{int(statistics.median(after)):,} / max {max(after):,} chars")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--window", type=int, default=32_000, help="the model's context window in tokens")
    parser.add_argument("--summary", choices=("refuse", "empty", "error", "text"), default="refuse")
    parser.add_argument("--step-costs", action="store_true",
                        help="only time building one request body and folding one response, at 100 and 1,000 "
                             "messages")
    parser.add_argument("--child", nargs=2, metavar=("BASE_URL", "REPO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step_costs:
        for messages in (100, 1_000):
            print(f"{messages:,} messages already sent:")
            print("\n".join(step_costs(messages)))
        return
    if args.child:
        run_child(args.child[0], Path(args.child[1]), args.steps, args.window)
        return
    from goalkeeper.context.prompts import render

    probe = Probe(compact_prompt=render("compact"))
    with tempfile.TemporaryDirectory(prefix="gk-long-") as temp:
        root = Path(temp)
        repo = make_repo(root)
        env = {**os.environ, "GOALKEEPER_HOME": str(root / "home")}
        started = time.perf_counter()
        with LongGoalServer(probe, args.summary) as server:
            child = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--window",
                                    str(args.window), "--child", server.base_url, str(repo)],
                                   env=env, capture_output=True, text=True, check=False)
        wall_s = time.perf_counter() - started
    if child.returncode != 0:
        sys.exit(f"the runner failed:\n{child.stderr[-4000:]}")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    exchanges = probe.exchanges
    print(f"machine: {os.cpu_count()} cpus, Python {platform.python_version()}, {platform.platform()}")
    print(f"run: {result['status']} ({result['reason']}), {len(exchanges)} requests in {wall_s:.1f} s; "
          f"model {MODEL}, window {args.window:,}, compaction answered with: {args.summary}")
    print(f"{'step':>6} {'gap p50 (ms)':>14} {'runner peak RSS (MB)':>22}")
    for step in SAMPLED_STEPS:
        gap = gap_at(exchanges, step) if step <= len(exchanges) else None
        rss = result["rss"].get(str(step))
        print(f"{step:>6} {'-' if gap is None else f'{gap:.1f}':>14} {'-' if rss is None else f'{rss:.1f}':>22}")
    print(f"runner peak RSS at the end: {result['peak']:.1f} MB")
    for row in context_rows(exchanges, args.window):
        print(row)


if __name__ == "__main__":
    main()
