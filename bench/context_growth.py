"""Benchmark: how big requests get over a long goal, for goalkeeper and for a naive append-everything loop.

goalkeeper drives one real goal (a git repo, the SQLite store, the real tools) for N turns against the
local Chat Completions server from tests/chat_server.py, which records every request. In each turn the
model reads a new ~5 KB slice of a file, then ends the turn with a line of text; the server answers
compaction requests with a fixed hand-off summary.

The naive loop is what a first harness does: the same system prompt, tools and 5 KB outputs, every
message appended forever, the whole contract and evidence restated in every continuation, no output
limit and no compaction. It sends nothing; its requests are measured as built.

    .venv/bin/python bench/context_growth.py [--turns 300] [--window 128000]

It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from goalkeeper.cli.demo import prepare_sample
from goalkeeper.context.prompts import render
from goalkeeper.context.render import contract_block
from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.events import CompactedEvent
from goalkeeper.goals import control
from goalkeeper.models.openai_chat import OpenAIChatModel
from goalkeeper.run.runner import Runner
from goalkeeper.spec.settings import GoalSettings, ModelSettings, RunSettings
from goalkeeper.store import Store
from goalkeeper.tools.registry import default_registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import itertools

from chat_server import ChatServer, Completion, ToolCallReply

MODEL = "gpt-4.1-mini"
OBJECTIVE = "Fix apply_discount in cart.py so 10 means 10%. Do not change the tests."
LINES_PER_SLICE = 64
SUMMARY = "\n".join(f"## {name}\n(the model's notes on {name.lower()})" for name in
                    ("Goal", "Constraints", "Decisions", "Failed approaches", "Current state", "Next step"))


def _workspace(root: Path, turns: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    workspace = prepare_sample(root)
    words = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo")
    lines = [f"{n:06d} " + " ".join(words[(n * 7 + k * 3) % len(words)] for k in range(11))
             for n in range((turns + 2) * LINES_PER_SLICE)]
    (workspace / "notes.txt").write_text("\n".join(lines) + "\n")
    subprocess.run(["git", "add", "notes.txt"], cwd=workspace, check=True)
    subprocess.run(["git", "commit", "-qm", "notes"], cwd=workspace, check=True)
    return workspace


def _read(number: int) -> ToolCallReply:
    return ToolCallReply("read_file", {"path": "notes.txt", "offset": 1 + number * LINES_PER_SLICE,
                                       "limit": LINES_PER_SLICE})


def goalkeeper_requests(turns: int, window: int) -> tuple[list[dict[str, Any]], int, float]:
    """Every request goalkeeper sent over `turns` turns, the compactions, and the wall time."""
    openings = 0

    def reply(body: dict[str, Any]) -> Completion:
        nonlocal openings
        last = body["messages"][-1]
        if last["role"] == "user" and last["content"] == render("compact"):
            return Completion(text=SUMMARY)
        if last["role"] == "tool":
            return Completion(text="Read it.")
        openings += 1
        return Completion(tool_calls=(_read(openings),))

    with tempfile.TemporaryDirectory() as tmp, ChatServer(reply_fn=reply) as server, \
            Store(Path(tmp) / "state.db") as store:
        workspace = _workspace(Path(tmp) / "repo", turns)
        contract = contract_from_flags(OBJECTIVE, checks=["tests=python -m unittest -q"], budget_turns=turns,
                                       budget_tokens=10**9, no_progress_turns=10**6)
        model = ModelSettings(provider="custom", wire_api="chat", model=MODEL, base_url=server.base_url,
                              context_window=window)
        goal = control.set_goal(store, workspace, contract, GoalSettings(model=model, run=RunSettings()),
                                replace_existing=True)
        started = time.perf_counter()
        runner = Runner(store, store.get_goal_by_id(goal.goal_id), OpenAIChatModel(MODEL, server.base_url, "k"),
                        workspace)
        asyncio.run(runner.run())
        elapsed = time.perf_counter() - started
        compactions = len(store.events(goal.thread_id, goal_id=goal.goal_id, kinds=[CompactedEvent]))
        return list(server.requests), compactions, elapsed


def naive_requests(turns: int, workspace_text: str) -> list[dict[str, Any]]:
    """The requests an append-everything loop builds for the same work."""
    tools = [{"type": "function", "function": {"name": s.name, "description": s.description,
                                               "parameters": s.parameters}} for s in default_registry().specs]
    contract = contract_block(contract_from_flags(OBJECTIVE, checks=["tests=python -m unittest -q"]))
    lines = workspace_text.splitlines()
    messages: list[dict[str, Any]] = [{"role": "system", "content": render("system")},
                                      {"role": "user", "content": contract}]
    requests = []
    for turn in range(1, turns + 1):
        messages.append({"role": "user", "content": f"Continue (turn {turn}).\n\n{contract}\n\n"
                                                    "Evidence: check `tests`: FAIL (exit 1)"})
        requests.append({"messages": list(messages), "tools": tools})
        call = {"id": f"c{turn}", "type": "function",
                "function": {"name": "read_file", "arguments": json.dumps(_read(turn).arguments)}}
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        start = turn * LINES_PER_SLICE
        messages.append({"role": "tool", "tool_call_id": f"c{turn}",
                         "content": "\n".join(lines[start:start + LINES_PER_SLICE])})
        requests.append({"messages": list(messages), "tools": tools})
        messages.append({"role": "assistant", "content": "Read it."})
    return requests


def figures(name: str, requests: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Characters per request, the total, tokens of the largest, and the prefix share between requests."""
    import quicktok  # type: ignore[import-untyped]  # exact o200k_base, for measuring only

    counter = quicktok.get_encoding("o200k_base")
    sizes = [len(json.dumps(r["messages"])) + len(json.dumps(r.get("tools", []))) for r in requests]
    shares = []
    for before, after in itertools.pairwise(requests):
        old, new = json.dumps(before["messages"]), json.dumps(after["messages"])
        shares.append(1.0 if new.startswith(old) else _common(old, new) / len(old))
    largest = max(range(len(requests)), key=lambda i: sizes[i])
    biggest = requests[largest]
    return {"loop": name, "requests": len(requests), "first_chars": sizes[0],
            "median_chars": int(statistics.median(sizes)), "max_chars": max(sizes), "total_chars": sum(sizes),
            "max_tokens": len(counter.encode_ordinary(json.dumps(biggest["messages"])
                                                      + json.dumps(biggest.get("tools", [])))),
            "prefix_share_median": statistics.median(shares), "prefix_share_min": min(shares),
            "prefix_share_below_099": sum(share < 0.99 for share in shares)}


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--window", type=int, default=128_000, help="the model's context window in tokens")
    args = parser.parse_args()
    requests, compactions, elapsed = goalkeeper_requests(args.turns, args.window)
    summaries = [r for r in requests if r["messages"][-1]["content"] == render("compact")]
    main_requests = [r for r in requests if r not in summaries]
    with tempfile.TemporaryDirectory() as tmp:
        text = (_workspace(Path(tmp) / "repo", args.turns) / "notes.txt").read_text()
    ours = figures("goalkeeper", main_requests)
    naive = figures("naive append-everything", naive_requests(args.turns, text))
    print(f"{args.turns} turns, window {args.window:,} tokens (compaction at 80%), model name {MODEL}")
    print(f"goalkeeper: {compactions} compactions ({len(summaries)} summary requests), run took {elapsed:.1f} s")
    keys = ["requests", "first_chars", "median_chars", "max_chars", "total_chars", "max_tokens",
            "prefix_share_median", "prefix_share_min", "prefix_share_below_099"]
    print(f"{'':24}" + "".join(f"{k:>24}" for k in ("goalkeeper", "naive")))
    for key in keys:
        left, right = ours[key], naive[key]
        show = (lambda v: f"{v:.4f}") if isinstance(left, float) else (lambda v: f"{v:,}")
        print(f"{key:24}{show(left):>24}{show(right):>24}")
    print("(goalkeeper's prefix-share figures include the request after each compaction, where the history "
          "is replaced on purpose)")


if __name__ == "__main__":
    main()
