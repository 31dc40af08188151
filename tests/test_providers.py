"""The contract every provider keeps, against a real local server speaking its wire format.

One suite, parametrized over (provider, fake server): Chat Completions, Responses and Anthropic Messages
answer text and tool calls alike, and map the same failures to the same errors. What only one wire format
does (its body, its usage counts, its cache marks, its own failure events) is tested in that provider's file.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import anthropic_server
import chat_server
import responses_server
from goalkeeper.errors import ContextLengthError, ProviderError, TransientProviderError
from goalkeeper.models.anthropic_messages import AnthropicModel
from goalkeeper.models.base import Message, Model, ModelRequest, ModelResponse, ToolCall, ToolSpec
from goalkeeper.models.openai_chat import OpenAIChatModel
from goalkeeper.models.openai_responses import OpenAIResponsesModel
from goalkeeper.models.retry import RetryPolicy, complete_with_retries
from wire_server import WireServer

SHELL = ToolSpec("shell", "Run a shell command.", {"type": "object", "properties": {"command": {"type": "string"}}})
REQUEST = ModelRequest(messages=(Message("system", "You are careful."), Message("user", "Fix the tests.")),
                       tools=(SHELL,))


@dataclass(frozen=True)
class Wire:
    """One provider and the fake server that speaks its wire format, with the replies the contract needs."""

    name: str
    model: Callable[..., Model]
    server: Callable[[list[Any]], WireServer[Any]]
    answer: Callable[..., Any]
    """(text, calls, delay_s) -> a normal answer; each call is (name, arguments, id)."""
    failure: Any
    """The format's `Failure` class: an HTTP error status (with `rate_limited()` and `unauthorized()`)."""
    not_found: Any
    refused: Any
    """A 400 that is neither final for the context window nor worth a retry."""
    forbidden: Any
    too_long: Any
    malformed: Any
    truncated: Callable[..., Any]
    stream_cuts: tuple[str, ...]
    call_id_prefix: str
    finish_reasons: tuple[str, str]
    """(text only, with tool calls)."""
    root: str
    """The base URL's path below the host."""


def _chat_answer(text: str = "", calls: tuple[tuple[str, dict[str, Any], str | None], ...] = (),
                 delay_s: float = 0.0) -> chat_server.Completion:
    return chat_server.Completion(text, tuple(chat_server.ToolCallReply(*call) for call in calls), delay_s=delay_s)


def _responses_answer(text: str = "", calls: tuple[tuple[str, dict[str, Any], str | None], ...] = (),
                      delay_s: float = 0.0) -> responses_server.Answer:
    return responses_server.Answer(text, tuple(chat_server.ToolCallReply(*call) for call in calls), delay_s=delay_s)


def _anthropic_answer(text: str = "", calls: tuple[tuple[str, dict[str, Any], str | None], ...] = (),
                      delay_s: float = 0.0) -> anthropic_server.Answer:
    return anthropic_server.Answer(text, tuple(anthropic_server.ToolUseReply(*call) for call in calls),
                                   delay_s=delay_s)


OPENAI_FAILURES: dict[str, Any] = dict(
    failure=chat_server.Failure,
    not_found=chat_server.Failure(404, "The model does not exist", "model_not_found", "invalid_request_error"),
    refused=chat_server.Failure(400, "bad schema", "invalid_value", "invalid_request_error"),
    forbidden=chat_server.Failure(403, "no access", type="invalid_request_error"),
    too_long=chat_server.Failure.context_length_exceeded(),
)
CHAT = Wire("chat", OpenAIChatModel, chat_server.ChatServer, _chat_answer, **OPENAI_FAILURES,
         malformed=chat_server.MalformedJSON(), truncated=chat_server.Truncated, stream_cuts=("abort", "done"),
         call_id_prefix="call", finish_reasons=("stop", "tool_calls"), root="/v1")
RESPONSES = Wire("responses", OpenAIResponsesModel, responses_server.ResponsesServer, _responses_answer,
         **OPENAI_FAILURES, malformed=responses_server.MalformedJSON('{"id": "resp_broken", "output": [{"type": '),
         truncated=responses_server.Truncated, stream_cuts=("abort", "end"), call_id_prefix="call",
         finish_reasons=("stop", "tool_calls"), root="/v1")
ANTHROPIC = Wire("anthropic", AnthropicModel, anthropic_server.MessagesServer, _anthropic_answer,
         failure=anthropic_server.Failure,
         not_found=anthropic_server.Failure(404, "model: claude-nope", "not_found_error"),
         refused=anthropic_server.Failure(400, "messages: roles must alternate", "invalid_request_error"),
         forbidden=anthropic_server.Failure(403, "not allowed", "permission_error"),
         too_long=anthropic_server.Failure.prompt_too_long(), malformed=anthropic_server.MalformedJSON(),
         truncated=anthropic_server.Truncated, stream_cuts=("abort", "end"), call_id_prefix="toolu",
         finish_reasons=("end_turn", "tool_use"), root="")
WIRES = [CHAT, RESPONSES, ANTHROPIC]
wires = pytest.mark.parametrize("wire", WIRES, ids=[wire.name for wire in WIRES])
streaming = pytest.mark.parametrize("stream", [False, True], ids=["whole", "streaming"])


async def _once(model: Model, request: ModelRequest) -> ModelResponse:
    try:
        return await model.complete(request)
    finally:
        await model.aclose()


def ask(wire: Wire, server: WireServer[Any], request: ModelRequest = REQUEST, *, stream: bool = False,
        timeout_s: float = 5.0, **options: Any) -> ModelResponse:
    """One request through a fresh provider, closed afterwards."""
    model = wire.model("test-model", server.base_url, "test-key", stream=stream, timeout_s=timeout_s, **options)
    return asyncio.run(_once(model, request))


def fail(wire: Wire, reply: Any, *, stream: bool, timeout_s: float = 5.0) -> ProviderError:
    """The provider error one scripted reply turns into."""
    with wire.server([reply]) as server, pytest.raises(ProviderError) as raised:
        ask(wire, server, stream=stream, timeout_s=timeout_s, api_key_env="GK_TEST_API_KEY")
    return raised.value


@wires
@streaming
def test_text_answer(wire: Wire, stream: bool) -> None:
    pieces: list[str] = []
    request = ModelRequest(messages=REQUEST.messages, on_text=pieces.append)
    with wire.server([wire.answer("The failing test expects 3.")]) as server:
        response = ask(wire, server, request, stream=stream)

    assert response.content == "The failing test expects 3."
    assert response.tool_calls == ()
    assert response.finish_reason == wire.finish_reasons[0]
    assert response.model == "test-model"
    assert "".join(pieces) == response.content
    assert len(pieces) == (3 if stream else 1)


@wires
@streaming
def test_one_tool_call(wire: Wire, stream: bool) -> None:
    reply = wire.answer("Running tests.", (("shell", {"command": "pytest -q"}, None),))
    with wire.server([reply]) as server:
        response = ask(wire, server, stream=stream)

    assert response.content == "Running tests."
    assert response.tool_calls == (ToolCall(f"{wire.call_id_prefix}_0_0", "shell", '{"command": "pytest -q"}'),)
    assert response.finish_reason == wire.finish_reasons[1]


@wires
@streaming
def test_two_parallel_tool_calls_keep_their_order_ids_and_arguments(wire: Wire, stream: bool) -> None:
    reply = wire.answer("", (("shell", {"command": "ls -la src"}, "call_a"),
                             ("read_file", {"path": "src/app.py"}, "call_b")))
    with wire.server([reply]) as server:
        response = ask(wire, server, stream=stream)

    assert response.content == ""
    assert [(call.id, call.name, json.loads(call.arguments)) for call in response.tool_calls] == [
        ("call_a", "shell", {"command": "ls -la src"}),
        ("call_b", "read_file", {"path": "src/app.py"}),
    ]


@wires
@streaming
def test_rate_limit_is_transient_and_carries_retry_after(wire: Wire, stream: bool) -> None:
    error = fail(wire, wire.failure.rate_limited(retry_after="2"), stream=stream)

    assert isinstance(error, TransientProviderError)
    assert error.status_code == 429
    assert error.retry_after_s == 2.0


@wires
@streaming
def test_server_error_is_transient(wire: Wire, stream: bool) -> None:
    error = fail(wire, wire.failure(500), stream=stream)

    assert isinstance(error, TransientProviderError)
    assert error.status_code == 500


@wires
@streaming
def test_timeout_is_transient(wire: Wire, stream: bool) -> None:
    error = fail(wire, wire.answer("too late", delay_s=2.0), stream=stream, timeout_s=0.4)

    assert isinstance(error, TransientProviderError)
    assert "0.4s" in error.message


@wires
@pytest.mark.parametrize("cut", [0, 1], ids=["abort", "clean end"])
def test_truncated_stream_is_transient(wire: Wire, cut: int) -> None:
    error = fail(wire, wire.truncated(cut=wire.stream_cuts[cut]), stream=True)

    assert isinstance(error, TransientProviderError)
    assert "stream ended mid-response" in error.message


@wires
def test_truncated_body_is_transient(wire: Wire) -> None:
    error = fail(wire, wire.truncated(), stream=False)

    assert isinstance(error, TransientProviderError)


@wires
@streaming
def test_malformed_json_is_transient(wire: Wire, stream: bool) -> None:
    error = fail(wire, wire.malformed, stream=stream)

    assert isinstance(error, TransientProviderError)
    assert "malformed JSON" in error.message


@wires
@streaming
def test_rejected_api_key_names_the_env_var(wire: Wire, stream: bool) -> None:
    error = fail(wire, wire.failure.unauthorized(), stream=stream)

    assert not error.transient
    assert error.status_code == 401
    assert error.hint is not None and "GK_TEST_API_KEY" in error.hint


@wires
def test_permission_denied_is_not_transient(wire: Wire) -> None:
    error = fail(wire, wire.forbidden, stream=False)

    assert not error.transient
    assert error.hint is not None and "GK_TEST_API_KEY" in error.hint


@wires
def test_unknown_model_is_not_transient(wire: Wire) -> None:
    error = fail(wire, wire.not_found, stream=False)

    assert not error.transient
    assert "model not found" in error.message


@wires
@streaming
def test_a_prompt_over_the_context_window_is_a_context_length_error(wire: Wire, stream: bool) -> None:
    error = fail(wire, wire.too_long, stream=stream)

    assert isinstance(error, ContextLengthError)
    assert error.status_code == 400


@wires
def test_other_client_errors_are_not_transient(wire: Wire) -> None:
    error = fail(wire, wire.refused, stream=False)

    assert type(error) is ProviderError
    assert error.status_code == 400


@wires
def test_refused_connection_is_transient(wire: Wire) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = wire.model("test-model", f"http://127.0.0.1:{port}{wire.root}", None, timeout_s=2.0)

    with pytest.raises(TransientProviderError, match="connection failed"):
        asyncio.run(_once(model, REQUEST))


@wires
def test_retries_recover_from_a_rate_limit_and_a_cut_stream_over_the_wire(wire: Wire) -> None:
    replies = [wire.failure.rate_limited(retry_after="0"), wire.truncated(cut=wire.stream_cuts[1]),
               wire.answer("recovered")]
    retries: list[int] = []

    async def go(server: WireServer[Any]) -> ModelResponse:
        model = wire.model("test-model", server.base_url, "test-key", stream=True)
        try:
            return await complete_with_retries(model, REQUEST, RetryPolicy(base_delay_s=0.0),
                                               on_retry=lambda attempt, _, __: retries.append(attempt))
        finally:
            await model.aclose()

    with wire.server(replies) as server:
        response = asyncio.run(go(server))

    assert response.content == "recovered"
    assert retries == [1, 2]
    assert len(server.requests) == 3
