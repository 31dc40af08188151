"""A real local HTTP server speaking the Anthropic Messages wire format, for tests and benchmarks.

It answers from a queue of scripted replies (or a `reply_fn`), streaming (SSE events) or not as each
request asks, and can fail the ways the real API fails: error statuses with headers (429, 529, 500,
401, a prompt-too-long 400), answers slower than the client's timeout, `error` events mid-stream,
streams cut before `message_stop`, malformed JSON. It runs its own event loop in a thread.

    with MessagesServer([Answer(text="hi"), Failure.rate_limited(retry_after="2")]) as server:
        model = AnthropicModel("test-model", server.base_url, "test-key")
        ...
        assert server.requests[0]["system"][0]["type"] == "text"
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web


@dataclass(frozen=True)
class ToolUseReply:
    """A tool_use block in a scripted answer."""

    name: str
    input: dict[str, Any] | str = field(default_factory=dict)
    """A JSON object, or (streams only) raw `partial_json` text sent as is, e.g. invalid JSON."""
    id: str | None = None
    """Defaults to toolu_<request number>_<position>."""

    def input_text(self) -> str:
        return self.input if isinstance(self.input, str) else json.dumps(self.input)


@dataclass(frozen=True)
class UsageReply:
    """Usage as the Messages API reports it: `input_tokens` is only the part after the last cache hit."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def wire(self) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cache_creation_input_tokens": self.cache_creation_input_tokens,
                "cache_read_input_tokens": self.cache_read_input_tokens}


@dataclass(frozen=True)
class Answer:
    """A normal answer: text and/or tool_use blocks, streamed or whole as the request asks."""

    text: str = ""
    tool_uses: tuple[ToolUseReply, ...] = ()
    usage: UsageReply | Literal["estimate"] = "estimate"
    """"estimate": about four characters a token, nothing cached."""
    stop_reason: str | None = None
    """Defaults to "tool_use" when there are tool uses, else "end_turn"."""
    delay_s: float = 0.0
    """Wait this long before answering (longer than the client timeout makes it time out)."""
    stall_s: float = 0.0
    """(Streams) pause this long after message_start, as a stalled upstream does mid-response."""


@dataclass(frozen=True)
class Failure:
    """An HTTP error status with a Messages-API-shaped error body and optional headers."""

    status: int = 500
    message: str = "Internal server error"
    type: str = "api_error"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def rate_limited(cls, retry_after: str | None = None) -> Failure:
        """HTTP 429, with a Retry-After header (seconds or an HTTP date) when given."""
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        return cls(429, "Number of request tokens has exceeded your per-minute rate limit",
                   "rate_limit_error", headers)

    @classmethod
    def overloaded(cls) -> Failure:
        """HTTP 529: the API is temporarily overloaded."""
        return cls(529, "Overloaded", "overloaded_error")

    @classmethod
    def unauthorized(cls) -> Failure:
        return cls(401, "invalid x-api-key", "authentication_error")

    @classmethod
    def prompt_too_long(cls) -> Failure:
        """What the real API answers to a prompt over the context window: no dedicated error type."""
        return cls(400, "prompt is too long: 210384 tokens > 200000 maximum", "invalid_request_error")

    def wire(self) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self.type, "message": self.message},
                "request_id": "req_scripted"}


@dataclass(frozen=True)
class StreamError:
    """A stream that starts normally, then sends an `error` event (as the API does when overloaded)."""

    type: str = "overloaded_error"
    message: str = "Overloaded"


@dataclass(frozen=True)
class Truncated:
    """A response cut short. `cut="abort"` drops the connection mid-body; `cut="end"` (streams only)
    ends the stream cleanly after the content but before `message_delta` and `message_stop`."""

    answer: Answer = field(default_factory=lambda: Answer(text="partial answer"))
    cut: Literal["abort", "end"] = "abort"


@dataclass(frozen=True)
class MalformedJSON:
    """HTTP 200 whose body (or first stream event) is not valid JSON."""

    body: str = '{"id": "msg_broken", "type": "message", "content": [{"type": '


Reply = Answer | Failure | StreamError | Truncated | MalformedJSON
ReplyFn = Callable[[dict[str, Any]], Reply]


class MessagesServer:
    """Serves POST /v1/messages on 127.0.0.1 at a free port.

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
        self._last: Reply = Answer(text="ok")
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
        """The API root, as the Anthropic SDK expects it (it appends /v1/messages itself)."""
        return f"http://127.0.0.1:{self.port}"

    def push(self, *replies: Reply) -> None:
        """Queue more replies (thread-safe)."""
        with self._lock:
            self._queue.extend(replies)

    def __enter__(self) -> MessagesServer:
        self._thread = threading.Thread(target=self._run, name=f"messages-server-{self.port}", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._startup_error is not None:
            raise RuntimeError("messages server failed to start") from self._startup_error
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
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._messages)
        # Cancel handlers whose client went away, so slow replies do not hold up shutdown.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, self._socket).start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def _next_reply(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Reply]:
        with self._lock:
            self.requests.append(body)
            self.request_headers.append(headers)
            number = len(self.requests) - 1
            if self.reply_fn is not None:
                return number, self.reply_fn(body)
            if self._queue:
                self._last = self._queue.popleft()
            return number, self._last

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        headers = {key.lower(): value for key, value in request.headers.items()}
        number, reply = self._next_reply(body, headers)
        stream = bool(body.get("stream"))
        if isinstance(reply, Failure):
            return web.json_response(reply.wire(), status=reply.status, headers=reply.headers)
        if isinstance(reply, MalformedJSON):
            return await _send_malformed(request, reply, stream)
        if isinstance(reply, StreamError):
            events = _Rendered(Answer(text="Partial"), body, number, self.model).events()[:3]
            events.append({"type": "error", "error": {"type": reply.type, "message": reply.message}})
            return await _send_events(request, events)
        answer = reply.answer if isinstance(reply, Truncated) else reply
        if answer.delay_s > 0:
            await asyncio.sleep(answer.delay_s)
        rendered = _Rendered(answer, body, number, self.model)
        if not isinstance(reply, Truncated):
            if not stream:
                return web.json_response(rendered.whole())
            return await _send_events(request, rendered.events(), stall_s=answer.stall_s)
        if not stream:
            return await _send_cut_body(request, json.dumps(rendered.whole()))
        # A cut stream never gets as far as message_delta (the stop reason) or message_stop.
        events = [event for event in rendered.events() if event["type"] not in ("message_delta", "message_stop")]
        if reply.cut == "abort":
            return await _send_events(request, events[: max(2, len(events) // 2)], abort=True)
        return await _send_events(request, events)


@dataclass(frozen=True)
class _Rendered:
    """One answer rendered for one request."""

    answer: Answer
    body: dict[str, Any]
    number: int
    model: str

    @property
    def stop_reason(self) -> str:
        return self.answer.stop_reason or ("tool_use" if self.answer.tool_uses else "end_turn")

    def usage(self) -> UsageReply:
        if isinstance(self.answer.usage, UsageReply):
            return self.answer.usage
        prompt = json.dumps([self.body.get("system"), self.body.get("tools"), self.body.get("messages")])
        output = len(self.answer.text) + sum(len(use.input_text()) for use in self.answer.tool_uses)
        return UsageReply(input_tokens=len(prompt) // 4, output_tokens=output // 4 + 1)

    def blocks(self) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": self.answer.text}] if self.answer.text else []
        for j, use in enumerate(self.answer.tool_uses):
            blocks.append({"type": "tool_use", "id": use.id or f"toolu_{self.number}_{j}", "name": use.name,
                           "input": use.input if isinstance(use.input, dict) else {}})
        return blocks

    def message(self, content: list[dict[str, Any]], stop_reason: str | None,
                usage: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"msg_{self.number}", "type": "message", "role": "assistant", "model": self.model,
                "content": content, "stop_reason": stop_reason, "stop_sequence": None, "usage": usage}

    def whole(self) -> dict[str, Any]:
        return self.message(self.blocks(), self.stop_reason, self.usage().wire())

    def events(self) -> list[dict[str, Any]]:
        """message_start (input usage), each block as start/deltas/stop, message_delta, message_stop."""
        usage = self.usage()
        start_usage = {**usage.wire(), "output_tokens": 1}
        events: list[dict[str, Any]] = [{"type": "message_start", "message": self.message([], None, start_usage)},
                                        {"type": "ping"}]
        for index, block in enumerate(self.blocks()):
            if block["type"] == "text":
                events.append({"type": "content_block_start", "index": index,
                               "content_block": {"type": "text", "text": ""}})
                events += [{"type": "content_block_delta", "index": index,
                            "delta": {"type": "text_delta", "text": piece}} for piece in _pieces(block["text"])]
            else:
                events.append({"type": "content_block_start", "index": index,
                               "content_block": {**block, "input": {}}})
                use = self.answer.tool_uses[index - (1 if self.answer.text else 0)]
                events += [{"type": "content_block_delta", "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece}}
                           for piece in _pieces(use.input_text())]
            events.append({"type": "content_block_stop", "index": index})
        events.append({"type": "message_delta", "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                       "usage": {"output_tokens": usage.output_tokens}})
        events.append({"type": "message_stop"})
        return events


def _pieces(text: str, count: int = 3) -> list[str]:
    """Split text into up to `count` pieces, as a stream delivers it."""
    if not text:
        return []
    size = -(-len(text) // count)
    return [text[start:start + size] for start in range(0, len(text), size)]


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


async def _send_events(request: web.Request, events: list[dict[str, Any]], *, abort: bool = False,
                       stall_s: float = 0.0) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for event in events:
        await response.write(_sse(event))
        if stall_s > 0 and event["type"] == "message_start":
            await asyncio.sleep(stall_s)
    if abort:
        return _abort(request, response)
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
    await response.write(f"event: message_start\ndata: {reply.body}\n\n".encode())
    await response.write_eof()
    return response


def _abort(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Drop the TCP connection as a crashed server or a proxy would."""
    if request.transport is not None:
        request.transport.abort()
    return response
