"""Model sessions outside a goal's turns: requests offering a registry's tools, their calls run, usage summed.

Side questions (side.py) and planning turns (planning.py) give it the read-only tools built here; chat
(chat.py) gives it every tool but the goal tools. A session never writes goal state and never sends a
continuation: whoever drives it decides when it ends.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from goalkeeper.config.load import load_config
from goalkeeper.config.trust import HARNESS_PROTECT
from goalkeeper.context.tokens import counter_for
from goalkeeper.models.base import Message, Model, ModelRequest, ModelResponse, ToolCall, ToolSpec, Usage
from goalkeeper.models.retry import RetryPolicy, complete_with_retries
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import ModelSettings, RunSettings
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


def read_only_context(workspace: Path, contract: Contract | None, run: RunSettings, model: ModelSettings,
                      store: Store, goal_view: dict[str, Any] | None = None) -> ToolContext:
    """A tool context built as the runner builds its own: the contract's sandbox, credentials scrubbed, the
    model's token counter, and the store's full outputs readable (`read_output`)."""
    boundaries = contract.boundaries if contract is not None else None
    config = load_config(workspace)  # for its secrets; HEAD's committed version (see load_config)
    sandbox = SandboxPolicy(
        boundaries.sandbox if boundaries else "workspace-write", workspace,
        (*HARNESS_PROTECT, *(boundaries.protect if boundaries else ())), tuple(boundaries.paths) if boundaries else (),
        network=boundaries.network if boundaries else False, secrets=config.secrets, secret_env=config.secret_env)
    return ToolContext(workspace, run.shell_timeout_s, output_token_limit=run.tool_output_token_limit,
                       counter=counter_for(model.model, model.wire_api), read_blob=store.get_blob,
                       env=config.command_env(os.environ, model.api_key_env), goal_view=goal_view or {},
                       sandbox=sandbox)


def usage_payload(usage: Usage) -> dict[str, int]:
    """Usage as stored in a `side` or `plan` event."""
    return {"input_tokens": usage.input_tokens, "cached_input_tokens": usage.cached_input_tokens,
            "output_tokens": usage.output_tokens, "reasoning_tokens": usage.reasoning_tokens,
            "charged_tokens": usage.charged_tokens}


@dataclass(frozen=True)
class SessionCost:
    """What a session spent: its requests, their summed usage, the model that answered and the calls made."""

    usage: Usage
    model: str
    requests: int
    tool_calls: tuple[ToolUse, ...]

    def payload(self) -> dict[str, Any]:
        """As stored in a `side`, `plan` or `draft` event and printed by `--json`."""
        return {"usage": usage_payload(self.usage), "model": self.model, "requests": self.requests,
                "tool_calls": [{"name": u.name, "arguments": u.arguments, "ok": u.ok} for u in self.tool_calls]}

    def line(self) -> str:
        """One line for a footer: `2 requests · 3,890 input tokens (1,792 cached), 180 output · test-model`."""
        usage = self.usage
        return (f"{self.requests} request{'s' if self.requests != 1 else ''} · {usage.input_tokens:,} input tokens "
                f"({usage.cached_input_tokens:,} cached), {usage.output_tokens:,} output · {self.model}")


def assistant_message(response: ModelResponse) -> Message:
    """The response as the next request carries it."""
    return Message("assistant", response.content, tool_calls=response.tool_calls)


@dataclass
class ToolSession:
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
    """Each message `converse` adds to the conversation, with the response or tool result it came from (chat
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
            use = ToolUse(call.name, call.arguments, result.ok)
            self.calls.append(use)
            if self.on_tool is not None:
                self.on_tool(use)
            message = Message("tool", result.output, tool_call_id=call.id, name=call.name)
            if self.on_message is not None:
                self.on_message(message, result)
            results.append(message)
        return results

    async def converse(self, messages: list[Message], max_requests: int, last_request: str) -> str:
        """Requests and tool calls until a text-only answer, appended to `messages`; its text is returned.

        After `max_requests` requests, `last_request` is sent as a user message and that answer's text is
        the answer. It still lists the tools (a provider refuses tool calls in a history without tool
        definitions), but any call it makes is not run, and is left out of the conversation.
        """
        for _ in range(max_requests):
            response = await self.request(messages, self.tools.specs)
            self._add(messages, assistant_message(response), response)
            if not response.tool_calls:
                return response.content
            messages += await self.run_calls(response.tool_calls)
        messages.append(Message("user", last_request))
        final = await self.request(messages, self.tools.specs)
        self._add(messages, Message("assistant", final.content), final)
        return final.content

    def cost(self) -> SessionCost:
        """What the session has spent so far."""
        return SessionCost(self.usage, self.model_name, self.requests, tuple(self.calls))

    def _add(self, messages: list[Message], message: Message, response: ModelResponse) -> None:
        messages.append(message)
        if self.on_message is not None:
            self.on_message(message, response)
