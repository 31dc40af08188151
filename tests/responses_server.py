"""A real local HTTP server speaking the OpenAI Responses wire format (POST /v1/responses), for tests.

It answers from a queue of scripted replies (or a `reply_fn`), streaming (SSE events) or not as each
request asks, and can fail the ways real servers fail: error statuses with headers, answers slower than
the client's timeout, streams cut mid-response, failure events inside a 200 stream, malformed JSON. It
runs its own event loop in a thread, like chat_server.py, whose wire-independent replies it shares.

    with ResponsesServer([Answer(text="hi"), Failure.rate_limited(retry_after="2")]) as server:
        model = OpenAIResponsesModel("test-model", server.base_url, "test-key")
        ...
        assert server.requests[0]["store"] is False
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

from chat_server import Failure, MalformedJSON, ToolCallReply

__all__ = ["Answer", "FailedResponse", "Failure", "MalformedJSON", "Reply", "ResponsesServer", "ToolCallReply",
           "Truncated", "UsageReply"]


@dataclass(frozen=True)
class UsageReply:
    """Usage as a Responses server reports it."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def wire(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


@dataclass(frozen=True)
class Answer:
    """A normal answer: text and/or function calls, streamed or whole as the request asks."""

    text: str = ""
    tool_calls: tuple[ToolCallReply, ...] = ()
    usage: UsageReply | Literal["estimate", "none"] = "estimate"
    """"estimate": about four characters a token; "none": no usage at all in the answer."""
    incomplete_reason: str | None = None
    """When set, the response ends with status "incomplete" and this reason (e.g. "max_output_tokens")."""
    reasoning: bool = False
    """Put a reasoning item before the message, as reasoning models do."""
    stream_items: bool = True
    """False: the stream carries no item events, only the lifecycle and the final response with its output
    (as some compatible servers do)."""
    delay_s: float = 0.0
    """Wait this long before answering (longer than the client timeout makes it time out)."""


@dataclass(frozen=True)
class FailedResponse:
    """HTTP 200, then failure. Streaming: some text, then a `response.failed` event (or an `error` event).
    Whole: a response object whose status is "failed"."""

    code: str = "server_error"
    message: str = "The model failed to generate a response."
    event: Literal["response.failed", "error"] = "response.failed"
    usage: UsageReply | None = None

    @classmethod
    def context_length_exceeded(cls) -> FailedResponse:
        return cls("context_length_exceeded", "Your input exceeds the context window of this model.")


@dataclass(frozen=True)
class Truncated:
    """A response cut short. `cut="abort"` drops the connection mid-body; `cut="end"` (streams only) ends
    the stream cleanly but never sends `response.completed`."""

    answer: Answer = field(default_factory=lambda: Answer(text="partial answer"))
    cut: Literal["abort", "end"] = "abort"


Reply = Answer | Failure | FailedResponse | Truncated | MalformedJSON
ReplyFn = Callable[[dict[str, Any]], Reply]


class ResponsesServer:
    """Serves POST /v1/responses on 127.0.0.1 at a free port.

    Replies come from `responses` in order; once it is empty the last reply repeats. A `reply_fn`, when
    given, answers every request instead. Every request body is kept parsed in `requests` and as sent in
    `raw_requests`; its headers (names lowercased) in `request_headers` and its query in `request_queries`.
    """

    def __init__(self, responses: Iterable[Reply] = (), *, reply_fn: ReplyFn | None = None,
                 model: str = "test-model") -> None:
        self.model = model
        self.reply_fn = reply_fn
        self.requests: list[dict[str, Any]] = []
        self.raw_requests: list[bytes] = []
        self.request_headers: list[dict[str, str]] = []
        self.request_queries: list[dict[str, str]] = []
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
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, *replies: Reply) -> None:
        """Queue more replies (thread-safe)."""
        with self._lock:
            self._queue.extend(replies)

    def __enter__(self) -> ResponsesServer:
        self._thread = threading.Thread(target=self._run, name=f"responses-server-{self.port}", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._startup_error is not None:
            raise RuntimeError("responses server failed to start") from self._startup_error
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
        app.router.add_post("/v1/responses", self._responses)
        # Cancel handlers whose client went away, so slow replies do not hold up shutdown.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, self._socket).start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def _next_reply(self, request: web.Request, raw: bytes, body: dict[str, Any]) -> tuple[int, Reply]:
        with self._lock:
            self.requests.append(body)
            self.raw_requests.append(raw)
            self.request_headers.append({key.lower(): value for key, value in request.headers.items()})
            self.request_queries.append(dict(request.query))
            number = len(self.requests) - 1
            if self.reply_fn is not None:
                return number, self.reply_fn(body)
            if self._queue:
                self._last = self._queue.popleft()
            return number, self._last

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw)
        number, reply = self._next_reply(request, raw, body)
        stream = bool(body.get("stream"))
        if isinstance(reply, Failure):
            return web.json_response(reply.wire(), status=reply.status, headers=reply.headers)
        if isinstance(reply, MalformedJSON):
            return await _send_malformed(request, reply, stream)
        if isinstance(reply, FailedResponse):
            return await _send_failed(request, _Rendering(Answer(text="Working on"), body, number, self.model),
                                      reply, stream)
        answer = reply.answer if isinstance(reply, Truncated) else reply
        if answer.delay_s > 0:
            await asyncio.sleep(answer.delay_s)
        rendering = _Rendering(answer, body, number, self.model)
        if stream:
            return await _send_stream(request, rendering.events(),
                                      reply.cut if isinstance(reply, Truncated) else None)
        if isinstance(reply, Truncated):
            return await _send_cut_body(request, json.dumps(rendering.response()))
        return web.json_response(rendering.response())


@dataclass
class _Rendering:
    """One answer rendered for one request: a whole response object, or its stream of events."""

    answer: Answer
    body: dict[str, Any]
    number: int
    model: str
    sequence: int = 0

    def call_id(self, position: int) -> str:
        return self.answer.tool_calls[position].id or f"call_{self.number}_{position}"

    def usage(self) -> dict[str, Any] | None:
        usage = self.answer.usage
        if usage == "none":
            return None
        if usage == "estimate":
            calls = self.answer.tool_calls
            output = len(self.answer.text) + sum(len(call.arguments_text()) for call in calls)
            usage = UsageReply(len(json.dumps(self.body.get("input", []))) // 4, output // 4 + 1)
        return usage.wire()

    def items(self) -> list[dict[str, Any]]:
        """The finished output items: reasoning (if asked), the message (if any text), then the calls."""
        items: list[dict[str, Any]] = []
        if self.answer.reasoning:
            items.append({"type": "reasoning", "id": f"rs_{self.number}", "summary": []})
        if self.answer.text:
            items.append({"type": "message", "id": f"msg_{self.number}", "status": "completed",
                          "role": "assistant",
                          "content": [{"type": "output_text", "text": self.answer.text, "annotations": []}]})
        items += [{"type": "function_call", "id": f"fc_{self.number}_{j}", "call_id": self.call_id(j),
                   "name": call.name, "arguments": call.arguments_text(), "status": "completed"}
                  for j, call in enumerate(self.answer.tool_calls)]
        return items

    def response(self, status: str | None = None, output: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        reason = self.answer.incomplete_reason
        final_status = status or ("incomplete" if reason else "completed")
        response: dict[str, Any] = {
            "id": f"resp_{self.number}", "object": "response", "created_at": int(time.time()),
            "model": self.model, "status": final_status, "error": None,
            "incomplete_details": {"reason": reason} if final_status == "incomplete" else None,
            "output": self.items() if output is None else output, "parallel_tool_calls": True,
            "store": self.body.get("store", True), "tool_choice": "auto", "tools": self.body.get("tools", []),
            "usage": self.usage() if final_status != "in_progress" else None,
        }
        return response

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.sequence += 1
        return {"type": kind, "sequence_number": self.sequence, **fields}

    def events(self) -> list[dict[str, Any]]:
        """The stream: created, each item (added, deltas in pieces, done), then completed or incomplete."""
        events = [self.event("response.created", response=self.response("in_progress", [])),
                  self.event("response.in_progress", response=self.response("in_progress", []))]
        for index, item in enumerate(self.items() if self.answer.stream_items else []):
            events += self.item_events(index, item)
        final = self.response()
        events.append(self.event(f"response.{final['status']}", response=final))
        return events

    def item_events(self, index: int, item: dict[str, Any]) -> list[dict[str, Any]]:
        at = {"output_index": index, "item_id": item["id"]}
        if item["type"] == "function_call":
            events = [self.event("response.output_item.added", output_index=index,
                                 item={**item, "arguments": "", "status": "in_progress"})]
            events += [self.event("response.function_call_arguments.delta", **at, delta=piece)
                       for piece in _pieces(item["arguments"])]
            events.append(self.event("response.function_call_arguments.done", **at, arguments=item["arguments"]))
        elif item["type"] == "message":
            text = item["content"][0]["text"]
            part = {"content_index": 0}
            events = [self.event("response.output_item.added", output_index=index,
                                 item={**item, "content": [], "status": "in_progress"}),
                      self.event("response.content_part.added", **at, **part,
                                 part={"type": "output_text", "text": "", "annotations": []})]
            events += [self.event("response.output_text.delta", **at, **part, delta=piece, logprobs=[])
                       for piece in _pieces(text)]
            events += [self.event("response.output_text.done", **at, **part, text=text, logprobs=[]),
                       self.event("response.content_part.done", **at, **part, part=item["content"][0])]
        else:
            events = [self.event("response.output_item.added", output_index=index, item=item)]
        events.append(self.event("response.output_item.done", output_index=index, item=item))
        return events


def _pieces(text: str, count: int = 3) -> list[str]:
    """Split text into up to `count` pieces, as a stream delivers it."""
    if not text:
        return []
    size = -(-len(text) // count)
    return [text[start:start + size] for start in range(0, len(text), size)]


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


async def _open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    return response


async def _send_stream(request: web.Request, events: list[dict[str, Any]], cut: str | None) -> web.StreamResponse:
    response = await _open_stream(request)
    if cut is not None:
        # A cut stream never gets as far as the terminal event, which carries the usage.
        events = events[:-1]
    if cut == "abort":
        for event in events[: max(1, len(events) // 2)]:
            await response.write(_sse(event))
        return _abort(request, response)
    for event in events:
        await response.write(_sse(event))
    await response.write_eof()
    return response


async def _send_failed(request: web.Request, rendering: _Rendering, reply: FailedResponse,
                       stream: bool) -> web.StreamResponse:
    failed = {**rendering.response("failed", []), "usage": reply.usage.wire() if reply.usage else None,
              "error": {"code": reply.code, "message": reply.message}}
    if not stream:
        return web.json_response(failed)
    events = rendering.events()[:-4]  # created, in_progress, the message item and its text deltas
    if reply.event == "error":
        events.append(rendering.event("error", code=reply.code, message=reply.message, param=None))
    else:
        events.append(rendering.event("response.failed", response=failed))
    return await _send_stream(request, events, None)


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
    response = await _open_stream(request)
    await response.write(f"event: response.created\ndata: {reply.body}\n\n".encode())
    await response.write_eof()
    return response


def _abort(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Drop the TCP connection as a crashed server or a proxy would."""
    if request.transport is not None:
        request.transport.abort()
    return response
