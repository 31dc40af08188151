"""The settings stored with each goal: which model to ask, how to reach it, what its tokens cost, and how the
harness behaves.

Settings are resolved once, when the goal is set, and stored with the goal as JSON, so a `gk run` after a
restart talks to the same model the same way. They never hold a secret: only the name of the variable
that does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Price(BaseModel):
    """USD per 1M tokens; `[model_pricing."NAME"]` in config.toml has the same three keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    """Non-cached prompt tokens."""
    cached_input: float = Field(ge=0)
    """Prompt tokens read from the provider's prompt cache."""
    output: float = Field(ge=0)
    """Completion tokens, reasoning tokens included."""


WireApi = Literal["chat", "responses", "anthropic", "scripted"]
"""How requests are spoken: OpenAI Chat Completions, OpenAI Responses, Anthropic Messages, or a replayed script."""

ReasoningEffort = Literal["minimal", "low", "medium", "high"]
"""How hard a reasoning model thinks before answering (Codex's `model_reasoning_effort`)."""


class ModelSettings(BaseModel):
    """Which model proposes, and how to reach it."""

    model_config = ConfigDict(extra="forbid")

    provider: str = "custom"
    """The provider's name: openai, anthropic, ollama, local, a `[model_providers]` name from config.toml,
    custom (an ad-hoc `--base-url`) or scripted."""
    wire_api: WireApi = "chat"
    """The wire format the provider speaks; picks the client that talks to it."""
    model: str = ""
    """Model name as the provider knows it."""
    base_url: str | None = None
    """The provider's base URL (…/v1 for OpenAI-compatible servers). None means the provider's default; for
    the local provider, a server goalkeeper starts on demand."""
    api_key_env: str | None = None
    """The environment variable holding the API key; the key itself is never stored. None: no key is sent."""
    http_headers: dict[str, str] = {}
    """Extra HTTP headers sent with every request."""
    query_params: dict[str, str] = {}
    """Extra query parameters added to every request URL (e.g. Azure's api-version)."""
    reasoning_effort: ReasoningEffort | None = None
    """Sent to reasoning models when set; None leaves the model's own default."""
    script: str | None = None
    """Scripted provider only: path of the JSON script."""
    stream: bool = False
    """Stream responses (text shows as it arrives)."""
    request_timeout_s: float = 300.0
    """One model request may take at most this long."""
    stream_idle_timeout_s: float = 300.0
    """A streamed response that sends nothing for this long is cut and retried."""
    max_retries: int = 5
    """Retries of a transient provider failure before the goal pauses."""
    retry_max_total_s: float = 120.0
    """Total time spent retrying one request before the goal pauses."""
    price: Price | None = None
    """USD per 1M tokens, fixed at goal start; zero for local models, None when the model's price is unknown
    (allowed only without a USD budget)."""
    context_window: int | None = None
    """Tokens one request may hold, fixed at goal start: config's `model_context_window`, else the built-in
    table (context_windows.toml); None when unknown (a default window is then assumed)."""
    auto_compact_token_limit: int | None = None
    """Config's `model_auto_compact_token_limit`: prompt tokens at which the conversation is compacted;
    None compacts at 80% of the window."""

    @model_validator(mode="before")
    @classmethod
    def _upgrade_stored(cls, data: Any) -> Any:
        # Goals stored before wire_api existed said provider "chat" (Chat Completions) or "scripted".
        if not isinstance(data, dict) or "wire_api" in data:
            return data
        provider = data.get("provider")
        if provider == "scripted":
            return {**data, "wire_api": "scripted"}
        if provider == "chat":
            return {**data, "provider": "openai" if data.get("base_url") is None else "custom", "wire_api": "chat"}
        return data


class AgentSettings(BaseModel):
    """How many child agents (`spawn_agent`) a goal may run at once, and how deep they may nest."""

    model_config = ConfigDict(extra="forbid")

    max_threads: int = Field(0, ge=0)
    """Children running at once, across the whole goal (a call over it is refused). 0, the default, offers no
    spawn_agent tool: its schema would weigh on every request of every goal, so children are asked for."""
    max_depth: int = Field(1, ge=1)
    """How deep children nest: 1 lets the goal's model spawn children, and children spawn none."""


class RunSettings(BaseModel):
    """How the harness drives turns."""

    model_config = ConfigDict(extra="forbid")

    tool_output_token_limit: int = 4_000
    """Tool output beyond this many tokens is cut to head + tail; the full text stays in the store, and the
    model pages through it with `read_output`."""
    shell_timeout_s: float = 120.0
    """Default timeout of one shell tool call."""
    wrap_up_cap_tokens: int = 32_000
    """Tokens the budget wrap-up turn may spend on top of an exhausted budget."""
    heartbeat_s: float = 1.0
    """How often a runner renews its lease."""
    control_poll_s: float = 0.2
    """How often a pause or clear is looked for while a model request is in flight."""
    wait_min_interval_s: float = 5.0
    """The shortest interval between two probes of a `wait` (a shorter one asked for is raised to it)."""
    agents: AgentSettings = AgentSettings()
    """`[agents]`: the bounds on child agents."""

    @model_validator(mode="before")
    @classmethod
    def _upgrade_stored(cls, data: Any) -> Any:
        # Goals stored before the limit was counted in tokens say tool_output_char_limit (about 4 chars a token).
        if not isinstance(data, dict) or not isinstance(data.get("tool_output_char_limit"), int):
            return data
        upgraded = {key: value for key, value in data.items() if key != "tool_output_char_limit"}
        upgraded.setdefault("tool_output_token_limit", max(data["tool_output_char_limit"] // 4, 1))
        return upgraded


class GoalSettings(BaseModel):
    """Everything stored with a goal besides its contract."""

    model_config = ConfigDict(extra="forbid")

    model: ModelSettings | None = None
    """None until a provider is configured; `gk run` then resolves one from flags, config or the environment."""
    run: RunSettings = RunSettings()
    allow_dirty: bool = False
    """Start even with uncommitted changes: they are committed as a snapshot on the goal branch first."""
    workdir: str = ""
    """The folder in the repository the goal was set from (`--cwd`), `/`-separated, '' for its root: project
    instructions (AGENTS.md) are read from the root down to it."""
    own_files: dict[str, str] = Field(default_factory=dict)
    """The person's files for goalkeeper, relative to the repository's top-level, each with its sha256 when the
    goal was set: the goal file it was set from (`--file`) when it lies inside, and the untracked files under
    `.goalkeeper/`. Untracked and unchanged, they never count as changes (so they neither block the goal nor
    land on its branch); the model may not write them, and a file it made there anyway is a change."""
    lint_at_baseline: bool = False
    """The lint gate's run findings come from the baseline run (a goal set to run at once, not forced): an error
    there ends the goal before its first model request, as the gate would have refused it."""
