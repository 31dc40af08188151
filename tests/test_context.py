"""Requests stay lean and cache-stable, and compaction keeps the goal (issue 5).

Every test captures each request with a real local Chat Completions server (chat_server.py) and drives a
real goal over a real git repository; only the model's answers are scripted, by the server.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chat_server import ChatServer, Completion, Failure, ToolCallReply, UsageReply
from goalkeeper.context.handoff import Facts, fallback_summary, handoff_message
from goalkeeper.context.history import Conversation
from goalkeeper.context.prompts import render
from goalkeeper.context.render import contract_block
from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.events import CheckpointEvent, payload_of
from goalkeeper.goals import control
from goalkeeper.models.base import Model, ModelRequest, ModelResponse, ToolCall
from goalkeeper.models.base import Usage as ModelUsage
from goalkeeper.models.openai_chat import OpenAIChatModel
from goalkeeper.models.scripted import ScriptedError, ScriptedModel, ScriptStep, is_summary_request
from goalkeeper.run.runner import Runner, RunResult
from goalkeeper.spec.settings import GoalSettings, ModelSettings, RunSettings
from goalkeeper.store import Goal, Store
from scenario import TESTS, call, events, run, sample_repo

MODEL = "gpt-4.1-mini"
"""An OpenAI-family name: the tests measure its requests exactly (o200k_base), the harness estimates them."""
WINDOW = 16_000
OBJECTIVE = ("Fix apply_discount in cart.py so 10 means 10%. Do not change the tests. "
             "Do not add dependencies. Do not touch notes.txt.")
KEEP_GREEN = 'python -c "import cart"'
PROTECT = "tests/**"
SUMMARY = "\n".join(f"## {name}\nwhat the model remembers about {name.lower()}"
                    for name in ("Goal", "Constraints", "Decisions", "Failed approaches", "Current state",
                                 "Next step"))
LINES_PER_SLICE = 64
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo",
         "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform")


def _repo(tmp_path: Path, slices: int) -> Path:
    """The sample repo plus notes.txt: `slices` distinct ~5 KB slices for read_file to page through."""
    workspace = sample_repo(tmp_path)
    lines = [f"{n:06d} " + " ".join(WORDS[(n * 7 + k * 3) % len(WORDS)] for k in range(11))
             for n in range(slices * LINES_PER_SLICE)]
    (workspace / "notes.txt").write_text("\n".join(lines) + "\n")
    subprocess.run(["git", "add", "notes.txt"], cwd=workspace, check=True)
    subprocess.run(["git", "commit", "-qm", "notes"], cwd=workspace, check=True)
    return workspace


def _goal(store: Store, workspace: Path, server: ChatServer, turns: int) -> Goal:
    contract = contract_from_flags(OBJECTIVE, checks=[f"tests={TESTS}"], keep_green=[KEEP_GREEN], protect=[PROTECT],
                                   budget_turns=turns, budget_tokens=50_000_000, no_progress_turns=10_000)
    model = ModelSettings(provider="custom", wire_api="chat", model=MODEL, base_url=server.base_url,
                          context_window=WINDOW)
    settings = GoalSettings(model=model, run=RunSettings(heartbeat_s=0.2, control_poll_s=0.05))
    return control.set_goal(store, workspace, contract, settings, replace_existing=True)


def _run(store: Store, goal: Goal, workspace: Path, server: ChatServer) -> RunResult:
    model = OpenAIChatModel(MODEL, server.base_url, "key")
    return asyncio.run(Runner(store, store.get_goal_by_id(goal.goal_id), model, workspace).run())


def _is_summary_request(body: dict[str, Any]) -> bool:
    last = body["messages"][-1]
    return bool(last["role"] == "user" and last["content"] == render("compact"))


def _read(slice_number: int) -> ToolCallReply:
    return ToolCallReply("read_file", {"path": "notes.txt", "offset": 1 + slice_number * LINES_PER_SLICE,
                                       "limit": LINES_PER_SLICE})


def _failed_approach(number: int) -> str:
    return f"approach {number}: rounding the total with int() failed because the test expects cents"


def _agent(failing_at: dict[int, int], complete_at: int | None = None) -> Callable[[dict[str, Any]], Completion]:
    """A model that reads one new ~5 KB slice per turn, then ends the turn; at the given openings it also
    records a failed approach in its checkpoint, or asks for completion (the checks still fail). It reports
    each request's o200k_base size as its input tokens, as OpenAI does; the harness learns from that."""
    openings = 0

    def reply(body: dict[str, Any]) -> Completion:
        nonlocal openings
        usage = UsageReply(_tokens(body), 8)
        if _is_summary_request(body):
            return Completion(text=SUMMARY, usage=usage)
        if body["messages"][-1]["role"] == "tool":
            return Completion(text="Read it.", usage=usage)
        openings += 1
        calls = [_read(openings)]
        if openings in failing_at:
            calls.append(ToolCallReply("checkpoint", {"done": "tried a rounding change", "remaining": "the fix",
                                                      "next": "try another way",
                                                      "failed": _failed_approach(failing_at[openings])}))
        if openings == complete_at:
            calls = [ToolCallReply("update_goal", {"status": "complete", "summary": "I believe it is fixed"})]
        return Completion(tool_calls=tuple(calls), usage=usage)

    return reply


@functools.cache
def _o200k() -> Any:
    # The exact tokenizer, as a measuring instrument: the harness itself loads none.
    import quicktok  # type: ignore[import-untyped]

    return quicktok.get_encoding("o200k_base")


def _tokens(body: dict[str, Any]) -> int:
    """The request's size by o200k_base, JSON and all (an upper bound on what the model is sent)."""
    return len(_o200k().encode_ordinary(json.dumps(body["messages"]) + json.dumps(body.get("tools", []))))


def _prefix_share(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> float:
    """The share of the earlier request's messages (as characters) the later one starts with."""
    old, new = json.dumps(before), json.dumps(after)
    same = 0
    for a, b in zip(old, new, strict=False):
        if a != b:
            break
        same += 1
    return same / len(old)


@pytest.mark.slow
def test_a_300_turn_run_stays_under_the_window_and_every_compaction_keeps_the_goal(tmp_path: Path) -> None:
    workspace = _repo(tmp_path, 320)
    failing_at = {25: 1, 90: 2, 180: 3}
    with ChatServer(reply_fn=_agent(failing_at, complete_at=60)) as server, Store() as store:
        goal = _goal(store, workspace, server, turns=300)
        result = _run(store, goal, workspace, server)
        bodies = list(server.requests)
        compacted = events(store, goal, "compacted")
        responses = events(store, goal, "model_response")
        trail = [(r.event.kind, payload_of(r.event)) for r in events(store, goal)
                 if r.event.kind in ("compacted", "turn_started", "turn_ended")]
    assert result.status == "budget_limited", result
    main = [i for i, body in enumerate(bodies) if not _is_summary_request(body)]
    summaries = [i for i, body in enumerate(bodies) if _is_summary_request(body)]
    assert len(main) == len(responses) >= 600  # the store keeps every response, compactions or not
    assert len(summaries) == len(compacted) >= 10

    # Every request fits the window, counted exactly.
    assert max(_tokens(body) for body in bodies) < WINDOW

    # After each compaction the next request has the objective, every constraint and every failed approach.
    failed_so_far: list[str] = []
    for i in summaries:
        nxt = json.loads(json.dumps(bodies[i + 1]["messages"]))
        text = "\n".join(m.get("content") or "" for m in nxt)
        handoff = nxt[2]["content"]
        assert handoff.startswith("# Context compacted") and SUMMARY in handoff
        for needle in (OBJECTIVE, KEEP_GREEN, PROTECT):
            assert needle in text and needle in handoff
        earlier = "\n".join(m.get("content") or "" for m in bodies[i]["messages"])
        failed_so_far = [_failed_approach(n) for n in failing_at.values() if _failed_approach(n) in earlier
                         or _failed_approach(n) in failed_so_far]
        for approach in failed_so_far:
            assert approach in handoff
        if "completion was requested and refused" in earlier:
            assert "completion was requested and refused" in handoff
    assert len(failed_so_far) == 3

    # Between compactions each request starts with the one before it.
    shares = [_prefix_share(bodies[a]["messages"], bodies[b]["messages"])
              for a, b in itertools.pairwise(main) if not any(a < s < b for s in summaries)]
    assert len(shares) > 500 and min(shares) >= 0.99

    # Some compaction fell inside a turn, and that turn went on to end normally.
    open_turn: int | None = None
    mid_turn = []
    for kind, payload in trail:
        if kind == "turn_started":
            open_turn = payload["turn"]
        elif kind == "turn_ended":
            open_turn = None
        elif open_turn is not None:
            mid_turn.append(open_turn)
    assert mid_turn


def test_continuations_do_not_grow_while_nothing_changes(tmp_path: Path) -> None:
    workspace = _repo(tmp_path, 30)
    with ChatServer(reply_fn=_agent({})) as server, Store() as store:
        goal = _goal(store, workspace, server, turns=24)
        result = _run(store, goal, workspace, server)
        bodies = list(server.requests)
    assert result.status == "budget_limited"
    continuations = [body["messages"][-1]["content"] for body in bodies
                     if body["messages"][-1]["role"] == "user" and "Continue toward the goal" in
                     body["messages"][-1]["content"]]
    # Every turn's continuation was sent; one that opens just as compaction is due goes out with the summary
    # request, and the compacted context carries it (where compaction lands depends on the estimate).
    sent = {int(n) for body in bodies for m in body["messages"] if m["role"] == "user"
            for n in re.findall(r"Continue toward the goal \(turn (\d+)\)", str(m["content"]))}
    assert sent == set(range(1, 25)) and len(continuations) >= 20
    # The first shows the baseline evidence; after that only what changed, and nothing did.
    assert "no change since your last turn" in continuations[1]
    shapes = {re.sub(r"\d[\d,]*", "#", text) for text in continuations[1:]}
    assert len(shapes) == 1, shapes
    assert max(len(text) for text in continuations[1:]) <= len(continuations[1]) + 1
    assert all(OBJECTIVE not in text for text in continuations)  # the contract sits once, in the prefix


def test_a_failed_summary_request_is_replaced_by_the_harness_handoff(tmp_path: Path) -> None:
    workspace = _repo(tmp_path, 60)
    agent = _agent({3: 1})

    def reply(body: dict[str, Any]) -> Completion | Failure:
        if _is_summary_request(body):
            return Failure(400, "the summary model is down", "bad_request", "invalid_request_error")
        return agent(body)

    with ChatServer(reply_fn=reply) as server, Store() as store:
        goal = _goal(store, workspace, server, turns=40)
        result = _run(store, goal, workspace, server)
        bodies = list(server.requests)
        failed = events(store, goal, "compaction_failed")
        compacted = events(store, goal, "compacted")
        trimmed = events(store, goal, "context_trimmed")
    assert result.status == "budget_limited"
    # Every failed summary request was answered by a compaction of the harness's own, and nothing was trimmed.
    summaries = [i for i, body in enumerate(bodies) if _is_summary_request(body)]
    assert len(summaries) == len(failed) == len(compacted) >= 2 and not trimmed
    assert all(payload_of(r.event)["model"] == "harness" for r in compacted)
    assert all("the summary model is down" in payload_of(r.event)["why"] for r in failed)
    for i in summaries:
        handoff = bodies[i + 1]["messages"][2]["content"]
        assert handoff.startswith("# Context compacted") and "You wrote no usable hand-off summary" in handoff
        assert OBJECTIVE in handoff and _failed_approach(1) in handoff
        assert _tokens(bodies[i + 1]) < _tokens(bodies[i]) / 2
    assert max(_tokens(body) for body in bodies) < WINDOW


def test_a_restart_rebuilds_the_compacted_conversation(tmp_path: Path) -> None:
    workspace = _repo(tmp_path, 40)
    with ChatServer(reply_fn=_agent({5: 1})) as server, Store() as store:
        goal = _goal(store, workspace, server, turns=20)
        _run(store, goal, workspace, server)
        record = store.get_goal_by_id(goal.goal_id)
        last = server.requests[-1]
        contract = contract_block(contract_from_flags(OBJECTIVE, checks=[f"tests={TESTS}"], keep_green=[KEEP_GREEN],
                                                      protect=[PROTECT], budget_turns=20,
                                                      budget_tokens=50_000_000, no_progress_turns=10_000))
        rebuilt = Conversation.from_events(render("system"), contract, store.events(record.thread_id,
                                                                                    goal_id=record.goal_id))
        compacted = events(store, goal, "compacted")
    assert compacted
    assert rebuilt.history[0].content == payload_of(compacted[-1].event)["handoff"]
    sent = [m["content"] for m in last["messages"]]
    assert [m.content for m in rebuilt.messages()][:len(sent)] == sent


def test_the_first_request_of_a_goal_is_under_18000_characters(tmp_path: Path) -> None:
    workspace = _repo(tmp_path, 2)
    with ChatServer([Completion(tool_calls=(ToolCallReply("update_goal", {"status": "blocked",
                                                                          "blocker": "demo", "report": "r"}),))]
                    ) as server, Store() as store:
        goal = _goal(store, workspace, server, turns=3)
        _run(store, goal, workspace, server)
        first = server.requests[0]
    prefix = first["messages"][:2]
    size = sum(len(m["content"]) for m in prefix) + len(json.dumps(first["tools"]))
    assert prefix[0]["role"] == "system" and OBJECTIVE in prefix[1]["content"]
    assert size < 18_000, size


# ---------------------------------------------------------------- a model that will not summarise


class SummaryRefuser:
    """The scripted model, except that it answers every compaction request with a tool call (and `text`)."""

    def __init__(self, inner: ScriptedModel, text: str = "") -> None:
        self.inner, self.name, self.text = inner, inner.name, text

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if not is_summary_request(request):
            return await self.inner.complete(request)
        self.inner.requests.append(request)
        call = ToolCall("call_summary", "read_file", json.dumps({"path": "notes.txt"}))
        return ModelResponse(self.text, (call,), ModelUsage(input_tokens=1_000, output_tokens=20), self.name,
                             "tool_calls")

    async def aclose(self) -> None:
        """Nothing to release."""


SCRIPTED_WINDOW = 8_000


def _scripted_reader(summary: str | None = None, summary_error: ScriptedError | None = None) -> ScriptedModel:
    """Each turn reads the next ~5 KB slice of notes.txt, records a failed approach in turn 2, then ends.

    Its answers report no input tokens (the scripted estimate leaves the tool schemas out, which would teach
    the harness too many characters a token), so the harness sizes requests at its cautious 3.5."""
    usage = ModelUsage(output_tokens=5)
    steps: list[ScriptStep] = []
    for number in range(1, 41):
        calls = [call("read_file", path="notes.txt", offset=1 + number * LINES_PER_SLICE, limit=LINES_PER_SLICE)]
        if number == 2:
            calls.append(call("checkpoint", done="tried rounding", remaining="the fix", next="try Decimal",
                              failed=_failed_approach(7)))
        steps += [ScriptStep(tool_calls=tuple(calls), usage=usage), ScriptStep(text="Read it.", usage=usage)]
    return ScriptedModel(steps, summary=summary, summary_error=summary_error)


@pytest.mark.parametrize("refusal", ["tool call", "tool call and chatter", "empty text", "error"])
def test_a_refused_compaction_still_bounds_the_context_with_one_summary_request(tmp_path: Path,
                                                                               refusal: str) -> None:
    workspace = _repo(tmp_path, 45)
    scripted_model = _scripted_reader(summary="" if refusal == "empty text" else None,
                                      summary_error=ScriptedError("bad_request", "no summaries here", 400)
                                      if refusal == "error" else None)
    model: Model = scripted_model
    if refusal.startswith("tool call"):
        model = SummaryRefuser(scripted_model, "Let me look at the notes first." if "chatter" in refusal else "")
    with Store() as store:
        contract = contract_from_flags(OBJECTIVE, checks=[f"tests={TESTS}"], keep_green=[KEEP_GREEN],
                                       protect=[PROTECT], budget_turns=12, no_progress_turns=10_000)
        settings = GoalSettings(model=ModelSettings(provider="scripted", model=MODEL, script="inline",
                                                    context_window=SCRIPTED_WINDOW),
                                run=RunSettings(heartbeat_s=0.2, control_poll_s=0.05))
        goal = control.set_goal(store, workspace, contract, settings, replace_existing=True)
        result = run(store, goal, workspace, model)
        failed = events(store, goal, "compaction_failed")
        compacted = events(store, goal, "compacted")
    requests = scripted_model.requests
    assert result.status == "budget_limited"
    summaries = [i for i, request in enumerate(requests) if is_summary_request(request)]
    # One summary request per compaction, each answered by the harness's own hand-off.
    assert len(summaries) == len(failed) == len(compacted) >= 1
    for i in summaries:
        nxt = requests[i + 1]
        assert not is_summary_request(nxt)
        handoff = nxt.messages[2].content
        assert "You wrote no usable hand-off summary" in handoff and OBJECTIVE in handoff
        assert _failed_approach(7) in handoff and "try Decimal" in handoff
        assert _request_tokens(nxt) < SCRIPTED_WINDOW // 2 < _request_tokens(requests[i])
    assert max(_request_tokens(request) for request in requests) < SCRIPTED_WINDOW


def _request_tokens(request: ModelRequest) -> int:
    """A request's size as the scripted model reports it (the window is its own): four characters a token."""
    return sum(len(m.content) + sum(len(c.arguments) for c in m.tool_calls) for m in request.messages) // 4


def test_the_handoff_fits_its_share_however_much_the_model_wrote_in_its_checkpoints() -> None:
    facts = Facts()
    for turn in range(1, 201):  # a hostile model: every checkpoint as long as a field may be
        note = {name: f"{name} {turn} " + "x" * 5_000 for name in ("done", "remaining", "next", "failed")}
        facts.apply(CheckpointEvent(turn=turn, turn_kind="continuation", note=note, commands=[], tokens=0,
                                    tree_hash=None, files_touched=[f"src/file_{turn}_{n}.py" for n in range(20)]))
    assert len(facts.checkpoints) == 20 and facts.checkpoint_count == 200  # the fold keeps only the newest

    handoff = handoff_message(fallback_summary(facts, "the summary came back empty"), OBJECTIVE, facts,
                              "- check `tests`: FAIL (exit 1)", responses=400, turn=200, max_chars=12_000)

    assert len(handoff) <= 12_000
    assert OBJECTIVE in handoff and "next 200" in handoff  # the newest checkpoint's next step leads
    assert "earlier checkpoints are in the store" in handoff and "earlier failed approaches" in handoff
