"""The scripted model: a deterministic `Model` that replays responses and errors from a script.

It never touches the network; tests and benchmarks use it in place of a real provider.

How a step is chosen. The script's steps are split into *response steps* (text and/or tool calls) and
*error steps*. Response steps are numbered 0, 1, 2, ... in order; that number is the step's *index*.
Every error step belongs to the response step after it: it is inserted before that step and takes no
index of its own. A request is answered by the step whose index equals the number of assistant
messages already in `request.messages`. The choice is stateless on purpose: a harness that is killed
and restarted rebuilds the same conversation, and the same conversation always gets the same next step.

The only memory is a count of calls per index, and it only drives the error steps: at an index whose
response step is preceded by error steps E1 (times t1), E2 (times t2), ..., the first t1 calls raise E1,
the next t2 raise E2, and every later call gets the response step. A new instance (a restarted
harness) counts from zero again, so it sees the errors again.

Error steps after the last response step belong to the first index past the end. Past the end,
`after_last` decides: "repeat" answers with the last response step again, "error" raises
`ProviderError("script exhausted at step N")`.

Compaction. A request that asks for the hand-off summary (its last message is the compact prompt) is
answered with `summary` (or raises `summary_error`) and takes no index. After a compaction the history
holds no assistant messages, so the index also counts the responses the hand-off message says it
stands for ("compacted after N model responses"): the script carries on where it was.

A script file (`ScriptedModel.from_file`) looks like this; unknown keys are rejected:

    {"name": "scripted", "after_last": "repeat", "summary": "## Goal ...", "steps": [
      {"text": "Looking", "tool_calls": [{"name": "shell", "arguments": {"command": "pytest -q"}}],
       "usage": {"input_tokens": 1000, "cached_input_tokens": 200, "output_tokens": 50}, "delay_s": 0.05},
      {"error": {"kind": "transient", "status_code": 503, "message": "overloaded", "retry_after_s": 0.01},
       "times": 2},
      {"text": "done"}]}
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic

from goalkeeper.context.handoff import REQUIRED_SECTIONS, responses_before
from goalkeeper.context.prompts import render
from goalkeeper.errors import (
    ConfigError,
    ContextLengthError,
    ProviderError,
    TransientProviderError,
)
from goalkeeper.models.base import Message, ModelRequest, ModelResponse, ToolCall, Usage

_STRICT_KEYS = pydantic.ConfigDict(extra="forbid")
"""Script files reject unknown keys, so a typo fails loudly instead of being ignored."""

ErrorKind = Literal["transient", "auth", "bad_request", "context_length"]
AfterLast = Literal["repeat", "error"]


@dataclass(frozen=True)
class ScriptedError:
    """An error a step raises instead of answering."""

    __pydantic_config__ = _STRICT_KEYS

    kind: ErrorKind
    """transient → TransientProviderError; auth, bad_request → ProviderError; context_length →
    ContextLengthError."""
    message: str = "scripted provider error"
    status_code: int | None = None
    retry_after_s: float | None = None
    """Only for transient errors: what a Retry-After header would have said."""


@dataclass(frozen=True)
class ScriptedToolCall:
    """A tool call a step answers with."""

    __pydantic_config__ = _STRICT_KEYS

    name: str
    arguments: dict[str, Any] | str
    """A JSON object (serialised with sorted keys), or a raw string sent as is (e.g. invalid JSON)."""


@dataclass(frozen=True)
class ScriptStep:
    """One scripted answer: a response (text and/or tool calls) or, when `error` is set, an error."""

    __pydantic_config__ = _STRICT_KEYS

    text: str = ""
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    usage: Usage | None = None
    """What the provider reports; when None, a deterministic estimate from the characters."""
    delay_s: float = 0.0
    """Seconds to wait before answering (or raising), for cancellation and kill tests."""
    error: ScriptedError | None = None
    times: int = 1
    """Only for error steps: how many calls at this index raise the error."""


@dataclass(frozen=True)
class _ScriptFile:
    """The JSON layout `ScriptedModel.from_file` reads."""

    __pydantic_config__ = _STRICT_KEYS

    steps: tuple[ScriptStep, ...]
    name: str = "scripted"
    after_last: AfterLast = "repeat"
    summary: str | None = None
    summary_error: ScriptedError | None = None


@dataclass(frozen=True)
class _Slot:
    """The response step at one index, with the error steps inserted before it."""

    errors: tuple[ScriptStep, ...]
    response: ScriptStep | None
    """None for the slot past the end of the script."""


class ScriptedModel:
    """A `Model` that answers from a script; see the module docstring for how steps are chosen."""

    def __init__(self, steps: list[ScriptStep], name: str = "scripted", *,
                 after_last: AfterLast = "repeat", summary: str | None = None,
                 summary_error: ScriptedError | None = None) -> None:
        self.name = name
        self.after_last: AfterLast = after_last
        self.summary = summary if summary is not None else DEFAULT_SUMMARY
        """The hand-off summary every compaction request gets."""
        self.summary_error = summary_error
        """Raised instead, for every compaction request, when set."""
        self.requests: list[ModelRequest] = []
        """Every request received, in order (recorded on arrival, before any delay)."""
        self._slots = _slots_from(steps)
        self._calls_at_index: Counter[int] = Counter()

    @classmethod
    def from_file(cls, path: Path) -> ScriptedModel:
        """Load a script from a JSON file (layout in the module docstring); a bad file is a ConfigError."""
        try:
            script = pydantic.TypeAdapter(_ScriptFile).validate_json(path.read_bytes())
        except OSError as error:
            raise ConfigError(f"cannot read model script {path}: {error.strerror}",
                              hint="check the path given for the scripted model") from error
        except pydantic.ValidationError as error:
            raise ConfigError(f"model script {path} is invalid:\n{error}",
                              hint="fix the script; its layout is in goalkeeper.models.scripted") from error
        return cls(list(script.steps), script.name, after_last=script.after_last, summary=script.summary,
                   summary_error=script.summary_error)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Answer with the step chosen by the number of assistant messages in the request."""
        self.requests.append(request)
        if is_summary_request(request):
            if self.summary_error is not None:
                raise _provider_error(self.summary_error)
            return _response(ScriptStep(text=self.summary), -1, request, self.name)
        history = [message.content for message in request.messages if message.role == "user"]
        index = responses_before(history) + sum(1 for message in request.messages if message.role == "assistant")
        step = self._step_for(index)
        if step.delay_s > 0:
            await asyncio.sleep(step.delay_s)
        if step.error is not None:
            raise _provider_error(step.error)
        return _response(step, index, request, self.name)

    async def aclose(self) -> None:
        """Nothing to release."""

    def _step_for(self, index: int) -> ScriptStep:
        """The error step due at `index`, else its response step; counts the call."""
        calls = self._calls_at_index[index]
        self._calls_at_index[index] += 1
        slot = self._slots[index] if index < len(self._slots) else _Slot((), None)
        for error_step in slot.errors:
            if calls < error_step.times:
                return error_step
            calls -= error_step.times
        if slot.response is not None:
            return slot.response
        responses = [other.response for other in self._slots if other.response is not None]
        if self.after_last == "error" or not responses:
            raise ProviderError(f"script exhausted at step {index}",
                                hint="add steps to the model script or set after_last to repeat")
        return responses[-1]


DEFAULT_SUMMARY = "\n".join(f"## {name}\n(scripted hand-off: {name.lower()})" for name in REQUIRED_SECTIONS)
"""A summary with every required section, for scripts that do not set one."""


def is_summary_request(request: ModelRequest) -> bool:
    """Whether the request asks for a compaction's hand-off summary."""
    last = request.messages[-1] if request.messages else None
    return last is not None and last.role == "user" and last.content == render("compact")


def _slots_from(steps: list[ScriptStep]) -> list[_Slot]:
    """Group error steps with the response step after them; the last slot is past the end."""
    slots: list[_Slot] = []
    pending: list[ScriptStep] = []
    for step in steps:
        if step.error is not None:
            pending.append(step)
        else:
            slots.append(_Slot(tuple(pending), step))
            pending = []
    slots.append(_Slot(tuple(pending), None))
    return slots


def _provider_error(error: ScriptedError) -> ProviderError:
    """The provider error a scripted error stands for."""
    if error.kind == "transient":
        return TransientProviderError(error.message, status_code=error.status_code,
                                      retry_after_s=error.retry_after_s)
    if error.kind == "context_length":
        return ContextLengthError(error.message, status_code=error.status_code)
    return ProviderError(error.message, status_code=error.status_code)


def _response(step: ScriptStep, index: int, request: ModelRequest, model: str) -> ModelResponse:
    """Build the response for a response step at `index`, streaming its text to `on_text`."""
    tool_calls = tuple(
        ToolCall(id=f"call_{index}_{j}", name=call.name, arguments=_arguments_text(call.arguments))
        for j, call in enumerate(step.tool_calls)
    )
    usage = step.usage or _estimate_usage(request.messages, step.text, tool_calls)
    finish_reason = "tool_calls" if tool_calls else "stop"
    limit = request.max_output_tokens
    if limit is not None and usage.output_tokens > limit:
        # A real server stops sampling at the cap, so it never reports more than that.
        usage = Usage(usage.input_tokens, usage.cached_input_tokens, limit, usage.reasoning_tokens)
        finish_reason = "length"
    if request.on_text is not None:
        for chunk in _chunks(step.text):
            request.on_text(chunk)
    return ModelResponse(content=step.text, tool_calls=tool_calls, usage=usage, model=model,
                         finish_reason=finish_reason)


def _arguments_text(arguments: dict[str, Any] | str) -> str:
    """Arguments as the model would send them: sorted-key JSON, or a raw string unchanged."""
    return arguments if isinstance(arguments, str) else json.dumps(arguments, sort_keys=True)


def _estimate_usage(messages: tuple[Message, ...], text: str, tool_calls: tuple[ToolCall, ...]) -> Usage:
    """About four characters a token, so budgets move deterministically in tests."""
    input_chars = sum(
        len(message.content) + sum(len(call.arguments) for call in message.tool_calls)
        for message in messages
    )
    output_chars = len(text) + sum(len(call.arguments) for call in tool_calls)
    return Usage(input_tokens=input_chars // 4, output_tokens=output_chars // 4 + 1)


def _chunks(text: str) -> list[str]:
    """Split text into up to three pieces, the way a stream delivers it."""
    count = min(3, len(text))
    if count == 0:
        return []
    size = -(-len(text) // count)
    return [text[start:start + size] for start in range(0, len(text), size)]
