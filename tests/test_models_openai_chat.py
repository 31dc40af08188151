"""What only the Chat Completions wire format does, against a real local server (the contract every provider
keeps is test_providers.py)."""

from __future__ import annotations

import functools
from typing import Any

import httpx

import test_providers
from chat_server import (
    ChatServer,
    Completion,
    Failure,
    Reply,
    ToolCallReply,
    UsageReply,
)
from goalkeeper.errors import ContextLengthError
from goalkeeper.models.base import Message, ModelRequest, ToolCall, Usage
from test_providers import CHAT, REQUEST, SHELL, streaming

ask = functools.partial(test_providers.ask, CHAT)
fail = functools.partial(test_providers.fail, CHAT)


@streaming
def test_invalid_tool_arguments_pass_through_unchanged(stream: bool) -> None:
    with ChatServer([Completion(tool_calls=(ToolCallReply("shell", '{"command": "ls'),))]) as server:
        response = ask(server, stream=stream)

    assert response.tool_calls[0].arguments == '{"command": "ls'


@streaming
def test_usage_includes_cached_and_reasoning_tokens(stream: bool) -> None:
    usage = UsageReply(prompt_tokens=1200, completion_tokens=80, cached_tokens=1024, reasoning_tokens=32)
    with ChatServer([Completion(text="ok", usage=usage)]) as server:
        response = ask(server, stream=stream)

    assert response.usage == Usage(input_tokens=1200, cached_input_tokens=1024, output_tokens=80,
                                   reasoning_tokens=32)


@streaming
def test_missing_usage_counts_as_zero(stream: bool) -> None:
    with ChatServer([Completion(text="ok", usage="none")]) as server:
        response = ask(server, stream=stream)

    assert response.usage == Usage()


@streaming
def test_history_is_sent_in_chat_form_with_empty_content_on_tool_call_messages(stream: bool) -> None:
    call = ToolCall("call_1", "shell", '{"command": "pytest -q"}')
    history = (*REQUEST.messages, Message("assistant", "", tool_calls=(call,)),
               Message("tool", "1 failed", tool_call_id="call_1", name="shell"))
    request = ModelRequest(messages=history, tools=(SHELL,), max_output_tokens=256)
    with ChatServer([Completion(text="ok")]) as server:
        ask(server, request, stream=stream)
        body = server.requests[0]

    assert body["messages"][2] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "shell", "arguments": call.arguments}}]}
    assert body["messages"][3] == {"role": "tool", "content": "1 failed", "tool_call_id": "call_1"}
    assert body["tools"] == [{"type": "function", "function": {
        "name": "shell", "description": SHELL.description, "parameters": SHELL.parameters}}]
    assert body["max_tokens"] == 256
    assert body["stream"] is stream
    assert ("stream_options" in body) is stream


def test_optional_fields_are_left_out_when_unset() -> None:
    with ChatServer([Completion(text="ok")]) as server:
        ask(server, ModelRequest(messages=REQUEST.messages))
        body = server.requests[0]

    assert "tools" not in body
    assert "max_tokens" not in body


def test_api_key_and_extra_headers_are_sent() -> None:
    with ChatServer([Completion(text="ok")]) as server:
        ask(server, extra_headers={"X-Title": "goalkeeper"})
        headers = server.request_headers[0]

    assert headers["authorization"] == "Bearer test-key"
    assert headers["x-title"] == "goalkeeper"


def test_context_length_is_recognised_by_llama_cpp_error_type() -> None:
    error = fail(Failure(400, "request exceeds the available context size", None,
                         "exceed_context_size_error"), stream=False)

    assert isinstance(error, ContextLengthError)


def test_server_answers_from_reply_fn_and_lists_models() -> None:
    def echo(body: dict[str, Any]) -> Reply:
        return Completion(text=f"you sent {len(body['messages'])} messages")

    with ChatServer(reply_fn=echo) as server:
        first = ask(server)
        second = ask(server, stream=True)
        models = httpx.get(f"{server.base_url}/models").json()

    assert first.content == second.content == "you sent 2 messages"
    assert models["data"][0]["id"] == "test-model"
