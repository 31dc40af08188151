"""A real local HTTP server speaking the OpenAI Responses wire format (POST /v1/responses), for tests.

It answers from a queue of scripted replies (or a `reply_fn`), streaming (SSE events) or not as each
request asks, and can fail the ways real servers fail: error statuses with headers, answers slower than
the client's timeout, streams cut mid-response, failure events inside a 200 stream, malformed JSON. It
runs its own event loop in a thread (see wire_server.py) and shares chat_server.py's wire-independent
replies.

    with ResponsesServer([Answer(text="hi"), Failure.rate_limited(retry_after="2")]) as server:
        model = OpenAIResponsesModel("test-model", server.base_url, "test-key")
        ...
        assert server.requests[0]["store"] is False
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from chat_server import Failure, MalformedJSON, ToolCallReply
from wire_server import Exchange, WireServer, estimate_tokens, pieces, sse_events

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


class ResponsesServer(WireServer[Answer | FailedResponse | Truncated]):
    """Serves POST /v1/responses; see `WireServer` for the script and the records. Each request body is
    also kept as sent in `raw_requests`, and its query in `request_queries`."""

    kind = "responses"
    path = "/v1/responses"
    first_event = "response.created"

    def __init__(self, responses: Iterable[Reply] = (), *, reply_fn: ReplyFn | None = None,
                 model: str = "test-model") -> None:
        super().__init__(responses, reply_fn=reply_fn, model=model)
        self.raw_requests: list[bytes] = []
        self.request_queries: list[dict[str, str]] = []

    def record(self, request: web.Request, raw: bytes, body: dict[str, Any]) -> None:
        super().record(request, raw, body)
        self.raw_requests.append(raw)
        self.request_queries.append(dict(request.query))

    def default_reply(self) -> Answer:
        return Answer(text="ok")

    async def answer(self, request: web.Request, exchange: Exchange,
                     reply: Answer | FailedResponse | Truncated) -> web.StreamResponse:
        if isinstance(reply, FailedResponse):
            return await self._send_failed(request, exchange, reply)
        answer = reply.answer if isinstance(reply, Truncated) else reply
        if answer.delay_s > 0:
            await asyncio.sleep(answer.delay_s)
        rendering = _Rendering(answer, exchange.body, exchange.number, self.model)
        if isinstance(reply, Truncated):
            # A cut stream never gets as far as the terminal event, which carries the usage.
            return await self.send_truncated(request, exchange, rendering.response(),
                                             sse_events(rendering.events()[:-1]), abort=reply.cut == "abort")
        if exchange.stream:
            return await self.send_stream(request, sse_events(rendering.events()))
        return web.json_response(rendering.response())

    async def _send_failed(self, request: web.Request, exchange: Exchange,
                           reply: FailedResponse) -> web.StreamResponse:
        rendering = _Rendering(Answer(text="Working on"), exchange.body, exchange.number, self.model)
        failed = {**rendering.response("failed", []), "usage": reply.usage.wire() if reply.usage else None,
                  "error": {"code": reply.code, "message": reply.message}}
        if not exchange.stream:
            return web.json_response(failed)
        events = rendering.events()[:-4]  # created, in_progress, the message item and its text deltas
        if reply.event == "error":
            events.append(rendering.event("error", code=reply.code, message=reply.message, param=None))
        else:
            events.append(rendering.event("response.failed", response=failed))
        return await self.send_stream(request, sse_events(events))


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
            outputs = [self.answer.text, *(call.arguments_text() for call in self.answer.tool_calls)]
            usage = UsageReply(*estimate_tokens(self.body.get("input", []), outputs))
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
                       for piece in pieces(item["arguments"])]
            events.append(self.event("response.function_call_arguments.done", **at, arguments=item["arguments"]))
        elif item["type"] == "message":
            text = item["content"][0]["text"]
            part = {"content_index": 0}
            events = [self.event("response.output_item.added", output_index=index,
                                 item={**item, "content": [], "status": "in_progress"}),
                      self.event("response.content_part.added", **at, **part,
                                 part={"type": "output_text", "text": "", "annotations": []})]
            events += [self.event("response.output_text.delta", **at, **part, delta=piece, logprobs=[])
                       for piece in pieces(text)]
            events += [self.event("response.output_text.done", **at, **part, text=text, logprobs=[]),
                       self.event("response.content_part.done", **at, **part, part=item["content"][0])]
        else:
            events = [self.event("response.output_item.added", output_index=index, item=item)]
        events.append(self.event("response.output_item.done", output_index=index, item=item))
        return events
