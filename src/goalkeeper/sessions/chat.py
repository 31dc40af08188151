"""Chat without a goal: ordinary turn-by-turn conversation about the workspace, with the same tools and sandbox.

One `send` is one turn: requests and tool calls until a text-only answer. The conversation lives in the
workspace's thread as events with no goal (`chat_message`, `chat_response`, `chat_tool_result`), so a new
session on the same thread carries on where the last one stopped. A goal never sees them: the runner, side
questions and compaction read only their goal's events, and the goal's conversation ignores these kinds.
Nothing here writes goal state or charges a budget.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from goalkeeper.config.load import Config, load_config
from goalkeeper.context.history import tool_calls_of
from goalkeeper.context.prompts import render
from goalkeeper.events import (
    ApprovalRuleEvent,
    CallMade,
    ChatMessageEvent,
    ChatResponseEvent,
    ChatToolResultEvent,
    Event,
)
from goalkeeper.events import Usage as UsageRecord
from goalkeeper.models.base import Message, Model, ModelResponse
from goalkeeper.models.factory import open_model
from goalkeeper.sandbox.bwrap import require_sandbox
from goalkeeper.sessions.session import Session, SessionCost, ToolUse, tool_context
from goalkeeper.sessions.side import fork_history
from goalkeeper.spec.settings import ModelSettings
from goalkeeper.store import EventRecord, Store
from goalkeeper.tools.base import ToolResult
from goalkeeper.tools.registry import GOAL_TOOL_NAMES, RUNNER_TOOL_NAMES, Approver, ToolRegistry, default_registry

CHAT_EVENTS: list[type[Event]] = [ChatMessageEvent, ChatResponseEvent, ChatToolResultEvent]
"""The events a chat is stored as (with no goal id)."""

MAX_REQUESTS = 40
"""Requests one prompt may make before it must answer from what it has."""

HISTORY_MESSAGES = 200
"""The newest stored messages a session sends before the new prompt (older ones stay in the store)."""


@dataclass(frozen=True)
class ChatReply:
    """The answer to one prompt, and what getting it took."""

    text: str
    cost: SessionCost


def chat_tools(config: Config, approver: Approver | None) -> ToolRegistry:
    """Every tool a goal turn has but the goal tools and `wait`, under the config's rules and approval policy."""
    return default_registry().without((*GOAL_TOOL_NAMES, *RUNNER_TOOL_NAMES)).with_approvals(
        rules=config.rules, approval_policy=config.approval_policy, approver=approver)


def chat_history(records: list[EventRecord], newest: int = HISTORY_MESSAGES) -> list[Message]:
    """The conversation stored in chat events: the newest `newest` messages, starting at a prompt, with any
    call that never got a result (a crash mid-call) left out so every provider accepts it."""
    messages: list[Message] = []
    for record in records:
        if record.goal_id is not None:
            continue
        match event := record.event:
            case ChatMessageEvent(content=content):
                messages.append(Message("user", content))
            case ChatResponseEvent(content=content):
                messages.append(Message("assistant", content, tool_calls=tool_calls_of(event)))
            case ChatToolResultEvent(output=output, call_id=call_id, name=name):
                messages.append(Message("tool", output, tool_call_id=call_id, name=name))
    window = fork_history(messages, newest)
    start = next((i for i, message in enumerate(window) if message.role == "user"), len(window))
    return window[start:]


class ChatSession:
    """A chat in `workspace`'s thread (made if there is none), with the model `settings` name.

    With an `approver` a person answers the commands the rules ask about; without one they are refused.
    The model (and the local server, if any) is opened on the first prompt; `aclose` releases it.
    """

    def __init__(self, store: Store, workspace: Path, settings: ModelSettings, *,
                 approver: Approver | None = None) -> None:
        workspace = workspace.resolve()
        self.store, self.workspace, self.settings = store, workspace, settings
        self.thread = store.thread_for(workspace, create=True)
        config = load_config(workspace)  # HEAD's committed version: a chat has no goal, so no base commit
        self.tools = chat_tools(config, approver)
        self.context = tool_context(workspace, None, config.run, settings, store, headless=approver is None)
        records = store.events(self.thread.thread_id, kinds=[*CHAT_EVENTS, ApprovalRuleEvent])
        for record in records:
            if isinstance(record.event, ApprovalRuleEvent) and record.goal_id is None:
                self.tools.remember(record.event.match)
        self.history = chat_history(records)
        self._model: Model | None = None
        self._resources = contextlib.AsyncExitStack()

    async def send(self, prompt: str, on_text: Callable[[str], None] | None = None,
                   on_tool: Callable[[ToolUse], None] | None = None) -> ChatReply:
        """Answer `prompt`, running the model's tool calls; every message is stored as it lands.

        Provider errors raise (the prompt stays stored); SandboxError if commands cannot be confined here.
        """
        assert self.context.sandbox is not None  # tool_context always builds one
        require_sandbox(self.context.sandbox)  # refuses to chat rather than run commands unconfined
        model = await self._open()
        self._record(ChatMessageEvent(content=prompt))
        messages = [Message("system", render("chat")), *self.history, Message("user", prompt)]
        session = Session(model, self.settings, self.tools, self.context, self.store, on_text=on_text,
                          on_tool=on_tool, on_message=self._store)
        try:
            text = await session.converse(messages, MAX_REQUESTS, "reply")
        finally:
            self.history = chat_history(self.store.events(self.thread.thread_id, kinds=CHAT_EVENTS))
        return ChatReply(text, session.cost())

    async def aclose(self) -> None:
        """Close the model's connections (and stop the local server, if one was started)."""
        self._model = None
        await self._resources.aclose()

    async def __aenter__(self) -> ChatSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _open(self) -> Model:
        if self._model is None:
            self._model = await self._resources.enter_async_context(open_model(self.settings))
        return self._model

    def _store(self, message: Message, source: ModelResponse | ToolResult) -> None:
        """Store one message of the conversation as its chat event (and a tool call's approval)."""
        if isinstance(source, ModelResponse):
            self._record(ChatResponseEvent(
                content=message.content,
                tool_calls=[CallMade(id=c.id, name=c.name, arguments=c.arguments) for c in message.tool_calls],
                usage=UsageRecord.of(source.usage), model=source.model))
            return
        events: list[Event] = [ChatToolResultEvent(call_id=message.tool_call_id, name=message.name,
                                                   output=message.content, ok=source.ok)]
        if source.approval is not None:
            events = [*source.approval.events(message.tool_call_id, goal_id=None), *events]
        self._record(*events)

    def _record(self, *events: Event) -> None:
        self.store.append_events(self.thread.thread_id, list(events))
