"""The Chat Completions provider against a real local server speaking the wire format."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx
import pytest

from chat_server import (
    ChatServer,
    Completion,
    Failure,
    MalformedJSON,
    Reply,
    ToolCallReply,
    Truncated,
    UsageReply,
)
from goalkeeper.errors import ContextLengthError, ProviderError, TransientProviderError
from goalkeeper.models.base import Message, ModelRequest, ModelResponse, ToolCall, ToolSpec, Usage
from goalkeeper.models.openai_chat import OpenAIChatModel
from goalkeeper.models.retry import RetryPolicy, complete_with_retries

SHELL = ToolSpec("shell", "Run a shell command.",
                 {"type": "object", "properties": {"command": {"type": "string"}}})
REQUEST = ModelRequest(messages=(Message("system", "You are careful."), Message("user", "Fix the tests.")),
                       tools=(SHELL,))
streaming = pytest.mark.parametrize("stream", [False, True], ids=["whole", "streaming"])


def ask(server: ChatServer, request: ModelRequest = REQUEST, *, stream: bool = False,
        timeout_s: float = 5.0, **options: Any) -> ModelResponse:
    """One request through a fresh provider, closed afterwards."""
    async def go() -> ModelResponse:
        model = OpenAIChatModel("test-model", server.base_url, "test-key", stream=stream,
                                timeout_s=timeout_s, **options)
        try:
            return await model.complete(request)
        finally:
            await model.aclose()

    return asyncio.run(go())


def fail(reply: Reply, *, stream: bool, timeout_s: float = 5.0) -> ProviderError:
    """The provider error one scripted reply turns into."""
    with ChatServer([reply]) as server, pytest.raises(ProviderError) as raised:
        ask(server, stream=stream, timeout_s=timeout_s, api_key_env="GK_TEST_API_KEY")
    return raised.value


@streaming
def test_text_answer(stream: bool) -> None:
    pieces: list[str] = []
    request = ModelRequest(messages=REQUEST.messages, on_text=pieces.append)
    with ChatServer([Completion(text="The failing test expects 3.")]) as server:
        response = ask(server, request, stream=stream)

    assert response.content == "The failing test expects 3."
    assert response.tool_calls == ()
    assert response.finish_reason == "stop"
    assert response.model == "test-model"
    assert "".join(pieces) == response.content
    assert len(pieces) == (3 if stream else 1)


@streaming
def test_one_tool_call(stream: bool) -> None:
    reply = Completion(text="Running tests.", tool_calls=(ToolCallReply("shell", {"command": "pytest -q"}),))
    with ChatServer([reply]) as server:
        response = ask(server, stream=stream)

    assert response.content == "Running tests."
    assert response.tool_calls == (ToolCall("call_0_0", "shell", '{"command": "pytest -q"}'),)
    assert response.finish_reason == "tool_calls"


@streaming
def test_two_parallel_tool_calls_keep_their_order_ids_and_arguments(stream: bool) -> None:
    reply = Completion(tool_calls=(ToolCallReply("shell", {"command": "ls -la src"}, id="call_a"),
                                   ToolCallReply("read_file", {"path": "src/app.py"}, id="call_b")))
    with ChatServer([reply]) as server:
        response = ask(server, stream=stream)

    assert response.content == ""
    assert [(call.id, call.name, json.loads(call.arguments)) for call in response.tool_calls] == [
        ("call_a", "shell", {"command": "ls -la src"}),
        ("call_b", "read_file", {"path": "src/app.py"}),
    ]


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


@streaming
def test_rate_limit_is_transient_and_carries_retry_after(stream: bool) -> None:
    error = fail(Failure.rate_limited(retry_after="2"), stream=stream)

    assert isinstance(error, TransientProviderError)
    assert error.status_code == 429
    assert error.retry_after_s == 2.0


@streaming
def test_server_error_is_transient(stream: bool) -> None:
    error = fail(Failure(500, "boom"), stream=stream)

    assert isinstance(error, TransientProviderError)
    assert error.status_code == 500


@streaming
def test_timeout_is_transient(stream: bool) -> None:
    error = fail(Completion(text="too late", delay_s=3.0), stream=stream, timeout_s=0.5)

    assert isinstance(error, TransientProviderError)
    assert "0.5s" in error.message


@pytest.mark.parametrize("reply", [Truncated(cut="abort"), Truncated(cut="done")], ids=["abort", "done"])
def test_truncated_stream_is_transient(reply: Truncated) -> None:
    error = fail(reply, stream=True)

    assert isinstance(error, TransientProviderError)
    assert "stream ended mid-response" in error.message


def test_truncated_body_is_transient() -> None:
    error = fail(Truncated(), stream=False)

    assert isinstance(error, TransientProviderError)


@streaming
def test_malformed_json_is_transient(stream: bool) -> None:
    error = fail(MalformedJSON(), stream=stream)

    assert isinstance(error, TransientProviderError)
    assert "malformed JSON" in error.message


@streaming
def test_rejected_api_key_names_the_env_var(stream: bool) -> None:
    error = fail(Failure.unauthorized(), stream=stream)

    assert not error.transient
    assert error.status_code == 401
    assert error.hint is not None and "GK_TEST_API_KEY" in error.hint


def test_permission_denied_is_not_transient() -> None:
    error = fail(Failure(403, "no access", type="invalid_request_error"), stream=False)

    assert not error.transient
    assert error.hint is not None and "GK_TEST_API_KEY" in error.hint


def test_unknown_model_is_not_transient() -> None:
    error = fail(Failure(404, "The model does not exist", "model_not_found", "invalid_request_error"),
                 stream=False)

    assert not error.transient
    assert "model not found" in error.message


@streaming
def test_context_length_exceeded_is_recognised_by_its_code(stream: bool) -> None:
    error = fail(Failure.context_length_exceeded(), stream=stream)

    assert isinstance(error, ContextLengthError)


def test_context_length_is_recognised_by_llama_cpp_error_type() -> None:
    error = fail(Failure(400, "request exceeds the available context size", None,
                         "exceed_context_size_error"), stream=False)

    assert isinstance(error, ContextLengthError)


def test_other_client_errors_are_not_transient() -> None:
    error = fail(Failure(400, "bad schema", "invalid_value", "invalid_request_error"), stream=False)

    assert type(error) is ProviderError
    assert error.status_code == 400


def test_refused_connection_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def go() -> None:
        model = OpenAIChatModel("test-model", f"http://127.0.0.1:{port}/v1", None, timeout_s=2.0)
        try:
            await model.complete(REQUEST)
        finally:
            await model.aclose()

    with pytest.raises(TransientProviderError, match="connection failed"):
        asyncio.run(go())


def test_retries_recover_from_a_rate_limit_over_the_wire() -> None:
    replies: list[Reply] = [Failure.rate_limited(retry_after="0"), Completion(text="recovered")]
    retries: list[int] = []

    async def go(server: ChatServer) -> ModelResponse:
        model = OpenAIChatModel("test-model", server.base_url, "test-key", stream=True)
        try:
            return await complete_with_retries(model, REQUEST, RetryPolicy(),
                                               on_retry=lambda attempt, _, __: retries.append(attempt))
        finally:
            await model.aclose()

    with ChatServer(replies) as server:
        response = asyncio.run(go(server))

    assert response.content == "recovered"
    assert retries == [1]
    assert len(server.requests) == 2


def test_server_answers_from_reply_fn_and_lists_models() -> None:
    def echo(body: dict[str, Any]) -> Reply:
        return Completion(text=f"you sent {len(body['messages'])} messages")

    with ChatServer(reply_fn=echo) as server:
        first = ask(server)
        second = ask(server, stream=True)
        models = httpx.get(f"{server.base_url}/models").json()

    assert first.content == second.content == "you sent 2 messages"
    assert models["data"][0]["id"] == "test-model"
