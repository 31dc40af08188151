"""The OpenAI Responses wire format (POST /responses), through the official `openai` SDK's transport.

Every request carries the whole conversation (`store: false`, never `previous_response_id`), so the harness
alone decides what the model sees, what stays cached and when to compact. It never retries (retry.py does)
and recognises failures by exception type, status and structured code (provider.py, openai_errors.py), never by text.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import openai
import pydantic

from goalkeeper.errors import ProviderError, TransientProviderError
from goalkeeper.models.base import Message, ModelRequest, ModelResponse, ToolCall, ToolSpec, Usage
from goalkeeper.models.encoded import Encoded, compact_json, json_array, json_object
from goalkeeper.models.openai_errors import OpenAIProvider, stream_error
from goalkeeper.models.provider import fallback_call_id

ReasoningEffort = Literal["minimal", "low", "medium", "high"]

_MIN_OUTPUT_TOKENS = 16
"""OpenAI refuses a `max_output_tokens` below 16 with HTTP 400, so a smaller cap is raised to it."""

_FINISH_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}
"""`incomplete_details.reason` in the Chat Completions vocabulary the rest of goalkeeper reads."""


class OpenAIResponsesModel(OpenAIProvider):
    """A `Model` speaking the Responses API, streaming or not."""

    malformed = (json.JSONDecodeError, pydantic.ValidationError)

    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key: str | None,
        *,
        stream: bool = False,
        timeout_s: float = 120.0,
        reasoning_effort: ReasoningEffort | None = None,
        extra_headers: dict[str, str] | None = None,
        query_params: dict[str, str] | None = None,
        api_key_env: str | None = None,
    ) -> None:
        super().__init__(model, base_url, api_key, stream=stream, timeout_s=timeout_s, extra_headers=extra_headers,
                         query_params=query_params, api_key_env=api_key_env)
        self.reasoning_effort = reasoning_effort
        """Sent as `reasoning.effort` when set; left out otherwise, so the model's default applies."""

    async def _complete_whole(self, request: ModelRequest) -> ModelResponse:
        """One non-streaming request."""
        raw = await self._client.post("/responses", content=self._body(request, stream=False), cast_to=bytes)
        final = _WireResponse.model_validate_json(raw)
        if final.output is None and final.status != "failed":  # a failure is reported as such by _finish
            raise TransientProviderError(f"{self.where}: the provider sent a response with no output")
        content, tool_calls = _parse_output(final.output or [])
        if content and request.on_text is not None:
            request.on_text(content)
        return self._finish(final, content, tool_calls)

    async def _complete_streaming(self, request: ModelRequest) -> ModelResponse:
        """One streaming request, assembled from its events.

        The SDK's stream class does the transport, the SSE framing and the mapping of read timeouts and
        cut connections. Events come back as plain JSON (`AsyncStream[object]`) and are read through the
        small lenient models below rather than the SDK's `ResponseStreamEvent`: building that union costs
        about 150 µs an event against 3 µs (it runs for every text delta), and an event type the SDK does
        not know (a newer or vendor event) is built as the union's first variant, an audio delta.
        """
        stream = await self._client.post("/responses", content=self._body(request, stream=True), cast_to=object,
                                         stream=True, stream_cls=openai.AsyncStream[object])
        assembly = _StreamAssembly(request.on_text)
        await self._drain(stream, lambda data: self._take(assembly, _WireEvent.model_validate(data)))
        if assembly.final is None:
            raise TransientProviderError(f"{self.where}: stream ended mid-response (no response.completed)",
                                         hint="retry; the server or a proxy cut the stream")
        content, tool_calls = assembly.output()
        return self._finish(assembly.final, content, tool_calls)

    def _take(self, assembly: _StreamAssembly, event: _WireEvent) -> None:
        """Feed one event to the assembly; a failure event ends the request with its error."""
        if event.type == "response.failed":
            raise self._failure(event.response or _WireResponse())
        if event.type == "error":
            raise stream_error(self.where, code=event.code, kind=None, message=event.message or "error event")
        assembly.add(event)

    def _finish(self, final: _WireResponse, content: str, tool_calls: tuple[ToolCall, ...]) -> ModelResponse:
        """The response, once its output is known; a failed status raises like a failure event."""
        if final.status == "failed":
            raise self._failure(final)
        if final.status not in (None, "completed", "incomplete"):
            raise TransientProviderError(f"{self.where}: the response ended with status {final.status!r}",
                                         usage=_usage(final.usage) if final.usage else None)
        return ModelResponse(content=content, tool_calls=tool_calls, usage=_usage(final.usage),
                             model=final.model or self.name, finish_reason=_finish_reason(final, tool_calls))

    def _failure(self, final: _WireResponse) -> ProviderError:
        """The error for a response whose status is "failed"; usage it reports is still charged."""
        error = final.error or _WireError()
        return stream_error(self.where, code=error.code, kind=error.type, message=error.message,
                            usage=_usage(final.usage) if final.usage else None)

    def _body(self, request: ModelRequest, stream: bool) -> bytes:
        """The request body as JSON bytes, posted as is (the SDK's typed `create` re-walks every item on every
        request); a step encodes only the messages that are new (encoded.py).

        Keys are in a fixed order with the conversation last but one, so that consecutive requests share
        their leading bytes; `max_output_tokens` changes per request and so comes after the input.
        """
        fields = [("model", compact_json(self.name)), ("store", b"false"), ("stream", compact_json(stream))]
        if self.reasoning_effort is not None:
            fields.append(("reasoning", compact_json({"effort": self.reasoning_effort})))
        if request.tools:  # sent only when set: some servers reject an empty tool list
            fields.append(("tools", json_array(self._tools.of(request.tools))))
        fields.append(("input", json_array(self._input.of(request.messages))))
        if request.max_output_tokens is not None:
            fields.append(("max_output_tokens", compact_json(max(_MIN_OUTPUT_TOKENS, request.max_output_tokens))))
        return json_object(fields)

    @functools.cached_property
    def _input(self) -> Encoded[Message, bytes]:
        """Each message of the previous request, encoded as its input items."""
        return Encoded(lambda message: b",".join(map(compact_json, _input_items(message))))

    @functools.cached_property
    def _tools(self) -> Encoded[ToolSpec, bytes]:
        return Encoded(lambda tool: compact_json(_responses_tool(tool)))

    def _malformed(self, error: Exception) -> ProviderError:
        """The error for a body that is not JSON, or JSON that is not a Responses object."""
        if not isinstance(error, pydantic.ValidationError) or error.errors()[0]["type"] == "json_invalid":
            return TransientProviderError(f"{self.where}: the provider sent malformed JSON",
                                          hint="retry; if it persists, check the base_url")
        return TransientProviderError(f"{self.where}: the response did not match the Responses wire format",
                                      hint="check that the server at base_url speaks the Responses API")


def _input_items(message: Message) -> list[dict[str, str]]:
    """One message as Responses input items (one or more: an assistant message's tool calls are items).

    System messages stay input items (role "system") at their place in the conversation rather than
    moving to `instructions`: one rule for every message keeps the wire prefix exactly the message prefix
    (byte-stable by construction), a later system message keeps its position, and "system" is the role
    every compatible server knows (OpenAI reads it as "developer" for reasoning models).
    """
    if message.role == "tool":
        return [{"type": "function_call_output", "call_id": message.tool_call_id or "", "output": message.content}]
    items = [{"role": message.role, "content": message.content}] if message.content or not message.tool_calls else []
    items += [{"type": "function_call", "call_id": call.id, "name": call.name, "arguments": call.arguments}
              for call in message.tool_calls]
    return items


def _responses_tool(tool: ToolSpec) -> dict[str, object]:
    """A tool spec as a Responses function tool. Not strict: our schemas have optional properties."""
    return {"type": "function", "name": tool.name, "description": tool.description, "parameters": tool.parameters,
            "strict": False}


class _Wire(pydantic.BaseModel):
    """Base of the lenient wire models: unknown fields are ignored and every field has a default."""

    model_config = pydantic.ConfigDict(extra="ignore")


class _WirePart(_Wire):
    type: str = ""
    text: str | None = None


class _WireItem(_Wire):
    type: str = ""
    id: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    content: list[_WirePart] | str | None = None


class _WireTokenDetails(_Wire):
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


class _WireUsage(_Wire):
    input_tokens: int | None = None
    input_tokens_details: _WireTokenDetails | None = None
    output_tokens: int | None = None
    output_tokens_details: _WireTokenDetails | None = None


class _WireError(_Wire):
    code: str | None = None
    type: str | None = None
    message: str = "the response failed"


class _WireIncomplete(_Wire):
    reason: str | None = None


class _WireResponse(_Wire):
    model: str | None = None
    status: str | None = None
    output: list[_WireItem] | None = None
    usage: _WireUsage | None = None
    error: _WireError | None = None
    incomplete_details: _WireIncomplete | None = None


class _WireEvent(_Wire):
    """Any stream event; which fields are set depends on `type`."""

    type: str = ""
    output_index: int | None = None
    item_id: str | None = None
    item: _WireItem | None = None
    delta: str | None = None
    arguments: str | None = None
    response: _WireResponse | None = None
    code: str | None = None
    message: str | None = None


@dataclass
class _PartialItem:
    """One output item while its events arrive: a message's text or a function call's pieces."""

    type: str
    text: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _StreamAssembly:
    """Accumulates stream events into one response; text deltas go to `on_text` as they arrive."""

    on_text: Callable[[str], None] | None
    items: dict[int | str, _PartialItem] = field(default_factory=dict)
    final: _WireResponse | None = None
    """The response from `response.completed` (or `response.incomplete`): status and usage."""

    def add(self, event: _WireEvent) -> None:
        """Take one event; types that carry nothing we use (reasoning, content parts) are skipped."""
        if event.type in ("response.completed", "response.incomplete"):
            self.final = event.response or _WireResponse()
        elif event.type in ("response.output_item.added", "response.output_item.done") and event.item:
            self._take_item(self._partial(event, event.item.type), event.item)
        elif event.type == "response.output_text.delta" and event.delta:
            self._partial(event, "message").text.append(event.delta)
            self._emit(event.delta)
        elif event.type == "response.function_call_arguments.delta" and event.delta:
            self._partial(event, "function_call").arguments.append(event.delta)
        elif event.type == "response.function_call_arguments.done" and event.arguments is not None:
            self._partial(event, "function_call").arguments = [event.arguments]

    def output(self) -> tuple[str, tuple[ToolCall, ...]]:
        """Text and tool calls in output order. When the stream carried no item events at all, the final
        response's own output is used instead, and its text goes to `on_text` then."""
        if not self.items and self.final is not None and self.final.output:
            content, tool_calls = _parse_output(self.final.output)
            if content:
                self._emit(content)
            return content, tool_calls
        content = "".join("".join(item.text) for item in self.items.values() if item.type == "message")
        calls = [item for item in self.items.values() if item.type == "function_call"]
        return content, tuple(ToolCall(id=call.call_id or fallback_call_id(j), name=call.name,
                                       arguments="".join(call.arguments)) for j, call in enumerate(calls))

    def _partial(self, event: _WireEvent, kind: str) -> _PartialItem:
        """The item an event belongs to, by output index (or item id from servers that omit the index)."""
        key: int | str = event.output_index if event.output_index is not None else event.item_id or ""
        return self.items.setdefault(key, _PartialItem(type=kind))

    def _take_item(self, partial: _PartialItem, item: _WireItem) -> None:
        """An item as `added` announces it or `done` completes it; `done` is authoritative."""
        if item.type == "function_call":
            partial.call_id = item.call_id or item.id or partial.call_id
            partial.name = item.name or partial.name
            if item.arguments:
                partial.arguments = [item.arguments]
        elif item.type == "message" and not partial.text:
            text = _message_text(item)  # a server that sent the text only whole, without deltas
            if text:
                partial.text.append(text)
                self._emit(text)

    def _emit(self, text: str) -> None:
        if self.on_text is not None:
            self.on_text(text)


def _parse_output(output: list[_WireItem]) -> tuple[str, tuple[ToolCall, ...]]:
    """Text and tool calls from a whole response's output items; reasoning items are skipped."""
    content = "".join(_message_text(item) for item in output if item.type == "message")
    calls = [item for item in output if item.type == "function_call"]
    return content, tuple(ToolCall(id=call.call_id or call.id or fallback_call_id(j), name=call.name or "",
                                   arguments=call.arguments or "") for j, call in enumerate(calls))


def _message_text(item: _WireItem) -> str:
    """The text of a message item: its output_text parts, or a plain string from lenient servers."""
    if isinstance(item.content, str):
        return item.content
    return "".join(part.text or "" for part in item.content or () if part.type == "output_text")


def _finish_reason(final: _WireResponse, tool_calls: tuple[ToolCall, ...]) -> str:
    """The status in Chat Completions terms: stop, tool_calls, length, content_filter."""
    if final.status == "incomplete":
        reason = final.incomplete_details.reason if final.incomplete_details else None
        return _FINISH_REASONS.get(reason or "", reason or "incomplete")
    return "tool_calls" if tool_calls else "stop"


def _usage(usage: _WireUsage | None) -> Usage:
    """Our usage from the provider's; any missing field counts as 0."""
    if usage is None:
        return Usage()
    input_details = usage.input_tokens_details or _WireTokenDetails()
    output_details = usage.output_tokens_details or _WireTokenDetails()
    return Usage(input_tokens=usage.input_tokens or 0, cached_input_tokens=input_details.cached_tokens or 0,
                 output_tokens=usage.output_tokens or 0, reasoning_tokens=output_details.reasoning_tokens or 0)
