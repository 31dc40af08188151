"""The OpenAI Chat Completions wire format, through the official `openai` SDK.

Also serves OpenAI-compatible servers (llama.cpp, vLLM, OpenRouter). It never retries (retry.py does)
and recognises failures by exception type and status code (provider.py, openai_errors.py), never by the
text of a message.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import openai
from openai.types import CompletionUsage
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall

from goalkeeper.errors import TransientProviderError
from goalkeeper.models.base import Message, ModelRequest, ModelResponse, ToolCall, ToolSpec, Usage
from goalkeeper.models.encoded import Encoded, compact_json, json_array, json_object
from goalkeeper.models.openai_errors import OpenAIProvider
from goalkeeper.models.provider import fallback_call_id


class OpenAIChatModel(OpenAIProvider):
    """A `Model` speaking Chat Completions, streaming or not."""

    @functools.cached_property
    def _messages(self) -> Encoded[Message, bytes]:
        """Each message of the previous request, encoded."""
        return Encoded(lambda message: compact_json(_chat_message(message)))

    @functools.cached_property
    def _tools(self) -> Encoded[ToolSpec, bytes]:
        return Encoded(lambda tool: compact_json(_chat_tool(tool)))

    async def _complete_whole(self, request: ModelRequest) -> ModelResponse:
        """One non-streaming request."""
        completion = await self._client.post(
            "/chat/completions", content=self._body(request, stream=False), cast_to=ChatCompletion)
        if not isinstance(completion, ChatCompletion) or not getattr(completion, "choices", None):
            # Non-JSON bodies come back as text, and odd JSON without choices is not an answer either.
            raise TransientProviderError(f"{self.name}: the provider sent a response with no choices")
        choice = completion.choices[0]
        content = choice.message.content or ""
        if content and request.on_text is not None:
            request.on_text(content)
        tool_calls = tuple(
            ToolCall(id=call.id or fallback_call_id(j), name=call.function.name,
                     arguments=call.function.arguments)
            for j, call in enumerate(choice.message.tool_calls or ())
            if isinstance(call, ChatCompletionMessageFunctionToolCall)
        )
        return ModelResponse(content=content, tool_calls=tool_calls, usage=usage_from(completion.usage),
                             model=completion.model or self.name, finish_reason=choice.finish_reason)

    async def _complete_streaming(self, request: ModelRequest) -> ModelResponse:
        """One streaming request, assembled from its deltas."""
        stream = await self._client.post("/chat/completions", content=self._body(request, stream=True),
                                         cast_to=ChatCompletion, stream=True,
                                         stream_cls=openai.AsyncStream[ChatCompletionChunk])
        assembly = _StreamAssembly(model=self.name)
        await self._drain(stream, lambda chunk: assembly.add(chunk, request))
        return assembly.response()

    def _body(self, request: ModelRequest, stream: bool) -> bytes:
        """The request body as JSON bytes, posted as is. The SDK's typed `create` re-walks every message on
        every request (about 0.5 ms each); here a step encodes only the messages that are new (encoded.py)."""
        fields = [("model", compact_json(self.name)), ("messages", json_array(self._messages.of(request.messages))),
                  ("stream", compact_json(stream))]
        if stream:
            fields.append(("stream_options", b'{"include_usage":true}'))
        if request.tools:  # sent only when set: some servers reject an empty tool list
            # OpenAI's default, said out loud: llama.cpp's function-calling format shows the model no
            # tools at all unless tool_choice is given.
            fields += [("tools", json_array(self._tools.of(request.tools))), ("tool_choice", b'"auto"')]
        if request.max_output_tokens is not None:
            fields.append(("max_tokens", compact_json(max(1, request.max_output_tokens))))
        return json_object(fields)


@dataclass
class _PartialToolCall:
    """A tool call while its deltas arrive: id and name come first, arguments in pieces."""

    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _StreamAssembly:
    """Accumulates stream chunks into one response."""

    model: str
    text: list[str] = field(default_factory=list)
    tool_calls: dict[int, _PartialToolCall] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None

    def add(self, chunk: ChatCompletionChunk, request: ModelRequest) -> None:
        """Take one chunk: text deltas go to `on_text` as they arrive."""
        if chunk.usage is not None:
            self.usage = usage_from(chunk.usage)
        self.model = chunk.model or self.model
        for choice in chunk.choices or ():
            if choice.index:  # only the first choice; servers that omit the index send only one
                continue
            if choice.delta.content:
                self.text.append(choice.delta.content)
                if request.on_text is not None:
                    request.on_text(choice.delta.content)
            for delta in choice.delta.tool_calls or ():
                partial = self.tool_calls.setdefault(self._tool_call_index(delta), _PartialToolCall())
                partial.id = partial.id or delta.id or ""
                if delta.function is not None:
                    partial.name = partial.name or delta.function.name or ""
                    partial.arguments.append(delta.function.arguments or "")
            self.finish_reason = choice.finish_reason or self.finish_reason

    def _tool_call_index(self, delta: ChoiceDeltaToolCall) -> int:
        """The delta's index; servers that omit it start a new call with each id."""
        if delta.index is not None:
            return delta.index
        last = max(self.tool_calls, default=-1)
        return last + 1 if delta.id or last < 0 else last

    def response(self) -> ModelResponse:
        """The assembled response; a stream that never said why it finished was cut."""
        if self.finish_reason is None:
            raise TransientProviderError(f"{self.model}: stream ended mid-response (no finish_reason)",
                                         hint="retry; the server or a proxy cut the stream")
        tool_calls = tuple(
            ToolCall(id=partial.id or fallback_call_id(j), name=partial.name,
                     arguments="".join(partial.arguments))
            for j, (_, partial) in enumerate(sorted(self.tool_calls.items()))
        )
        return ModelResponse(content="".join(self.text), tool_calls=tool_calls, usage=self.usage,
                             model=self.model, finish_reason=self.finish_reason)


def _chat_message(message: Message) -> ChatCompletionMessageParam:
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "user":
        return {"role": "user", "content": message.content}
    if message.role == "tool":
        return {"role": "tool", "content": message.content, "tool_call_id": message.tool_call_id or ""}
    if not message.tool_calls:
        return {"role": "assistant", "content": message.content}
    calls: list[ChatCompletionMessageFunctionToolCallParam] = [
        {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        for call in message.tool_calls
    ]
    # Content is "" and never null: llama.cpp answers HTTP 500 to a null content.
    return {"role": "assistant", "content": message.content, "tool_calls": calls}


def _chat_tool(tool: ToolSpec) -> ChatCompletionFunctionToolParam:
    """A tool spec in Chat Completions form."""
    return {"type": "function",
            "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters}}


def usage_from(usage: CompletionUsage | None) -> Usage:
    """Our usage from the provider's; any missing field counts as 0."""
    if usage is None:
        return Usage()
    prompt_details = usage.prompt_tokens_details
    completion_details = usage.completion_tokens_details
    return Usage(
        input_tokens=usage.prompt_tokens or 0,
        cached_input_tokens=(prompt_details.cached_tokens or 0) if prompt_details else 0,
        output_tokens=usage.completion_tokens or 0,
        reasoning_tokens=(completion_details.reasoning_tokens or 0) if completion_details else 0,
    )
