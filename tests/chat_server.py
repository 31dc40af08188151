"""A real local HTTP server speaking the OpenAI Chat Completions wire format, for tests and benchmarks.

It answers from a queue of scripted replies (or a `reply_fn`), streaming (SSE) or not as each request
asks, and can fail the ways real servers fail: error statuses with headers, answers slower than the
client's timeout, streams cut mid-response, malformed JSON. It runs its own event loop in a thread.

    with ChatServer([Completion(text="hi"), Failure.rate_limited(retry_after="2")]) as server:
        model = OpenAIChatModel("test-model", server.base_url, "test-key")
        ...
        assert server.requests[0]["messages"][0]["role"] == "system"
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web


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
class Failure:
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
class MalformedJSON:
    """HTTP 200 whose body (or first stream event) is not valid JSON."""

    body: str = '{"id": "chatcmpl-broken", "choices": [{"index": 0, '


Reply = Completion | Failure | Truncated | MalformedJSON
ReplyFn = Callable[[dict[str, Any]], Reply]


class ChatServer:
    """Serves POST /v1/chat/completions and GET /v1/models on 127.0.0.1 at a free port.

    Replies come from `responses` in order; once it is empty the last reply repeats. A `reply_fn`,
    when given, answers every request instead. Every request body is kept in `requests`, and its
    headers (names lowercased) in `request_headers`.
    """

    def __init__(self, responses: Iterable[Reply] = (), *, reply_fn: ReplyFn | None = None,
                 model: str = "test-model") -> None:
        self.model = model
        self.reply_fn = reply_fn
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self._queue: deque[Reply] = deque(responses)
        self._last: Reply = Completion(text="ok")
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, *replies: Reply) -> None:
        """Queue more replies (thread-safe)."""
        with self._lock:
            self._queue.extend(replies)

    def __enter__(self) -> ChatServer:
        self._thread = threading.Thread(target=self._run, name=f"chat-server-{self.port}", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._startup_error is not None:
            raise RuntimeError("chat server failed to start") from self._startup_error
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # surfaced to __enter__; a thread has nowhere else to raise
            self._startup_error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        # Cancel handlers whose client went away, so slow replies do not hold up shutdown.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, self._socket).start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def _next_reply(self, body: dict[str, Any]) -> tuple[int, Reply]:
        with self._lock:
            self.requests.append(body)
            number = len(self.requests) - 1
            if self.reply_fn is not None:
                return number, self.reply_fn(body)
            if self._queue:
                self._last = self._queue.popleft()
            return number, self._last

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "chat-server"}]})

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            self.request_headers.append({key.lower(): value for key, value in request.headers.items()})
        number, reply = self._next_reply(body)
        stream = bool(body.get("stream"))
        if isinstance(reply, Failure):
            return web.json_response(reply.wire(), status=reply.status, headers=reply.headers)
        if isinstance(reply, MalformedJSON):
            return await _send_malformed(request, reply, stream)
        completion = reply.completion if isinstance(reply, Truncated) else reply
        if completion.delay_s > 0:
            await asyncio.sleep(completion.delay_s)
        answer = _Answer(completion, body, number, self.model)
        if stream:
            return await _send_stream(request, answer, reply.cut if isinstance(reply, Truncated) else None)
        if isinstance(reply, Truncated):
            return await _send_cut_body(request, json.dumps(answer.whole()))
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
            calls = self.completion.tool_calls
            output = len(self.completion.text) + sum(len(call.arguments_text()) for call in calls)
            usage = UsageReply(len(json.dumps(self.body.get("messages", []))) // 4, output // 4 + 1)
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
        deltas += [{"content": piece} for piece in _pieces(self.completion.text)]
        for j, call in enumerate(self.completion.tool_calls):
            deltas.append({"tool_calls": [{"index": j, "id": self.call_id(j), "type": "function",
                                           "function": {"name": call.name, "arguments": ""}}]})
            deltas += [{"tool_calls": [{"index": j, "function": {"arguments": piece}}]}
                       for piece in _pieces(call.arguments_text())]
        chunks = [self._chunk(delta, None) for delta in deltas]
        chunks.append(self._chunk({}, self.finish_reason))
        usage = self.usage()
        if usage is not None and self.body.get("stream_options", {}).get("include_usage"):
            chunks.append({**self.envelope("chat.completion.chunk"), "choices": [], "usage": usage})
        return chunks

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        return {**self.envelope("chat.completion.chunk"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def _pieces(text: str, count: int = 3) -> list[str]:
    """Split text into up to `count` pieces, as a stream delivers it."""
    if not text:
        return []
    size = -(-len(text) // count)
    return [text[start:start + size] for start in range(0, len(text), size)]


async def _send_stream(request: web.Request, answer: _Answer, cut: str | None) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    chunks = answer.chunks()
    if cut is not None:
        # A cut stream never gets as far as the finish_reason or the usage.
        chunks = [chunk for chunk in chunks if chunk["choices"] and not chunk["choices"][0]["finish_reason"]]
    if cut == "abort":
        for chunk in chunks[: max(1, len(chunks) // 2)]:
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        return _abort(request, response)
    for chunk in chunks:
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def _send_cut_body(request: web.Request, text: str) -> web.StreamResponse:
    """Promise the whole body in Content-Length, send half of it, then drop the connection."""
    data = text.encode()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(data)
    await response.prepare(request)
    await response.write(data[: len(data) // 2])
    return _abort(request, response)


async def _send_malformed(request: web.Request, reply: MalformedJSON, stream: bool) -> web.StreamResponse:
    if not stream:
        return web.Response(text=reply.body, content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(f"data: {reply.body}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _abort(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Drop the TCP connection as a crashed server or a proxy would."""
    if request.transport is not None:
        request.transport.abort()
    return response
