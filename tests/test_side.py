"""`gk side`: a read-only fork of the goal's thread, asked while a runner works, that the goal never sees."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

from chat_server import ChatServer, Completion, Failure, ToolCallReply, UsageReply
from goalkeeper.context.history import Conversation
from goalkeeper.context.prompts import render
from goalkeeper.context.render import contract_block
from goalkeeper.events import SideEvent, payload_of
from goalkeeper.models.base import Message, ToolCall
from goalkeeper.sessions.side import fork_history
from goalkeeper.store import EventRecord, Store
from goalkeeper.tools.registry import READ_ONLY_TOOL_NAMES, default_registry
from scenario import FIX_PATCH, TESTS, event_class, gk, gk_popen, sample_repo

QUESTION = "what file holds the discount code?"
ANSWER = "cart.py holds it: apply_discount multiplies by the raw percent."
RELEASE = ".git/side-done"
#: Holds the runner inside one tool call until the test has asked its side question.
WAIT_FOR_SIDE = f"for i in $(seq 1 2400); do [ -e {RELEASE} ] && break; sleep 0.05; done; echo released"

MAIN = [
    Completion(tool_calls=(ToolCallReply("shell", {"command": WAIT_FOR_SIDE}),),
               usage=UsageReply(prompt_tokens=1000, completion_tokens=50, cached_tokens=800)),
    Completion(tool_calls=(ToolCallReply("apply_patch", {"patch": FIX_PATCH}),),
               usage=UsageReply(prompt_tokens=1100, completion_tokens=60, cached_tokens=900)),
    Completion(tool_calls=(ToolCallReply("update_goal", {"status": "complete", "summary": "fixed"}),),
               usage=UsageReply(prompt_tokens=1200, completion_tokens=20, cached_tokens=1000)),
]
MAIN_CHARGED = (1000 - 800 + 50) + (1100 - 900 + 60) + (1200 - 1000 + 20)
SIDE = [
    Completion(tool_calls=(ToolCallReply("read_file", {"path": "cart.py"}),),
               usage=UsageReply(prompt_tokens=50_000, completion_tokens=10, cached_tokens=40_000)),
    Completion(text=ANSWER, usage=UsageReply(prompt_tokens=60_000, completion_tokens=20, cached_tokens=50_000)),
]


def tool_names(body: dict[str, Any]) -> set[str]:
    return {tool["function"]["name"] for tool in body.get("tools", [])}


def wait_for_event(store: Store, kind: str, timeout_s: float = 60) -> EventRecord:
    """The first event of `kind` in any thread, once the runner has committed it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for thread in store.list_threads():
            if found := store.events(thread.thread_id, kinds=[event_class(kind)]):
                return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no {kind} event within {timeout_s}s")


def test_side_question_during_a_run_leaves_the_main_thread_and_its_budget_untouched(
        tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    main, side = list(MAIN), list(SIDE)

    def reply(body: dict[str, Any]) -> Completion:
        queue = main if "shell" in tool_names(body) else side
        return queue.pop(0) if queue else Completion(text="nothing more")

    with ChatServer(reply_fn=reply) as server, Store() as store:
        runner = gk_popen("exec", "Fix the discount bug", "--check", f"tests={TESTS}", "--base-url", server.base_url,
                          "--model", "test-model", "--cwd", str(workspace), home=goalkeeper_home)
        try:
            wait_for_event(store, "tool_intent")  # the runner is inside its first tool call now
            asked = gk("side", QUESTION, "--cwd", str(workspace), home=goalkeeper_home)
        finally:
            (workspace / RELEASE).touch()
        output, _ = runner.communicate(timeout=120)
        bodies = list(server.requests)
        goal = store.get_goal(store.list_threads()[0].thread_id)
        assert goal is not None
        events = store.events(goal.thread_id, goal_id=goal.goal_id)

    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert ANSWER in asked.stdout and "not charged to the goal's budget" in asked.stdout
    assert runner.returncode == 0, output  # achieved: the runner finished normally

    main_bodies = [b for b in bodies if "shell" in tool_names(b)]
    side_bodies = [b for b in bodies if "shell" not in tool_names(b)]
    assert len(main_bodies) == 3 and len(side_bodies) == 2
    # The side question happened while the runner's tool call was open: after its first request, before its second.
    assert bodies.index(main_bodies[0]) < bodies.index(side_bodies[0]) < bodies.index(main_bodies[1])

    # (a) The fork carries the main prefix byte for byte, the history so far, and the read-only tools only.
    first = side_bodies[0]
    assert json.dumps(first["messages"][:2]) == json.dumps(main_bodies[0]["messages"][:2])
    assert first["messages"][:len(main_bodies[0]["messages"])] == main_bodies[0]["messages"]
    assert tool_names(first) == set(READ_ONLY_TOOL_NAMES) & set(default_registry().tools)
    main_specs = {t["function"]["name"]: t for t in main_bodies[0]["tools"]}
    assert all(main_specs[t["function"]["name"]] == t for t in first["tools"])
    # The runner's open shell call has no result yet, so the fork leaves it out.
    assert not any(m.get("tool_calls") for m in first["messages"])
    assert QUESTION in first["messages"][-1]["content"]

    # (b) Each main request is the previous one plus only the main thread's own new messages.
    for before, after in itertools.pairwise(main_bodies):
        assert after["messages"][:len(before["messages"])] == before["messages"]
    added = main_bodies[1]["messages"][len(main_bodies[0]["messages"]):]
    assert [m["role"] for m in added] == ["assistant", "tool"]
    assert added[0]["tool_calls"][0]["function"]["name"] == "shell"
    assert not any(QUESTION in json.dumps(b) or ANSWER in json.dumps(b) for b in main_bodies)

    # (c) The answer is stored as one side event, with the tool call it made.
    [stored] = [e for e in events if e.event.kind == "side"]
    assert stored.event.actor == "user" and payload_of(stored.event)["answer"] == ANSWER
    assert payload_of(stored.event)["question"] == QUESTION
    recorded = payload_of(stored.event)
    assert recorded["tool_calls"] == [{"name": "read_file", "arguments": '{"path": "cart.py"}', "ok": True}]
    assert recorded["usage"]["input_tokens"] == 110_000 and recorded["model"] == "test-model"

    # (d) The goal was charged for its own requests only, and ended achieved.
    assert goal.state.status == "achieved"
    assert goal.state.spent.tokens == MAIN_CHARGED
    assert goal.state.spent.cached_tokens == 800 + 900 + 1000

    # A runner rebuilding this thread (after a restart, say) never reads the side event into its context.
    rebuilt = Conversation.from_events(render("system"), contract_block(goal.contract), events)
    assert not any(QUESTION in m.content or ANSWER in m.content for m in rebuilt.messages())


def call(call_id: str, name: str = "read_file") -> ToolCall:
    return ToolCall(call_id, name, "{}")


def test_fork_drops_a_leading_tool_result_and_calls_without_results() -> None:
    history = [
        Message("user", "open turn 1"),
        Message("assistant", "", tool_calls=(call("a"),)),
        Message("tool", "result a", tool_call_id="a", name="read_file"),
        Message("user", "open turn 2"),
        Message("assistant", "reading two files", tool_calls=(call("b"), call("c"))),
        Message("tool", "result b", tool_call_id="b", name="read_file"),
        Message("assistant", "", tool_calls=(call("d", "shell"),)),  # the runner is running it right now
    ]
    forked = fork_history(history, newest=5)  # the window starts at a tool result whose call was cut off
    assert [m.role for m in forked] == ["user", "assistant", "tool"]
    assert forked[1].content == "reading two files" and [c.id for c in forked[1].tool_calls] == ["b"]
    assert forked[2].tool_call_id == "b"
    assert fork_history(history, newest=len(history))[:3] == history[:3]


def test_side_question_without_a_goal_says_how_to_set_one(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    done = gk("side", QUESTION, "--cwd", str(workspace), "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
              home=goalkeeper_home)
    assert done.returncode == 4
    assert "no goal" in done.stderr and "gk goal" in done.stderr


def test_a_provider_failure_is_one_clear_error_and_stores_nothing(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    with ChatServer([Failure.unauthorized()]) as server:
        assert gk("goal", "Fix it", "--unverified", "--base-url", server.base_url, "--model", "m", "--cwd",
                  str(workspace), home=goalkeeper_home).returncode == 0
        done = gk("side", QUESTION, "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 4 and "401" in done.stderr and "OPENAI_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr
    with Store() as store:
        assert not store.events(store.list_threads()[0].thread_id, kinds=[SideEvent])
