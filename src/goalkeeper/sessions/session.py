"""Model sessions outside a goal's turns: the one loop that side questions, plans, drafts, chat and the PRD run.

`open_session` chooses the model, builds the tool context as the runner builds its own and opens the model
(closed when the block ends); `Session.run` sends requests and runs their tool calls until `stop_when`
answers, and at the request limit sends one last request saying so. Side questions (side.py) and planning
turns (planning.py) give it the read-only tools built here; chat (chat.py) gives it every tool but the goal
tools. A session never writes goal state and never sends a continuation: whoever drives it decides when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from goalkeeper.config.load import load_config
from goalkeeper.config.resolve import choose_model
from goalkeeper.config.trust import HARNESS_PROTECT
from goalkeeper.context.prompts import render
from goalkeeper.context.tokens import EstimatedTokens
from goalkeeper.events import Usage as UsageRecord
from goalkeeper.models.base import Message, Model, ModelRequest, ModelResponse, ToolCall, ToolSpec, Usage
from goalkeeper.models.factory import open_model
from goalkeeper.models.retry import RetryPolicy, complete_with_retries
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import GoalSettings, ModelSettings, RunSettings
from goalkeeper.store import Store
from goalkeeper.tools.base import ToolContext, ToolResult
from goalkeeper.tools.registry import READ_ONLY_TOOL_NAMES, ToolRegistry, default_registry


@dataclass(frozen=True)
class ToolUse:
    """One tool call the session ran: its name, its raw arguments and whether it succeeded."""

    name: str
    arguments: str
    ok: bool


def read_only_tools() -> ToolRegistry:
    """The registry's read-only tools: they can look at the workspace and the goal, never change them."""
    return default_registry().only(READ_ONLY_TOOL_NAMES)


def tool_context(workspace: Path, contract: Contract | None, run: RunSettings, model: ModelSettings, store: Store,
                 goal_view: dict[str, Any] | None = None, *, headless: bool = True) -> ToolContext:
    """A tool context built as the runner builds its own: the contract's sandbox (without a contract,
    workspace-write with the harness's files protected), credentials scrubbed, the model's token counter,
    and the store's full outputs readable (`read_output`). `headless`: no person answers approvals."""
    boundaries = contract.boundaries if contract is not None else None
    config = load_config(workspace)  # for its secrets; HEAD's committed version (see load_config)
    sandbox = SandboxPolicy(
        boundaries.sandbox if boundaries else "workspace-write", workspace,
        (*HARNESS_PROTECT, *(boundaries.protect if boundaries else ())), tuple(boundaries.paths) if boundaries else (),
        network=boundaries.network if boundaries else False, secrets=config.secrets, secret_env=config.secret_env,
        secret_files=config.secret_files)
    return ToolContext(workspace, run.shell_timeout_s, output_token_limit=run.tool_output_token_limit,
                       counter=EstimatedTokens(), read_blob=store.get_blob,
                       env=config.command_env(os.environ, model.api_key_env), goal_view=goal_view or {},
                       sandbox=sandbox, headless=headless)


@dataclass(frozen=True)
class SessionCost:
    """What a session spent: its requests, their summed usage, the model that answered and the calls made."""

    usage: Usage
    model: str
    requests: int
    tool_calls: tuple[ToolUse, ...]

    def payload(self) -> dict[str, Any]:
        """As stored in a `side`, `plan` or `draft` event and printed by `--json`."""
        return {"usage": UsageRecord.of(self.usage).model_dump(), "model": self.model, "requests": self.requests,
                "tool_calls": [{"name": u.name, "arguments": u.arguments, "ok": u.ok} for u in self.tool_calls]}

    def line(self) -> str:
        """One line for a footer: `2 requests · 3,890 input tokens (1,792 cached), 180 output · test-model`."""
        usage = self.usage
        return (f"{self.requests} request{'s' if self.requests != 1 else ''} · {usage.input_tokens:,} input tokens "
                f"({usage.cached_input_tokens:,} cached), {usage.output_tokens:,} output · {self.model}")


def assistant_message(response: ModelResponse) -> Message:
    """The response as the next request carries it."""
    return Message("assistant", response.content, tool_calls=response.tool_calls)


T = TypeVar("T")


def text_answer(response: ModelResponse) -> str | None:
    """A `stop_when` that ends the session at the first answer with no tool calls: its text."""
    return None if response.tool_calls else response.content


@dataclass(frozen=True)
class LastRequest(Generic[T]):
    """The request sent when a session's requests are spent: a user message (the `no_more_tools` prompt)
    saying what to deliver now, the tools it still lists (None: the session's), and how its response
    becomes the session's result."""

    task: str
    deliverable: str
    answer: Callable[[ModelResponse], Awaitable[T]]
    tools: tuple[ToolSpec, ...] | None = None


@dataclass
class Session:
    """One model, a tool registry, and the tally of what the session spent and called."""

    model: Model
    settings: ModelSettings
    tools: ToolRegistry
    context: ToolContext
    store: Store
    on_text: Callable[[str], None] | None = None
    """Text as it arrives (streamed, or whole when the provider does not stream)."""
    on_tool: Callable[[ToolUse], None] | None = None
    """Each tool call once it has run."""
    on_message: Callable[[Message, ModelResponse | ToolResult], None] | None = None
    """Each message `run` adds to the conversation, with the response or tool result it came from (chat
    stores them as they land)."""
    usage: Usage = field(default_factory=Usage)
    requests: int = 0
    calls: list[ToolUse] = field(default_factory=list)
    model_name: str = ""

    async def request(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> ModelResponse:
        """One request, with the settings' retries for transient failures; its text goes to `on_text`."""
        shown: list[str] = []

        def text(delta: str) -> None:
            shown.append(delta)
            if self.on_text is not None:
                self.on_text(delta)

        policy = RetryPolicy(max_retries=self.settings.max_retries, max_total_s=self.settings.retry_max_total_s)
        response = await complete_with_retries(self.model, ModelRequest(tuple(messages), tuple(tools), on_text=text),
                                               policy)
        if not shown and response.content and self.on_text is not None:
            self.on_text(response.content)  # a provider that never calls on_text still shows its answer
        self.requests += 1
        self.usage += response.usage
        self.model_name = response.model or self.model.name
        return response

    async def run_calls(self, calls: Sequence[ToolCall]) -> list[Message]:
        """Run each call with the session's tools; the results as tool messages for the next request.

        A cut output keeps its full text in the store's blobs under the id its marker names, as the runner's do.
        """
        results: list[Message] = []
        for call in calls:
            result = await self.tools.execute(call, self.context)
            if result.full_output is not None:
                self.store.put_blob(result.full_output)
            self.note(ToolUse(call.name, call.arguments, result.ok))
            message = Message("tool", result.output, tool_call_id=call.id, name=call.name)
            if self.on_message is not None:
                self.on_message(message, result)
            results.append(message)
        return results

    async def run(self, messages: list[Message], max_requests: int, stop_when: Callable[[ModelResponse], T | None],
                  last_request: LastRequest[T], nudge: str | None = None) -> T:
        """Requests, each appended to `messages` and its tool calls run, until `stop_when` answers for one.

        A text-only answer that does not end the session gets `nudge` as the next user message. After
        `max_requests` requests, `last_request` is sent and its answer is the session's.
        """
        for _ in range(max_requests):
            response = await self.request(messages, self.tools.specs)
            self._add(messages, assistant_message(response), response)
            if response.tool_calls:
                messages += await self.run_calls(response.tool_calls)
            if (done := stop_when(response)) is not None:
                return done
            if nudge is not None and not response.tool_calls:
                messages.append(Message("user", nudge))
        messages.append(Message("user", render("no_more_tools", task=last_request.task,
                                               deliverable=last_request.deliverable)))
        final = await self.request(messages, self.tools.specs if last_request.tools is None else last_request.tools)
        return await last_request.answer(final)

    async def converse(self, messages: list[Message], max_requests: int, task: str) -> str:
        """`run` until a text-only answer, whose text is returned; at the limit the last request still lists
        the tools (a provider refuses tool calls in a history without tool definitions), but any call it
        makes is not run, and is left out of the conversation."""
        async def last_answer(final: ModelResponse) -> str:
            self._add(messages, Message("assistant", final.content), final)
            return final.content

        return await self.run(messages, max_requests, text_answer,
                              LastRequest(task, "answer, as plain text", last_answer))

    def note(self, use: ToolUse) -> None:
        """Count a tool call (one `run_calls` ran, or one whose arguments ended the session) and show it."""
        self.calls.append(use)
        if self.on_tool is not None:
            self.on_tool(use)

    def cost(self) -> SessionCost:
        """What the session has spent so far."""
        return SessionCost(self.usage, self.model_name, self.requests, tuple(self.calls))

    def _add(self, messages: list[Message], message: Message, response: ModelResponse) -> None:
        messages.append(message)
        if self.on_message is not None:
            self.on_message(message, response)


@contextlib.asynccontextmanager
async def open_session(store: Store, workspace: Path, tools: ToolRegistry, settings: GoalSettings, *,
                       model: ModelSettings | None = None, contract: Contract | None = None,
                       goal_view: dict[str, Any] | None = None, on_text: Callable[[str], None] | None = None,
                       on_tool: Callable[[ToolUse], None] | None = None) -> AsyncIterator[Session]:
    """A session with the chosen model (`model`, else the goal's `settings`, else config's) and `tools` in
    a context built for `contract`; the model is open while the block runs and closed after it."""
    chosen = choose_model(workspace, model, settings)
    context = tool_context(workspace, contract, settings.run, chosen, store, goal_view)
    async with open_model(chosen) as built:
        yield Session(built, chosen, tools, context, store, on_text=on_text, on_tool=on_tool)


def run_session(opened: contextlib.AbstractAsyncContextManager[Session],
                work: Callable[[Session], Awaitable[T]]) -> tuple[Session, T]:
    """`work` in the session `opened` (by `open_session`), in an event loop of its own; with the session, for
    what it cost."""
    async def main() -> tuple[Session, T]:
        async with opened as session:
            return session, await work(session)

    return asyncio.run(main())
