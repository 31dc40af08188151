"""The conversation as the model sees it, rebuilt from the store's events and extended as events land.

The prefix (system prompt, then the goal contract) never changes during a goal, so provider caches keep
hitting; history is append-only (DESIGN §6).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from goalkeeper.decide import CheckTrigger
from goalkeeper.lifecycle import TurnKind
from goalkeeper.models.base import Message, ToolCall
from goalkeeper.store import EventRecord
from goalkeeper.tools.output import cut_middle

#: Characters of a tool output kept (head and tail) when the context must shrink.
TRIM_KEEP_CHARS = 2_000

#: Rough characters per token for the budget's request estimate (errs toward over-estimating).
CHARS_PER_TOKEN = 3.5


def tool_calls_from_payload(payload: dict[str, Any]) -> tuple[ToolCall, ...]:
    """The tool calls recorded in a `model_response` event."""
    return tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in payload.get("tool_calls", []))


@dataclass
class OpenTurn:
    """What the store says about the newest turn: enough to resume it after a crash."""

    kind: TurnKind = "continuation"
    number: int = 0
    opened: bool = False
    """The turn's opening message has been written."""
    ended: bool = True
    pending_checks: CheckTrigger | None = None
    """A check run was requested (with this trigger) and has no evidence yet."""
    unanswered: list[ToolCall] = field(default_factory=list)
    """Tool calls of the newest response that have no result yet."""
    signal: dict[str, Any] | None = None
    """The update_goal report (complete or blocked) made in this turn; it ends the turn."""
    intended: set[str] = field(default_factory=set)
    """Call ids with an intent event (started, maybe finished before a crash)."""
    records: list[EventRecord] = field(default_factory=list)
    """The turn's events so far, for its checkpoint."""


class Conversation:
    """System + contract prefix, then messages from events, plus the state of the newest turn."""

    def __init__(self, system: str, contract: str) -> None:
        self.prefix = (Message("system", system), Message("user", contract))
        self.history: list[Message] = []
        self.turn = OpenTurn()
        self.last_cached_tokens = 0
        """Cached input tokens the newest response reported: that much of the next request is likely cached."""
        self._chars = len(system) + len(contract)

    @classmethod
    def from_events(cls, system: str, contract: str, events: Iterable[EventRecord]) -> Conversation:
        """Rebuild from the store (after a restart)."""
        conversation = cls(system, contract)
        for record in events:
            conversation.apply(record)
        return conversation

    def messages(self) -> tuple[Message, ...]:
        """The full request: prefix then history."""
        return (*self.prefix, *self.history)

    def estimated_tokens(self, tool_schema_chars: int) -> int:
        """A cheap, conservative estimate of the next request's input tokens."""
        return int((self._chars + tool_schema_chars) / CHARS_PER_TOKEN) + 1

    def estimated_charged_tokens(self, tool_schema_chars: int) -> int:
        """The estimate less what the provider reported as cached last time (charged tokens exclude it)."""
        return max(1, self.estimated_tokens(tool_schema_chars) - self.last_cached_tokens)

    def apply(self, record: EventRecord) -> None:
        """Fold one committed event into the conversation and the open-turn state."""
        payload, kind = record.payload, record.kind
        turn = self.turn
        if kind == "turn_started":
            self.turn = OpenTurn(kind=payload["kind"], number=payload["turn"], ended=False)
        elif kind == "checks_requested":
            turn.pending_checks = payload["trigger"]
        elif kind == "evidence":
            turn.pending_checks = None
        elif kind == "turn_ended":
            turn.ended = True
        elif kind == "context_trimmed":
            self._trim(payload["upto_message"], payload["keep_chars"])
        self.turn.records.append(record)
        self._apply_message(record)

    def trim_plan(self, keep_chars: int = TRIM_KEEP_CHARS) -> dict[str, int] | None:
        """Which tool outputs to cut when a prompt does not fit: the oldest half of the long ones."""
        long = [i for i, m in enumerate(self.history) if m.role == "tool" and len(m.content) > keep_chars]
        if not long:
            return None
        return {"upto_message": long[(len(long) - 1) // 2] + 1, "keep_chars": keep_chars}

    def _trim(self, upto_message: int, keep_chars: int) -> None:
        for index in range(min(upto_message, len(self.history))):
            message = self.history[index]
            if message.role == "tool" and len(message.content) > keep_chars:
                cut, _ = cut_middle(message.content, keep_chars)
                self._chars -= len(message.content) - len(cut)
                self.history[index] = replace(message, content=cut)

    def _apply_message(self, record: EventRecord) -> None:
        payload, kind, turn = record.payload, record.kind, self.turn
        if kind == "message":
            turn.opened = True
            self._add(Message("user", payload["content"]))
        elif kind == "model_response":
            calls = tool_calls_from_payload(payload)
            turn.unanswered, turn.intended = list(calls), set()
            self.last_cached_tokens = int(payload.get("usage", {}).get("cached_input_tokens", 0))
            self._add(Message("assistant", payload.get("content", ""), tool_calls=calls))
        elif kind == "tool_intent":
            turn.intended.add(payload["call_id"])
        elif kind == "tool_result":
            if payload.get("signal"):
                turn.signal = payload.get("data", {})
            turn.unanswered = [c for c in turn.unanswered if c.id != payload["call_id"]]
            self._add(Message("tool", payload["output"], tool_call_id=payload["call_id"], name=payload["name"]))

    def _add(self, message: Message) -> None:
        self.history.append(message)
        self._chars += len(message.content) + sum(len(c.arguments) + len(c.name) for c in message.tool_calls)


def tool_schema_chars(specs: Iterable[Any]) -> int:
    """Characters the tool definitions add to every request."""
    return sum(len(json.dumps(spec.parameters)) + len(spec.description) + len(spec.name) for spec in specs)
