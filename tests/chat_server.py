"""A real local HTTP server speaking the OpenAI Chat Completions wire format, for tests and benchmarks.

It answers from a queue of scripted replies (or a `reply_fn`), streaming (SSE) or not as each request
asks, and can fail the ways real servers fail: error statuses with headers, answers slower than the
client's timeout, streams cut mid-response, malformed JSON. It runs its own event loop in a thread
(wire_server.py).

    with ChatServer([Completion(text="hi"), Failure.rate_limited(retry_after="2")]) as server:
        model = OpenAIChatModel("test-model", server.base_url, "test-key")
        ...
        assert server.requests[0]["messages"][0]["role"] == "system"
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

import wire_server
from wire_server import ErrorStatus, Exchange, WireServer, estimate_tokens, pieces, sse


@dataclass(frozen=True)
class ToolCallReply:
    """A tool call in a scripted completion."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    """A JSON object (serialised) or a raw string sent as is (e.g. invalid JSON)."""
    id: str | None = None
    """Defaults to call_<request number>_<position>."""

    def arguments_text(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass(frozen=True)
class UsageReply:
    """Usage as the server reports it."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def wire(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


@dataclass(frozen=True)
class Completion:
    """A normal answer: text and/or tool calls, streamed or whole as the request asks."""

    text: str = ""
    tool_calls: tuple[ToolCallReply, ...] = ()
    usage: UsageReply | Literal["estimate", "none"] = "estimate"
    """"estimate": about four characters a token; "none": no usage at all in the answer."""
    finish_reason: str | None = None
    """Defaults to "tool_calls" when there are tool calls, else "stop"."""
    delay_s: float = 0.0
    """Wait this long before answering (longer than the client timeout makes it time out)."""


@dataclass(frozen=True)
class Failure(ErrorStatus):
    """An HTTP error status with an OpenAI-shaped error body and optional headers."""

    status: int = 500
    message: str = "scripted failure"
    code: str | None = None
    type: str = "server_error"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def rate_limited(cls, retry_after: str | None = None) -> Failure:
        """HTTP 429, with a Retry-After header (seconds or an HTTP date) when given."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return cls(429, "Rate limit reached", "rate_limit_exceeded", "requests", headers)

    @classmethod
    def unauthorized(cls) -> Failure:
        return cls(401, "Incorrect API key provided", "invalid_api_key", "invalid_request_error")

    @classmethod
    def context_length_exceeded(cls) -> Failure:
        return cls(400, "This model's maximum context length is 128 tokens", "context_length_exceeded",
                   "invalid_request_error")

    def wire(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": None, "code": self.code}}


@dataclass(frozen=True)
class Truncated:
    """A response cut short. `cut="abort"` drops the connection mid-body; `cut="done"` (streams only)
    ends the stream cleanly with `data: [DONE]` but never sends a finish_reason."""

    completion: Completion = field(default_factory=lambda: Completion(text="partial answer"))
    cut: Literal["abort", "done"] = "abort"


@dataclass(frozen=True)
class MalformedJSON(wire_server.MalformedJSON):
    """HTTP 200 whose body (or first stream event) is not valid JSON."""

    body: str = '{"id": "chatcmpl-broken", "choices": [{"index": 0, '


Reply = Completion | Failure | Truncated | MalformedJSON
ReplyFn = Callable[[dict[str, Any]], Reply]


class ChatServer(WireServer[Completion | Truncated]):
    """Serves POST /v1/chat/completions and GET /v1/models; see `WireServer` for the script and the records."""

    kind = "chat"
    path = "/v1/chat/completions"
    stream_end = b"data: [DONE]\n\n"

    def default_reply(self) -> Completion:
        return Completion(text="ok")

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(self.path, self._chat_completions)
        app.router.add_get("/v1/models", self._models)

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        # A handler of its own, so bench/harness_gap.py can time each request by overriding it.
        return await self.receive(request)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "chat-server"}]})

    async def answer(self, request: web.Request, exchange: Exchange,
                     reply: Completion | Truncated) -> web.StreamResponse:
        completion = reply.completion if isinstance(reply, Truncated) else reply
        if completion.delay_s > 0:
            await asyncio.sleep(completion.delay_s)
        answer = _Answer(completion, exchange.body, exchange.number, self.model)
        if isinstance(reply, Truncated):
            # A cut stream never gets as far as the finish_reason or the usage.
            chunks = [chunk for chunk in answer.chunks()
                      if chunk["choices"] and not chunk["choices"][0]["finish_reason"]]
            return await self.send_truncated(request, exchange, answer.whole(), _frames(chunks),
                                             abort=reply.cut == "abort")
        if exchange.stream:
            return await self.send_stream(request, _frames(answer.chunks()))
        return web.json_response(answer.whole())


@dataclass(frozen=True)
class _Answer:
    """One completion rendered for one request."""

    completion: Completion
    body: dict[str, Any]
    number: int
    model: str

    @property
    def finish_reason(self) -> str:
        default = "tool_calls" if self.completion.tool_calls else "stop"
        return self.completion.finish_reason or default

    def call_id(self, position: int) -> str:
        return self.completion.tool_calls[position].id or f"call_{self.number}_{position}"

    def usage(self) -> dict[str, Any] | None:
        usage = self.completion.usage
        if usage == "none":
            return None
        if usage == "estimate":
            outputs = [self.completion.text, *(call.arguments_text() for call in self.completion.tool_calls)]
            usage = UsageReply(*estimate_tokens(self.body.get("messages", []), outputs))
        return usage.wire()

    def envelope(self, kind: str) -> dict[str, Any]:
        return {"id": f"chatcmpl-{self.number}", "object": kind, "created": int(time.time()),
                "model": self.model}

    def whole(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.completion.text or None}
        if self.completion.tool_calls:
            message["tool_calls"] = [
                {"id": self.call_id(j), "type": "function",
                 "function": {"name": call.name, "arguments": call.arguments_text()}}
                for j, call in enumerate(self.completion.tool_calls)
            ]
        answer = {**self.envelope("chat.completion"),
                  "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}]}
        usage = self.usage()
        if usage is not None:
            answer["usage"] = usage
        return answer

    def chunks(self) -> list[dict[str, Any]]:
        """Stream chunks: role, text pieces, tool-call deltas (arguments in pieces), finish, usage."""
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        deltas += [{"content": piece} for piece in pieces(self.completion.text)]
        for j, call in enumerate(self.completion.tool_calls):
            deltas.append({"tool_calls": [{"index": j, "id": self.call_id(j), "type": "function",
                                           "function": {"name": call.name, "arguments": ""}}]})
            deltas += [{"tool_calls": [{"index": j, "function": {"arguments": piece}}]}
                       for piece in pieces(call.arguments_text())]
        chunks = [self._chunk(delta, None) for delta in deltas]
        chunks.append(self._chunk({}, self.finish_reason))
        usage = self.usage()
        if usage is not None and self.body.get("stream_options", {}).get("include_usage"):
            chunks.append({**self.envelope("chat.completion.chunk"), "choices": [], "usage": usage})
        return chunks

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        return {**self.envelope("chat.completion.chunk"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def _frames(chunks: list[dict[str, Any]]) -> list[bytes]:
    return [sse(json.dumps(chunk)) for chunk in chunks]
