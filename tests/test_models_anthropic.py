"""What only the Anthropic Messages wire format does (cache marks, usage counts, its own failures), against a
real local server; the contract every provider keeps is test_providers.py."""

from __future__ import annotations

import asyncio
from itertools import pairwise
from types import SimpleNamespace
from typing import Any, Literal

import pytest

from anthropic_server import (
    Answer,
    Failure,
    MessagesServer,
    Reply,
    StreamError,
    ToolUseReply,
    Truncated,
    UsageReply,
)
from goalkeeper.errors import ContextLengthError, ProviderError, TransientProviderError
from goalkeeper.models.anthropic_messages import AnthropicModel, MessagesUsage, usage_from
from goalkeeper.models.base import Message, ModelRequest, ModelResponse, ToolCall, ToolSpec, Usage

SHELL = ToolSpec("shell", "Run a shell command.",
                 {"type": "object", "properties": {"command": {"type": "string"}}})
READ = ToolSpec("read_file", "Read a file.", {"type": "object", "properties": {"path": {"type": "string"}}})
PREFIX = (Message("system", "You are careful."), Message("user", "Goal: make the tests pass."))
REQUEST = ModelRequest(messages=PREFIX, tools=(SHELL, READ))
CACHE = {"type": "ephemeral"}
streaming = pytest.mark.parametrize("stream", [False, True], ids=["whole", "streaming"])


def ask(server: MessagesServer, request: ModelRequest = REQUEST, *, stream: bool = False,
        timeout_s: float = 5.0, **options: Any) -> ModelResponse:
    """One request through a fresh provider, closed afterwards."""
    model = AnthropicModel("test-model", server.base_url, "test-key", stream=stream, timeout_s=timeout_s, **options)
    return asyncio.run(complete_once(model, request))


async def complete_once(model: AnthropicModel, request: ModelRequest) -> ModelResponse:
    try:
        return await model.complete(request)
    finally:
        await model.aclose()


def fail(reply: Reply, *, stream: bool, timeout_s: float = 5.0) -> ProviderError:
    """The provider error one scripted reply turns into."""
    with MessagesServer([reply]) as server, pytest.raises(ProviderError) as raised:
        ask(server, stream=stream, timeout_s=timeout_s, api_key_env="GK_TEST_API_KEY")
    return raised.value


def tool_turn(n: int, *calls: ToolCall) -> tuple[Message, ...]:
    """An assistant message with `calls`, then one tool result per call."""
    return (Message("assistant", f"Step {n}.", tool_calls=calls),
            *(Message("tool", f"output of {call.id}", tool_call_id=call.id, name=call.name) for call in calls))


def marked(body: dict[str, Any]) -> list[str]:
    """Where the request carries cache_control, as readable paths."""
    places = [f"tools[{i}]" for i, tool in enumerate(body.get("tools", [])) if "cache_control" in tool]
    places += [f"system[{i}]" for i, block in enumerate(body.get("system", [])) if "cache_control" in block]
    places += [f"messages[{i}][{j}]" for i, turn in enumerate(body["messages"])
               for j, block in enumerate(turn["content"]) if "cache_control" in block]
    return places


@streaming
def test_tool_use_without_input_has_an_empty_object_as_arguments(stream: bool) -> None:
    with MessagesServer([Answer(tool_uses=(ToolUseReply("list_files"),))]) as server:
        response = ask(server, stream=stream)

    assert response.tool_calls[0].arguments == "{}"


def test_streamed_tool_input_that_is_not_json_passes_through_unchanged() -> None:
    with MessagesServer([Answer(tool_uses=(ToolUseReply("shell", '{"command": "ls'),))]) as server:
        response = ask(server, stream=True)

    assert response.tool_calls[0].arguments == '{"command": "ls'


@streaming
def test_usage_counts_cache_reads_as_cached_and_cache_writes_as_charged(stream: bool) -> None:
    usage = UsageReply(input_tokens=50, cache_creation_input_tokens=1000, cache_read_input_tokens=9000,
                       output_tokens=80)
    with MessagesServer([Answer(text="ok", usage=usage)]) as server:
        model = AnthropicModel("test-model", server.base_url, "test-key", stream=stream)
        response = asyncio.run(complete_once(model, REQUEST))

    assert response.usage == Usage(input_tokens=10_050, cached_input_tokens=9000, output_tokens=80)
    assert response.usage.charged_tokens == 50 + 1000 + 80
    assert model.last_usage == MessagesUsage(input_tokens=50, cache_creation_input_tokens=1000,
                                             cache_read_input_tokens=9000, output_tokens=80)


def test_usage_from_treats_missing_counts_as_zero() -> None:
    assert usage_from(None) == Usage()
    assert usage_from(SimpleNamespace(input_tokens=7, output_tokens=3, cache_read_input_tokens=None)) == Usage(
        input_tokens=7, output_tokens=3)


@streaming
def test_history_is_sent_in_messages_form_with_tool_results_merged_into_one_user_turn(stream: bool) -> None:
    calls = (ToolCall("toolu_1", "shell", '{"command": "pytest -q"}'), ToolCall("toolu_2", "read_file", "{}"))
    history = (*PREFIX, *tool_turn(1, *calls), Message("user", "Keep going."))
    with MessagesServer([Answer(text="ok")]) as server:
        ask(server, ModelRequest(messages=history, tools=(SHELL,), max_output_tokens=256), stream=stream)
        body = server.requests[0]

    assert body["system"] == [{"type": "text", "text": "You are careful.", "cache_control": CACHE}]
    assert [turn["role"] for turn in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "Step 1."},
        {"type": "tool_use", "id": "toolu_1", "name": "shell", "input": {"command": "pytest -q"}},
        {"type": "tool_use", "id": "toolu_2", "name": "read_file", "input": {}},
    ]
    assert [block["type"] for block in body["messages"][2]["content"]] == ["tool_result", "tool_result", "text"]
    assert body["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_1",
                                                 "content": "output of toolu_1"}
    assert body["tools"] == [{"name": "shell", "description": SHELL.description,
                              "input_schema": SHELL.parameters}]
    assert body["max_tokens"] == 256
    assert body.get("stream", False) is stream


def test_max_tokens_defaults_to_the_constructor_value_and_empty_tools_are_left_out() -> None:
    with MessagesServer([Answer(text="ok")]) as server:
        ask(server, ModelRequest(messages=PREFIX), max_output_tokens=1234)
        body = server.requests[0]

    assert body["max_tokens"] == 1234
    assert "tools" not in body


def test_invalid_tool_arguments_in_history_are_sent_as_raw_text() -> None:
    call = ToolCall("toolu_1", "shell", '{"command": "ls')
    with MessagesServer([Answer(text="ok")]) as server:
        ask(server, ModelRequest(messages=(*PREFIX, *tool_turn(1, call))))
        body = server.requests[0]

    assert body["messages"][1]["content"][1]["input"] == {"_raw": '{"command": "ls'}


def test_empty_assistant_text_and_empty_tool_output_send_no_empty_blocks() -> None:
    history = (*PREFIX, Message("assistant", "", tool_calls=(ToolCall("toolu_1", "shell", "{}"),)),
               Message("tool", "", tool_call_id="toolu_1", name="shell"))
    with MessagesServer([Answer(text="ok")]) as server:
        ask(server, ModelRequest(messages=history))
        body = server.requests[0]

    assert [block["type"] for block in body["messages"][1]["content"]] == ["tool_use"]
    assert "content" not in body["messages"][2]["content"][0]


def test_first_request_marks_the_system_prompt_and_the_goal_contract() -> None:
    with MessagesServer([Answer(text="ok")]) as server:
        ask(server)
        body = server.requests[0]

    # The system block caches tools and system together (tools come first in the cache order).
    assert marked(body) == ["system[0]", "messages[0][0]"]
    assert body["messages"][0]["content"][0] == {"type": "text", "text": "Goal: make the tests pass.",
                                                 "cache_control": CACHE}


def test_later_request_marks_prefix_previous_end_and_newest_block() -> None:
    first = (ToolCall("toolu_1", "shell", '{"command": "ls"}'),)
    second = (ToolCall("toolu_2", "shell", '{"command": "pytest"}'), ToolCall("toolu_3", "read_file", "{}"))
    history = (*PREFIX, *tool_turn(1, *first), *tool_turn(2, *second))
    with MessagesServer([Answer(text="ok")]) as server:
        ask(server, ModelRequest(messages=history, tools=(SHELL, READ)))
        body = server.requests[0]

    # turns: [contract] [Step 1, tool_use] [result 1] [Step 2, tool_use, tool_use] [result 2, result 3]
    assert marked(body) == ["system[0]", "messages[0][0]", "messages[2][0]", "messages[4][1]"]
    assert body["messages"][4]["content"][1]["tool_use_id"] == "toolu_3"


def test_without_a_system_prompt_the_last_tool_is_marked() -> None:
    with MessagesServer([Answer(text="ok")]) as server:
        ask(server, ModelRequest(messages=PREFIX[1:], tools=(SHELL, READ)))
        body = server.requests[0]

    assert "system" not in body
    assert marked(body) == ["tools[1]", "messages[0][0]"]


def test_each_request_alternates_reads_back_what_the_previous_one_cached_and_marks_at_most_four() -> None:
    def one_call_per_turn(body: dict[str, Any]) -> Reply:
        return Answer(text="next", tool_uses=(ToolUseReply("shell", {"command": "true"}),))

    async def run_goal(server: MessagesServer) -> None:
        model = AnthropicModel("test-model", server.base_url, "test-key")
        messages: tuple[Message, ...] = PREFIX
        try:
            for _ in range(6):
                response = await model.complete(ModelRequest(messages=messages, tools=(SHELL,)))
                results = [Message("tool", "done", tool_call_id=call.id, name=call.name)
                           for call in response.tool_calls]
                messages = (*messages, Message("assistant", response.content, response.tool_calls), *results)
        finally:
            await model.aclose()

    with MessagesServer(reply_fn=one_call_per_turn) as server:
        asyncio.run(run_goal(server))

    for before, after in pairwise(server.requests):
        roles = [turn["role"] for turn in after["messages"]]
        assert roles[0] == "user" and all(a != b for a, b in pairwise(roles))
        assert len(marked(after)) <= 4
        assert marked(before)[-1] in marked(after)  # the entry the previous request wrote is read back


def test_api_key_version_and_extra_headers_are_sent() -> None:
    with MessagesServer([Answer(text="ok")]) as server:
        ask(server, extra_headers={"X-Title": "goalkeeper"})
        headers = server.request_headers[0]

    # SDK 2.x sends the key as a bearer token; older ones sent x-api-key.
    assert "test-key" in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
    assert headers["anthropic-version"]
    assert headers["x-title"] == "goalkeeper"


@streaming
def test_overloaded_is_transient(stream: bool) -> None:
    error = fail(Failure.overloaded(), stream=stream)

    assert isinstance(error, TransientProviderError)
    assert error.status_code == 529
    assert "overloaded_error" in error.message


def test_stream_that_stalls_mid_response_is_transient_and_keeps_its_usage() -> None:
    usage = UsageReply(input_tokens=30, cache_read_input_tokens=1000, output_tokens=5)
    error = fail(Answer(text="slow", usage=usage, stall_s=3.0), stream=True, timeout_s=0.5)

    assert isinstance(error, TransientProviderError)
    assert "stalled for 0.5s" in error.message
    assert error.usage == Usage(input_tokens=1030, cached_input_tokens=1000, output_tokens=1)


@pytest.mark.parametrize("cut", ["abort", "end"])
def test_truncated_stream_is_transient_and_keeps_the_usage_it_reported(cut: Literal["abort", "end"]) -> None:
    usage = UsageReply(input_tokens=40, cache_read_input_tokens=2000, output_tokens=1)
    error = fail(Truncated(Answer(text="partial answer", usage=usage), cut=cut), stream=True)

    assert isinstance(error, TransientProviderError)
    assert "stream ended mid-response" in error.message
    assert error.usage == Usage(input_tokens=2040, cached_input_tokens=2000, output_tokens=1)


def test_error_event_mid_stream_is_transient() -> None:
    error = fail(StreamError("overloaded_error", "Overloaded"), stream=True)

    assert isinstance(error, TransientProviderError)
    assert "overloaded_error" in error.message
    assert isinstance(error.usage, Usage) and error.usage.input_tokens > 0


def test_request_too_large_is_a_context_length_error() -> None:
    error = fail(Failure(413, "Request exceeds the maximum size", "request_too_large"), stream=False)

    assert isinstance(error, ContextLengthError)

