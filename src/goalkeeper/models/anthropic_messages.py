"""The Anthropic Messages wire format, through the official `anthropic` SDK.

It never retries (retry.py does) and recognises failures by exception type and status code; the one
exception is the prompt-too-long 400, which the API marks only in its message (see `_is_prompt_too_long`).

Cache breakpoints. The API caches a prompt prefix up to each block marked `cache_control`, in the order
tools → system → messages, and allows four marks. A goal's prompt is a stable prefix (system prompt,
then the goal contract in messages[1]) followed by append-only history, so the marks go on:

1. the last system block: caches the tools and the system prompt together (tools come first);
2. the last block of the goal-contract message (messages[1]): stable for the whole goal;
3. the last block of the message that ended the previous request (the one before the newest assistant
   message): the entry the previous request wrote, read back exactly, however many blocks were added
   since (the API's automatic look-back only reaches about 20 blocks);
4. the last block of the newest message: written now, read by the next request.

Marks that land on the same block count once. A long run is then mostly cache reads.

Usage. The API reports `input_tokens` (only the prompt after the last cache hit),
`cache_creation_input_tokens`, `cache_read_input_tokens` and `output_tokens`. Goalkeeper's `Usage` gets
input_tokens = the whole prompt (all three input counts), cached_input_tokens = cache reads only (cache
writes are charged, at a premium), so `charged_tokens` = uncached + cache-written input + output. The raw
numbers of the newest response stay readable in `AnthropicModel.last_usage` (a `MessagesUsage`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anthropic
import httpx2
from anthropic.types import Message as WireMessage
from anthropic.types import RawMessageStreamEvent

from goalkeeper.errors import TransientProviderError
from goalkeeper.models.base import Message, ModelRequest, ModelResponse, ToolCall, ToolSpec, Usage
from goalkeeper.models.encoded import Encoded, ascii_json, json_array, json_object
from goalkeeper.models.provider import NO_API_KEY, Provider, SdkErrors, fallback_call_id, shared_tls

ANTHROPIC_ERRORS = SdkErrors(base=anthropic.AnthropicError, timeout=anthropic.APITimeoutError,
                             connection=anthropic.APIConnectionError,
                             validation=anthropic.APIResponseValidationError, status=anthropic.APIStatusError,
                             key_refused=(anthropic.AuthenticationError, anthropic.PermissionDeniedError),
                             not_found=anthropic.NotFoundError)

_CACHE = b'{"type":"ephemeral"}'
"""The cache_control mark, encoded (five-minute cache, refreshed by every read)."""

WireBlock = dict[str, Any]

_TURN_OPENS = {role: b'{"role":"' + role.encode() + b'","content":[' for role in ("user", "assistant")}
"""How an encoded turn begins, by role: a turn is this, its blocks, then `]}`."""


@dataclass(frozen=True)
class MessagesUsage:
    """Token counts exactly as the Messages API reports them."""

    input_tokens: int = 0
    """Prompt tokens after the last cache hit or write: neither read from nor written to the cache."""
    cache_creation_input_tokens: int = 0
    """Prompt tokens written to the cache (charged above the input price)."""
    cache_read_input_tokens: int = 0
    """Prompt tokens read from the cache (charged at a tenth of it)."""
    output_tokens: int = 0

    def updated(self, reported: object) -> MessagesUsage:
        """These counts with every field `reported` (an SDK usage object) carries; missing ones stay."""
        counts = {name: getattr(reported, name, None) for name in
                  ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")}
        return replace(self, **{name: count for name, count in counts.items() if isinstance(count, int)})

    @property
    def usage(self) -> Usage:
        """Goalkeeper's usage: the whole prompt as input, cache reads (not writes) as cached."""
        prompt = self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens
        return Usage(input_tokens=prompt, cached_input_tokens=self.cache_read_input_tokens,
                     output_tokens=self.output_tokens)


def usage_from(reported: object) -> Usage:
    """Goalkeeper's usage from an SDK usage object (None or missing fields count as 0)."""
    return MessagesUsage().updated(reported).usage


class AnthropicModel(Provider[anthropic.AsyncAnthropic]):
    """A `Model` speaking the Anthropic Messages API, streaming or not."""

    errors = ANTHROPIC_ERRORS

    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key: str | None,
        *,
        stream: bool = False,
        timeout_s: float = 120.0,
        max_output_tokens: int = 8192,
        extra_headers: dict[str, str] | None = None,
        api_key_env: str | None = None,
    ) -> None:
        client = anthropic.AsyncAnthropic(
            api_key=api_key or NO_API_KEY,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,  # retries are ours (retry.py), with our policy and our budget
            default_headers=extra_headers,
            http_client=anthropic.DefaultAsyncHttpxClient(verify=shared_tls()),
        )
        super().__init__(model, client, stream=stream, timeout_s=timeout_s, api_key_env=api_key_env)
        self.max_output_tokens = max_output_tokens
        """`max_tokens` when the request sets no cap: the API requires one on every request."""
        self.last_usage: MessagesUsage | None = None
        """The raw counts (cache writes and reads apart) of the newest response, for display."""

    async def _complete_whole(self, request: ModelRequest) -> ModelResponse:
        """One non-streaming request."""
        message = await self._client.post("/v1/messages", content=self._body(request, stream=False),
                                          cast_to=WireMessage)
        if not isinstance(message, WireMessage) or not isinstance(getattr(message, "content", None), list):
            # Non-JSON bodies come back as text, and JSON without content blocks is not an answer either.
            raise TransientProviderError(f"{self.name}: the provider sent a response with no content")
        self.last_usage = MessagesUsage().updated(message.usage)
        text = "".join(block.text for block in message.content if block.type == "text")
        if text and request.on_text is not None:
            request.on_text(text)
        tool_calls = tuple(ToolCall(id=block.id or fallback_call_id(j), name=block.name,
                                    arguments=json.dumps(block.input))
                           for j, block in enumerate(message.content) if block.type == "tool_use")
        return ModelResponse(content=text, tool_calls=tool_calls, usage=self.last_usage.usage,
                             model=message.model or self.name, finish_reason=message.stop_reason)

    async def _complete_streaming(self, request: ModelRequest) -> ModelResponse:
        """One streaming request, assembled from its events."""
        stream = await self._client.post("/v1/messages", content=self._body(request, stream=True),
                                         cast_to=WireMessage, stream=True,
                                         stream_cls=anthropic.AsyncStream[RawMessageStreamEvent])
        assembly = _StreamAssembly(model=self.name)
        try:
            async for event in stream:
                assembly.add(event, request)
        # The SDK leaves transport errors raised while reading the stream unwrapped (httpx2's own).
        except (anthropic.APITimeoutError, httpx2.TimeoutException) as error:
            raise TransientProviderError(f"{self.name}: the stream stalled for {self.timeout_s:g}s mid-response",
                                         hint="retry, or raise the provider timeout",
                                         usage=assembly.usage.usage) from error
        except (anthropic.APIConnectionError, httpx2.TransportError) as error:
            raise assembly.cut("connection lost") from error
        except anthropic.APIStatusError as error:
            # An `error` event inside the stream (overloaded_error, api_error): the status was already 200.
            raise TransientProviderError(f"{self.name}: the provider reported {_error_type(error)} mid-stream: "
                                         f"{_error_message(error)}", usage=assembly.usage.usage) from error
        finally:
            await stream.close()
        self.last_usage = assembly.usage
        return assembly.response()

    def _body(self, request: ModelRequest, stream: bool) -> bytes:
        """The request body as JSON bytes, sent as is. A `body=` dict (and so `messages.create`, which
        passes one) is deep-copied block by block by the SDK before it is serialised; here each block is
        encoded once, and a step encodes only the messages that are new (encoded.py)."""
        start = next((i for i, message in enumerate(request.messages) if message.role != "system"),
                     len(request.messages))
        system = [block for blocks in self._system.of(request.messages[:start]) for block in blocks]
        turns = wire_turns(self._turns.of(request.messages[start:]),
                           [message.role for message in request.messages[start:]])
        tools = list(self._tools.of(request.tools))
        if system:
            system[-1] = _marked(system[-1])
        elif tools:
            tools[-1] = _marked(tools[-1])
        fields = [("model", ascii_json(self.name)), ("messages", json_array(turns)),
                  ("max_tokens", ascii_json(max(1, request.max_output_tokens or self.max_output_tokens)))]
        if system:  # the API rejects empty text blocks, so no system prompt means no `system` at all
            fields.append(("system", json_array(system)))
        if tools:
            fields.append(("tools", json_array(tools)))
        if stream:
            fields.append(("stream", b"true"))
        return json_object(fields)  # ASCII escapes: a stray surrogate in tool output cannot break it

    @functools.cached_property
    def _system(self) -> Encoded[Message, list[bytes]]:
        """The leading system messages of the previous request, as encoded `system` blocks."""
        return Encoded(lambda message: [ascii_json({"type": "text", "text": message.content})]
                       if message.content else [])

    @functools.cached_property
    def _turns(self) -> Encoded[Message, tuple[str, list[bytes]]]:
        """The other messages of the previous request, each as (role, encoded content blocks)."""
        return Encoded(lambda message: _encoded_blocks(*_wire_blocks(message)))

    @functools.cached_property
    def _tools(self) -> Encoded[ToolSpec, bytes]:
        return Encoded(lambda tool: ascii_json(_wire_tool(tool)))

    def _status_detail(self, error: Exception) -> str:
        if not isinstance(error, anthropic.APIStatusError):  # always one: `errors.status` is
            return ""
        return f" {_error_type(error)}: {_error_message(error)}"

    def _too_long(self, error: Exception) -> bool:
        return getattr(error, "status_code", None) == 413 or (
            isinstance(error, anthropic.BadRequestError) and _is_prompt_too_long(error))

    def _too_long_message(self, detail: str) -> str:
        return f"{self.where}: the request does not fit the context window ({detail})"


@dataclass
class _PartialBlock:
    """A content block while its deltas arrive: text, or a tool_use whose JSON input comes in pieces."""

    type: str
    id: str = ""
    name: str = ""
    pieces: list[str] = field(default_factory=list)


@dataclass
class _StreamAssembly:
    """Accumulates stream events into one response."""

    model: str
    blocks: dict[int, _PartialBlock] = field(default_factory=dict)
    usage: MessagesUsage = field(default_factory=MessagesUsage)
    stop_reason: str | None = None
    stopped: bool = False
    """message_stop arrived: only then is the response whole."""

    def add(self, event: RawMessageStreamEvent, request: ModelRequest) -> None:
        """Take one event: text deltas go to `on_text` as they arrive."""
        if event.type == "message_start":
            self.model = event.message.model or self.model
            self.usage = self.usage.updated(event.message.usage)
        elif event.type == "content_block_start":
            block = event.content_block
            self.blocks[event.index] = _PartialBlock(block.type, getattr(block, "id", ""), getattr(block, "name", ""))
        elif event.type == "content_block_delta":
            partial = self.blocks.setdefault(event.index, _PartialBlock(event.delta.type))
            if event.delta.type == "text_delta":
                partial.pieces.append(event.delta.text)
                if request.on_text is not None:
                    request.on_text(event.delta.text)
            elif event.delta.type == "input_json_delta":
                partial.pieces.append(event.delta.partial_json)
        elif event.type == "message_delta":
            self.stop_reason = event.delta.stop_reason or self.stop_reason
            self.usage = self.usage.updated(event.usage)  # cumulative counts: the latest wins
        elif event.type == "message_stop":
            self.stopped = True

    def cut(self, why: str) -> TransientProviderError:
        """The error for a stream that ended early; the input it already reported is still charged."""
        return TransientProviderError(f"{self.model}: stream ended mid-response ({why})",
                                      hint="retry; the server or a proxy cut the stream", usage=self.usage.usage)

    def response(self) -> ModelResponse:
        """The assembled response; a stream that never sent message_stop was cut."""
        if not self.stopped:
            raise self.cut("no message_stop")
        ordered = [block for _, block in sorted(self.blocks.items())]
        text = "".join("".join(block.pieces) for block in ordered if block.type == "text")
        tool_calls = tuple(ToolCall(id=block.id or fallback_call_id(j), name=block.name,
                                    arguments="".join(block.pieces) or "{}")
                           for j, block in enumerate(ordered) if block.type == "tool_use")
        return ModelResponse(content=text, tool_calls=tool_calls, usage=self.usage.usage, model=self.model,
                             finish_reason=self.stop_reason)


def wire_turns(messages: Sequence[tuple[str, list[bytes]]], roles: Sequence[str]) -> list[bytes]:
    """The messages after the leading system ones, each as (role, encoded blocks), as alternating
    user/assistant turns with cache breakpoints on the goal contract, the previous request's end and the
    newest message.

    A message that yields several blocks of the same role as the one before (tool results, then any
    user text that follows them) joins that turn, because the API requires roles to alternate.
    """
    turns: list[tuple[str, list[bytes]]] = []
    ends: list[tuple[int, int] | None] = []  # per message: where the last block so far lies (turn, block)
    for role, blocks in messages:
        if blocks and turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        elif blocks:
            turns.append((role, list(blocks)))  # a copy: the cached list stays as it was encoded
        ends.append((len(turns) - 1, len(turns[-1][1]) - 1) if turns else None)
    for turn, block in _breakpoints(ends, roles):
        turns[turn][1][block] = _marked(turns[turn][1][block])
    return [_TURN_OPENS[role] + b",".join(blocks) + b"]}" for role, blocks in turns]


def _breakpoints(ends: Sequence[tuple[int, int] | None], roles: Sequence[str]) -> set[tuple[int, int]]:
    """The ends of the goal contract (the first message), of the previous request (the message before the
    newest assistant message) and of the newest message; a block marked twice counts once."""
    assistants = [i for i, role in enumerate(roles) if role == "assistant"]
    previous_end = assistants[-1] - 1 if assistants else -1
    return {end for i in (0, previous_end, len(ends) - 1) if 0 <= i < len(ends) and (end := ends[i]) is not None}


def _marked(block: bytes) -> bytes:
    """An encoded block with the cache_control mark as its last key."""
    return block[:-1] + b',"cache_control":' + _CACHE + b"}"


def _encoded_blocks(role: str, blocks: list[WireBlock]) -> tuple[str, list[bytes]]:
    return role, [ascii_json(block) for block in blocks]


def _wire_blocks(message: Message) -> tuple[str, list[WireBlock]]:
    """One message as (role, content blocks). The API rejects empty text blocks, so none are made."""
    if message.role == "tool":
        result: WireBlock = {"type": "tool_result", "tool_use_id": message.tool_call_id or ""}
        if message.content:
            result["content"] = message.content
        return "user", [result]
    text: list[WireBlock] = [{"type": "text", "text": message.content}] if message.content.strip() else []
    if message.role != "assistant":
        return "user", text  # a system message after the prefix has no place of its own: it is user text
    uses = [{"type": "tool_use", "id": call.id, "name": call.name, "input": _tool_input(call.arguments)}
            for call in message.tool_calls]
    return "assistant", text + uses


def _tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's arguments as the JSON object the API wants. Arguments that are not a JSON object
    are kept as `{"_raw": text}`: the history must still say what the model sent, and the tool already
    answered that call with its parse error."""
    if not arguments.strip():
        return {}
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError:
        return {"_raw": arguments}
    return parsed if isinstance(parsed, dict) else {"_raw": arguments}


def _wire_tool(tool: ToolSpec) -> WireBlock:
    """A tool spec in Messages form."""
    return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}


def _is_prompt_too_long(error: anthropic.BadRequestError) -> bool:
    """True when a 400 says the prompt does not fit the context window.

    The API has no structured code for this: it answers `invalid_request_error` (the type of every
    malformed request) with a message such as "prompt is too long: 210384 tokens > 200000 maximum" or
    "input length and `max_tokens` exceed context limit: ...". So this is the one place that reads
    the message text; everything else goes by type and status.
    """
    if _error_type(error) != "invalid_request_error":
        return False
    message = _error_message(error).lower()
    return message.startswith("prompt is too long") or "exceed context limit" in message


def _error_type(error: anthropic.APIStatusError) -> str:
    """The API's structured error type (rate_limit_error, overloaded_error, ...), or "error" without one."""
    return str(error.type or "error")


def _error_message(error: anthropic.APIStatusError) -> str:
    """The provider's own message from the error body, for people to read."""
    return error.api_message or error.message
