"""The `Model` protocol and the messages that cross it. Providers translate these to a wire format.

Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for."""

    id: str
    name: str
    arguments: str
    """The raw JSON text of the arguments, exactly as the model sent it."""


@dataclass(frozen=True)
class Message:
    """One entry of the conversation, in provider-neutral form."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    """Only on assistant messages."""
    tool_call_id: str | None = None
    """Only on tool messages: which call this result answers."""
    name: str | None = None
    """Only on tool messages: the tool's name."""


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model sees it: a name, a description and a JSON schema for its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    """Tokens one response consumed, as the provider reported them."""

    input_tokens: int = 0
    """All prompt tokens, cached ones included."""
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def charged_tokens(self) -> int:
        """Tokens charged to a goal: non-cached input plus output (as Codex counts)."""
        return max(0, self.input_tokens - self.cached_input_tokens) + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.output_tokens + other.output_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )


@dataclass(frozen=True)
class ModelResponse:
    """One completed model response."""

    content: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage
    model: str
    finish_reason: str | None = None


@dataclass(frozen=True)
class ModelRequest:
    """Everything a provider needs to sample once."""

    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    max_output_tokens: int | None = None
    """Hard cap on output tokens, set by the budget rules for the request."""
    on_text: Callable[[str], None] | None = field(default=None, compare=False)
    """Called with each text delta when the provider streams; lets a UI show text as it arrives."""


class Model(Protocol):
    """A thing that proposes: given messages and tools, it answers with text and/or tool calls.

    Implementations raise `ProviderError` subclasses (errors.py); `TransientProviderError` means the
    caller may retry.
    """

    name: str
    """The model name as sent to the provider (used for pricing and display)."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Sample one response."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
