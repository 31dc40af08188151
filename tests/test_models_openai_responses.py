"""What only the Responses wire format does, against a real local server (the contract every provider keeps
is test_providers.py)."""

from __future__ import annotations

import functools
from typing import Literal

import pytest

import test_providers
from goalkeeper.errors import ContextLengthError, TransientProviderError
from goalkeeper.models.base import Message, ModelRequest, ToolCall, Usage
from responses_server import (
    Answer,
    FailedResponse,
    MalformedJSON,
    ResponsesServer,
    ToolCallReply,
    UsageReply,
)
from test_providers import REQUEST, RESPONSES, SHELL, streaming

ask = functools.partial(test_providers.ask, RESPONSES)
fail = functools.partial(test_providers.fail, RESPONSES)


@streaming
def test_invalid_tool_arguments_pass_through_unchanged(stream: bool) -> None:
    with ResponsesServer([Answer(tool_calls=(ToolCallReply("shell", '{"command": "ls'),))]) as server:
        response = ask(server, stream=stream)

    assert response.tool_calls[0].arguments == '{"command": "ls'


@streaming
def test_usage_includes_cached_and_reasoning_tokens(stream: bool) -> None:
    usage = UsageReply(input_tokens=1200, output_tokens=80, cached_tokens=1024, reasoning_tokens=32)
    with ResponsesServer([Answer(text="ok", usage=usage, reasoning=True)]) as server:
        response = ask(server, stream=stream)

    assert response.content == "ok"
    assert response.usage == Usage(input_tokens=1200, cached_input_tokens=1024, output_tokens=80,
                                   reasoning_tokens=32)


@streaming
def test_missing_usage_counts_as_zero(stream: bool) -> None:
    with ResponsesServer([Answer(text="ok", usage="none")]) as server:
        response = ask(server, stream=stream)

    assert response.usage == Usage()


def test_stream_without_item_events_takes_the_final_output() -> None:
    pieces: list[str] = []
    reply = Answer(text="Checked.", tool_calls=(ToolCallReply("shell", {"command": "ls"}),), stream_items=False)
    with ResponsesServer([reply]) as server:
        response = ask(server, ModelRequest(messages=REQUEST.messages, on_text=pieces.append), stream=True)

    assert response.content == "Checked."
    assert response.tool_calls == (ToolCall("call_0_0", "shell", '{"command": "ls"}'),)
    assert pieces == ["Checked."]


@streaming
def test_output_cut_by_the_token_cap_finishes_with_length(stream: bool) -> None:
    with ResponsesServer([Answer(text="I will now", incomplete_reason="max_output_tokens")]) as server:
        response = ask(server, stream=stream)

    assert response.content == "I will now"
    assert response.finish_reason == "length"


@streaming
def test_every_request_is_stateless_and_carries_the_options(stream: bool) -> None:
    request = ModelRequest(messages=REQUEST.messages, tools=(SHELL,), max_output_tokens=256)
    with ResponsesServer([Answer(text="ok")]) as server:
        ask(server, request, stream=stream, reasoning_effort="high")
        body = server.requests[0]

    assert body["store"] is False
    assert "previous_response_id" not in body
    assert "instructions" not in body
    assert body["stream"] is stream
    assert body["reasoning"] == {"effort": "high"}
    assert body["max_output_tokens"] == 256
    assert body["tools"] == [{"type": "function", "name": "shell", "description": SHELL.description,
                              "parameters": SHELL.parameters, "strict": False}]


def test_optional_fields_are_left_out_when_unset() -> None:
    with ResponsesServer([Answer(text="ok")]) as server:
        ask(server, ModelRequest(messages=REQUEST.messages))
        body = server.requests[0]

    assert "tools" not in body
    assert "reasoning" not in body
    assert "max_output_tokens" not in body


def test_a_token_cap_below_the_api_minimum_is_raised_to_it() -> None:
    with ResponsesServer([Answer(text="ok")]) as server:
        ask(server, ModelRequest(messages=REQUEST.messages, max_output_tokens=3))

    assert server.requests[0]["max_output_tokens"] == 16


@streaming
def test_history_becomes_input_items_in_conversation_order(stream: bool) -> None:
    first = ToolCall("call_1", "shell", '{"command": "pytest -q"}')
    second = ToolCall("call_2", "shell", '{"command": "git diff"}')
    history = (*REQUEST.messages,
               Message("assistant", "Running both.", tool_calls=(first, second)),
               Message("tool", "1 failed", tool_call_id="call_1", name="shell"),
               Message("tool", "no changes", tool_call_id="call_2", name="shell"),
               Message("assistant", "", tool_calls=(first,)),
               Message("tool", "passed", tool_call_id="call_1", name="shell"))
    with ResponsesServer([Answer(text="ok")]) as server:
        ask(server, ModelRequest(messages=history, tools=(SHELL,)), stream=stream)
        items = server.requests[0]["input"]

    assert items == [
        {"role": "system", "content": "You are careful."},
        {"role": "user", "content": "Fix the tests."},
        {"role": "assistant", "content": "Running both."},
        {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": first.arguments},
        {"type": "function_call", "call_id": "call_2", "name": "shell", "arguments": second.arguments},
        {"type": "function_call_output", "call_id": "call_1", "output": "1 failed"},
        {"type": "function_call_output", "call_id": "call_2", "output": "no changes"},
        {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": first.arguments},
        {"type": "function_call_output", "call_id": "call_1", "output": "passed"},
    ]


def test_consecutive_requests_share_their_leading_bytes() -> None:
    call = ToolCall("call_1", "shell", '{"command": "pytest -q"}')
    first = ModelRequest(messages=REQUEST.messages, tools=(SHELL,), max_output_tokens=4000)
    second = ModelRequest(messages=(*REQUEST.messages, Message("assistant", "", tool_calls=(call,)),
                                    Message("tool", "1 failed", tool_call_id="call_1")),
                          tools=(SHELL,), max_output_tokens=3500)
    with ResponsesServer([Answer(tool_calls=(ToolCallReply("shell", {"command": "pytest -q"}),))]) as server:
        ask(server, first, reasoning_effort="medium")
        ask(server, second, reasoning_effort="medium")
        earlier, later = server.raw_requests

    # Everything up to the end of the earlier conversation's last item is sent again, byte for byte.
    prefix = earlier[: earlier.rindex(b"]")]
    assert later.startswith(prefix)
    assert later[len(prefix):len(prefix) + 1] == b","


def test_api_key_extra_headers_and_query_params_are_sent() -> None:
    with ResponsesServer([Answer(text="ok")]) as server:
        ask(server, extra_headers={"X-Title": "goalkeeper"}, query_params={"api-version": "preview"})

    assert server.request_headers[0]["authorization"] == "Bearer test-key"
    assert server.request_headers[0]["x-title"] == "goalkeeper"
    assert server.request_queries[0] == {"api-version": "preview"}


def test_json_that_is_not_a_response_is_transient() -> None:
    error = fail(MalformedJSON('["not", "a", "response"]'), stream=False)

    assert isinstance(error, TransientProviderError)
    assert "wire format" in error.message


@pytest.mark.parametrize("event", ["response.failed", "error"])
def test_context_length_failure_inside_a_stream_is_recognised_by_its_code(
        event: Literal["response.failed", "error"]) -> None:
    error = fail(FailedResponse("context_length_exceeded", "too long", event=event), stream=True)

    assert isinstance(error, ContextLengthError)


@streaming
def test_failed_response_is_transient_and_keeps_its_usage(stream: bool) -> None:
    usage = UsageReply(input_tokens=900, output_tokens=12)
    error = fail(FailedResponse(usage=usage), stream=stream)

    assert type(error) is TransientProviderError
    assert error.usage == Usage(input_tokens=900, output_tokens=12)


def test_error_event_inside_a_stream_is_transient() -> None:
    error = fail(FailedResponse("server_error", "overloaded", event="error"), stream=True)

    assert type(error) is TransientProviderError
    assert "overloaded" in error.message

