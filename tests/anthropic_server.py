"""A real local HTTP server speaking the Anthropic Messages wire format, for tests and benchmarks.

It answers from a queue of scripted replies (or a `reply_fn`), streaming (SSE events) or not as each
request asks, and can fail the ways the real API fails: error statuses with headers (429, 529, 500,
401, a prompt-too-long 400), answers slower than the client's timeout, `error` events mid-stream,
streams cut before `message_stop`, malformed JSON. It runs its own event loop in a thread
(wire_server.py).

    with MessagesServer([Answer(text="hi"), Failure.rate_limited(retry_after="2")]) as server:
        model = AnthropicModel("test-model", server.base_url, "test-key")
        ...
        assert server.requests[0]["system"][0]["type"] == "text"
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

import wire_server
from wire_server import ErrorStatus, Exchange, WireServer, estimate_tokens, pieces, sse_events


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
class Failure(ErrorStatus):
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
class MalformedJSON(wire_server.MalformedJSON):
    """HTTP 200 whose body (or first stream event) is not valid JSON."""

    body: str = '{"id": "msg_broken", "type": "message", "content": [{"type": '


Reply = Answer | Failure | StreamError | Truncated | MalformedJSON
ReplyFn = Callable[[dict[str, Any]], Reply]


class MessagesServer(WireServer[Answer | StreamError | Truncated]):
    """Serves POST /v1/messages; see `WireServer` for the script and the records."""

    kind = "messages"
    path = "/v1/messages"
    first_event = "message_start"

    @property
    def base_url(self) -> str:
        """The API root, as the Anthropic SDK expects it (it appends /v1/messages itself)."""
        return f"http://127.0.0.1:{self.port}"

    def default_reply(self) -> Answer:
        return Answer(text="ok")

    async def answer(self, request: web.Request, exchange: Exchange,
                     reply: Answer | StreamError | Truncated) -> web.StreamResponse:
        if isinstance(reply, StreamError):
            events = _Rendered(Answer(text="Partial"), exchange.body, exchange.number, self.model).events()[:3]
            events.append({"type": "error", "error": {"type": reply.type, "message": reply.message}})
            return await self.send_stream(request, sse_events(events))
        answer = reply.answer if isinstance(reply, Truncated) else reply
        if answer.delay_s > 0:
            await asyncio.sleep(answer.delay_s)
        rendered = _Rendered(answer, exchange.body, exchange.number, self.model)
        if isinstance(reply, Truncated):
            # A cut stream never gets as far as message_delta (the stop reason) or message_stop.
            events = [event for event in rendered.events() if event["type"] not in ("message_delta", "message_stop")]
            return await self.send_truncated(request, exchange, rendered.whole(), sse_events(events),
                                             abort=reply.cut == "abort")
        if exchange.stream:
            return await self.send_stream(request, sse_events(rendered.events()), stall_s=answer.stall_s)
        return web.json_response(rendered.whole())


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
        prompt = [self.body.get("system"), self.body.get("tools"), self.body.get("messages")]
        outputs = [self.answer.text, *(use.input_text() for use in self.answer.tool_uses)]
        return UsageReply(*estimate_tokens(prompt, outputs))

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
                            "delta": {"type": "text_delta", "text": piece}} for piece in pieces(block["text"])]
            else:
                events.append({"type": "content_block_start", "index": index,
                               "content_block": {**block, "input": {}}})
                use = self.answer.tool_uses[index - (1 if self.answer.text else 0)]
                events += [{"type": "content_block_delta", "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece}}
                           for piece in pieces(use.input_text())]
            events.append({"type": "content_block_stop", "index": index})
        events.append({"type": "message_delta", "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                       "usage": {"output_tokens": usage.output_tokens}})
        events.append({"type": "message_stop"})
        return events
