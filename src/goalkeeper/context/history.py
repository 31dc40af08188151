"""The conversation as the model sees it, rebuilt from the store's events and extended as events land.

The prefix (system prompt and the project instructions, then the goal contract) never changes during a goal,
so provider caches keep hitting; history is append-only (DESIGN §6) until a compaction replaces it with one
hand-off message.
The store keeps every event either way: a compaction is an event, not a deletion.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace

from goalkeeper.context.instructions import with_instructions
from goalkeeper.context.tokens import EstimatedTokens
from goalkeeper.events import (
    ChatResponseEvent,
    CompactedEvent,
    ContextTrimmedEvent,
    ForkedEvent,
    InstructionsLoadedEvent,
    MessageEvent,
    ModelResponseEvent,
    ToolResultEvent,
)
from goalkeeper.models.base import Message, ToolCall, ToolSpec
from goalkeeper.store import EventRecord
from goalkeeper.tools.replies import cut_middle

#: Characters of a tool output kept (head and tail) when the context must shrink.
TRIM_KEEP_CHARS = 2_000

#: Tokens a provider adds around each message (role, separators); counted so estimates err high.
MESSAGE_OVERHEAD_TOKENS = 4


def tool_calls_of(event: ModelResponseEvent | ChatResponseEvent) -> tuple[ToolCall, ...]:
    """The tool calls recorded in a `model_response` (or `chat_response`) event."""
    return tuple(ToolCall(c.id, c.name, c.arguments) for c in event.tool_calls)


class Conversation:
    """System + contract prefix, then messages from events (the newest turn's state is replay.py's).

    The next request is sized from characters kept as messages land, so adding a message costs O(its
    length), and a provider's usage report moves only the counter's ratio: nothing is re-counted.
    """

    def __init__(self, system: str, contract: str, counter: EstimatedTokens | None = None) -> None:
        self.counter = counter or EstimatedTokens()
        self.system = system
        """The system prompt without the project instructions (an `instructions_loaded` event adds them)."""
        self.prefix = (Message("system", system), Message("user", contract))
        self.history: list[Message] = []
        self.last_cached_tokens = 0
        """Cached input tokens the newest response reported: that much of the next request is likely cached."""
        self.shown: dict[str, list[object]] | None = None
        """The evidence the model has been shown (so a continuation can say only what changed)."""
        self.responses = 0
        """Model responses in this goal's thread, across compactions."""
        self.responses_since_compaction = 0
        self._sizes: list[int] = []
        """Counted characters of each history message (text, tool names and arguments); their sum is kept
        as they change, so sizing the next request does not walk the history."""
        self._history_chars = 0
        self._prefix_chars = sum(map(counted_chars, self.prefix))
        self._tools: tuple[tuple[str, ...], int] = ((), 0)  # (tool names, the characters of their schemas)
        self._request_chars = 0

    @classmethod
    def from_events(cls, system: str, contract: str, events: Iterable[EventRecord],
                    counter: EstimatedTokens | None = None) -> Conversation:
        """Rebuild from the store (after a restart)."""
        conversation = cls(system, contract, counter)
        for record in events:
            conversation.apply(record)
        return conversation

    def messages(self) -> tuple[Message, ...]:
        """The full request: prefix then history."""
        return (*self.prefix, *self.history)

    def request_tokens(self, specs: Sequence[ToolSpec]) -> int:
        """The next request's input tokens as the counter sees them: prefix, tool definitions, history."""
        names = tuple(spec.name for spec in specs)
        if self._tools[0] != names:
            self._tools = (names, len(tool_schema_text(specs)))
        self._request_chars = self._prefix_chars + self._tools[1] + self._history_chars
        messages = len(self.prefix) + len(self.history)
        return self.counter.of_chars(self._request_chars) + MESSAGE_OVERHEAD_TOKENS * messages

    def estimated_charged_tokens(self, specs: Sequence[ToolSpec]) -> int:
        """The next request's tokens less what the provider reported as cached last time (charged tokens
        exclude it)."""
        return max(1, self.request_tokens(specs) - self.last_cached_tokens)

    def apply(self, record: EventRecord) -> None:
        """Fold one committed event into the messages."""
        match record.event:
            case InstructionsLoadedEvent(text=text):
                # Recorded before the goal's first request, so every request carries the same system message.
                self.prefix = (Message("system", with_instructions(self.system, text)), self.prefix[1])
                self._prefix_chars = sum(map(counted_chars, self.prefix))
            case ContextTrimmedEvent(upto_message=upto, keep_chars=keep):
                self._trim(upto, keep)
            case CompactedEvent(handoff=handoff, evidence_shown=shown):
                self.history, self._sizes, self._history_chars = [], [], 0
                self._add(Message("user", handoff))
                self.shown = shown
                self.responses_since_compaction = 0
            case ForkedEvent(handoff=handoff) if handoff:
                self._add(Message("user", handoff))  # a fork's goal opens with its parent's work so far
            case MessageEvent(content=content, evidence_shown=shown):
                if "evidence_shown" in record.event.model_fields_set:
                    self.shown = shown
                self._add(Message("user", content))
            case ModelResponseEvent(content=content, usage=usage):
                self.last_cached_tokens = usage.cached_input_tokens
                self._calibrate(usage.input_tokens)
                self.responses += 1
                self.responses_since_compaction += 1
                self._add(Message("assistant", content, tool_calls=tool_calls_of(record.event)))
            case ToolResultEvent(call_id=call_id, name=name, output=output):
                self._add(Message("tool", output, tool_call_id=call_id, name=name))

    def trim_plan(self, keep_chars: int = TRIM_KEEP_CHARS) -> ContextTrimmedEvent | None:
        """Which tool outputs to cut when a prompt does not fit: the oldest half of the long ones."""
        long = [i for i, m in enumerate(self.history) if m.role == "tool" and len(m.content) > keep_chars]
        if not long:
            return None
        return ContextTrimmedEvent(upto_message=long[(len(long) - 1) // 2] + 1, keep_chars=keep_chars)

    def _trim(self, upto_message: int, keep_chars: int) -> None:
        for index in range(min(upto_message, len(self.history))):
            message = self.history[index]
            if message.role == "tool" and len(message.content) > keep_chars:
                cut, _ = cut_middle(message.content, keep_chars)
                self.history[index] = replace(message, content=cut)
                size = counted_chars(self.history[index])
                self._history_chars += size - self._sizes[index]
                self._sizes[index] = size

    def _calibrate(self, reported_input_tokens: int) -> None:
        """Let the counter learn from what the provider reported for the request just sent: O(1), the
        history is sized in characters and its tokens follow from the counter's ratio."""
        if reported_input_tokens > 0 and self._request_chars > 0:
            self.counter.observe(self._request_chars, reported_input_tokens)

    def _add(self, message: Message) -> None:
        self.history.append(message)
        size = counted_chars(message)
        self._sizes.append(size)
        self._history_chars += size


def counted_chars(message: Message) -> int:
    """The characters of a message the model reads: its text, and each tool call's name and arguments."""
    return len(message.content) + sum(len(call.name) + len(call.arguments) for call in message.tool_calls)


def tool_schema_text(specs: Iterable[ToolSpec]) -> str:
    """The tool definitions as the model receives them, for counting."""
    return json.dumps([{"name": spec.name, "description": spec.description, "parameters": spec.parameters}
                       for spec in specs])
