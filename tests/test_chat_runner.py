"""A whole goal over the Chat Completions wire format: a real local HTTP server, the official SDK, a real repo."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from chat_server import ChatServer, Completion, Failure, ToolCallReply, UsageReply
from goalkeeper.errors import ProviderError, TransientProviderError
from goalkeeper.events import CompactedEvent, ContextTrimmedEvent, payload_of
from goalkeeper.models.base import ModelRequest, ModelResponse, Usage
from goalkeeper.models.openai_chat import OpenAIChatModel
from goalkeeper.run.runner import Runner
from goalkeeper.spec.settings import GoalSettings, ModelSettings, RunSettings
from goalkeeper.store import Store
from scenario import FIX_PATCH, TESTS, events, new_goal, sample_repo

FIX = [
    Completion(text="", tool_calls=(ToolCallReply("apply_patch", {"patch": FIX_PATCH}),),
               usage=UsageReply(prompt_tokens=1200, completion_tokens=80, cached_tokens=1000)),
    Completion(text="", tool_calls=(
        ToolCallReply("shell", {"command": TESTS}),
        ToolCallReply("checkpoint", {"done": "fixed", "remaining": "none", "next": "done"})),
               usage=UsageReply(prompt_tokens=1500, completion_tokens=60, cached_tokens=1200)),
    Completion(text="", tool_calls=(ToolCallReply("update_goal", {"status": "complete", "summary": "fixed"}),),
               usage=UsageReply(prompt_tokens=1700, completion_tokens=30, cached_tokens=1500)),
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streaming"])
def test_goal_over_chat_completions_is_achieved_and_charged_as_reported(tmp_path: Path, stream: bool) -> None:
    workspace = sample_repo(tmp_path)
    with ChatServer(FIX) as server, Store() as store:
        goal = new_goal(store, workspace)
        model = OpenAIChatModel("test-model", server.base_url, "key", stream=stream)
        result = asyncio.run(Runner(store, store.get_goal_by_id(goal.goal_id), model, workspace).run())
        state = store.get_goal_by_id(goal.goal_id).state
        bodies = list(server.requests)
    assert result.status == "achieved"
    # Charged = non-cached input + output, exactly as the server reported it.
    assert state.spent.tokens == (200 + 80) + (300 + 60) + (200 + 30)
    assert state.spent.cached_tokens == 1000 + 1200 + 1500
    assistant = [m for m in bodies[1]["messages"] if m["role"] == "assistant"]
    assert assistant[0]["content"] == "" and assistant[0]["tool_calls"]  # never null
    tools = {t["function"]["name"] for t in bodies[0]["tools"]}
    assert {"shell", "read_file", "write_file", "apply_patch", "search", "get_goal", "update_goal",
            "checkpoint"} <= tools
    assert all(b.get("stream", False) == stream for b in bodies)


def test_unreachable_server_is_retried_then_the_goal_pauses(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    with Store() as store:
        goal = new_goal(store, workspace)
        settings = GoalSettings(model=ModelSettings(model="m", base_url="http://127.0.0.1:9/v1", max_retries=2,
                                                    retry_max_total_s=10), run=RunSettings(control_poll_s=0.05))
        store.commit(goal.goal_id, [], settings=settings)
        model = OpenAIChatModel("m", "http://127.0.0.1:9/v1", "key", timeout_s=2)
        result = asyncio.run(Runner(store, store.get_goal_by_id(goal.goal_id), model, workspace).run())
        retries = events(store, goal, "provider_retry")
    assert (result.status, result.reason) == ("paused", "provider_unavailable")
    assert len(retries) == 2


def test_rate_limit_is_retried_after_the_servers_delay_and_the_run_goes_on(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    with ChatServer([Failure.rate_limited(retry_after="0.2"), *FIX]) as server, Store() as store:
        goal = new_goal(store, workspace)
        model = OpenAIChatModel("test-model", server.base_url, "key")
        result = asyncio.run(Runner(store, store.get_goal_by_id(goal.goal_id), model, workspace).run())
        retries = [json.dumps(payload_of(e.event)) for e in events(store, goal, "provider_retry")]
    assert result.status == "achieved"
    assert len(retries) == 1 and "0.2" in retries[0]


def run_against(server: ChatServer, workspace: Path, store: Store, **flags: Any) -> tuple[str | None, str, str]:
    goal = new_goal(store, workspace, **flags)
    model = OpenAIChatModel("test-model", server.base_url, "key", api_key_env="TEST_KEY")
    result = asyncio.run(Runner(store, store.get_goal_by_id(goal.goal_id), model, workspace).run())
    return result.status, result.reason, goal.goal_id


def test_context_too_long_compacts_the_history_and_retries(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    big = Completion(text="", tool_calls=(ToolCallReply("shell", {"command": "python -c \"print('x' * 9000)\""}),))
    # The summary request is as long as the refused one, so the provider refuses it too: the harness writes it.
    too_long = Failure.context_length_exceeded()
    with ChatServer([big, too_long, too_long, *FIX]) as server, Store() as store:
        status, _, goal_id = run_against(server, workspace, store)
        thread = store.get_goal_by_id(goal_id).thread_id
        compacted = store.events(thread, kinds=[CompactedEvent])
        trimmed = store.events(thread, kinds=[ContextTrimmedEvent])
        refused, retried = server.requests[1], server.requests[3]
    assert status == "achieved" and len(compacted) == 1 and not trimmed

    def longest(body: dict[str, Any]) -> int:
        return max(len(str(m.get("content") or "")) for m in body["messages"])

    assert longest(refused) > 9000
    handoff = compacted[0].event.handoff  # type: ignore[union-attr]
    assert longest(retried) < 9000 and handoff in [m.get("content") for m in retried["messages"]]


def test_context_too_long_with_nothing_to_cut_pauses(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    with ChatServer([Failure.context_length_exceeded()]) as server, Store() as store:
        status, reason, _ = run_against(server, workspace, store)
    assert (status, reason) == ("paused", "context_too_long")


def test_rejected_api_key_pauses_and_says_which_variable(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    with ChatServer([Failure.unauthorized()]) as server, Store() as store:
        with pytest.raises(ProviderError) as raised:
            run_against(server, workspace, store)
        goal = store.get_goal(store.list_threads()[0].thread_id)
    assert raised.value.hint is not None and "TEST_KEY" in raised.value.hint
    assert goal is not None and (goal.state.status, goal.state.reason) == ("paused", "provider_error")


class FailsOnceWithUsage:
    """A provider whose first attempt fails after reporting usage (a stream cut after its usage chunk)."""

    name = "test-model"

    def __init__(self, then: OpenAIChatModel) -> None:
        self.then, self.failed = then, False

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if not self.failed:
            self.failed = True
            raise TransientProviderError("stream cut", usage=Usage(input_tokens=500, output_tokens=40))
        return await self.then.complete(request)

    async def aclose(self) -> None:
        await self.then.aclose()


def test_usage_reported_by_a_failed_attempt_is_still_charged(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    with ChatServer(FIX) as server, Store() as store:
        goal = new_goal(store, workspace)
        model = FailsOnceWithUsage(OpenAIChatModel("test-model", server.base_url, "key"))
        result = asyncio.run(Runner(store, store.get_goal_by_id(goal.goal_id), model, workspace).run())
        spent = store.get_goal_by_id(goal.goal_id).state.spent.tokens
    assert result.status == "achieved"
    assert spent == 540 + (200 + 80) + (300 + 60) + (200 + 30)
