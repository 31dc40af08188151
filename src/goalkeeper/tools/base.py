"""The `Tool` protocol, the context a tool runs in, and what a tool returns.

A refusal or failure inside a tool is a `ToolResult(ok=False)` the model can read, never an exception:
the goal keeps running.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from goalkeeper.context.tokens import EstimatedTokens, TokenCounter
from goalkeeper.models.base import ToolSpec
from goalkeeper.sandbox.policy import SandboxPolicy

GoalSignal = Literal["complete", "blocked"]


@dataclass(frozen=True)
class ToolContext:
    """Where and how a tool runs."""

    workspace: Path
    """Absolute, resolved workspace root. File tools never touch anything outside it."""
    default_timeout_s: float = 120.0
    """Timeout for a shell command that does not name its own."""
    max_timeout_s: float = 1800.0
    output_token_limit: int = 4_000
    """Output longer than this many tokens is cut to head + tail with a marker naming the stored full text."""
    counter: TokenCounter | None = None
    """Counts the model's tokens; None counts with a fresh estimate."""
    read_blob: Callable[[str], str] | None = None
    """Reads a stored full output by id (`read_output`); None where no store is at hand."""
    env: dict[str, str] | None = None
    """Environment for child processes; None inherits the runner's."""
    goal_view: dict[str, Any] = field(default_factory=dict)
    """A snapshot of the goal for `get_goal`: objective, status, checks, usage, budget."""
    sandbox: SandboxPolicy | None = None
    """How shell commands are confined; None runs them unconfined (tests of the tools themselves)."""
    headless: bool = True
    """No person is there to approve a command: rules that say "ask" deny instead."""

    def token_counter(self) -> TokenCounter:
        """The counter to size output with: the context's own, else a fresh estimate."""
        return self.counter or EstimatedTokens()


@dataclass(frozen=True)
class ToolResult:
    """What a tool call produced."""

    output: str
    """Text for the model (already cut to the limit)."""
    ok: bool = True
    full_output: str | None = None
    """The uncut output when `output` was cut; stored under `blob_id_of(full_output)`, the id the cut's marker
    names, so nothing is lost and the model can page through it."""
    signal: GoalSignal | None = None
    """Set by `update_goal`: the model requests completion or declares blocked."""
    data: dict[str, Any] = field(default_factory=dict)
    """Structured payload for the harness (update_goal's report fields, checkpoint notes, exit code)."""
    files_touched: tuple[str, ...] = ()
    """Workspace-relative paths this call wrote or deleted."""


class Tool(Protocol):
    """A capability the model may call by name with JSON arguments."""

    spec: ToolSpec

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        """Run once. Bad arguments or a refusal come back as `ok=False`, not as an exception."""
        ...
