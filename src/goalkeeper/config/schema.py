"""The shape of config.toml: every key a person may write, with Codex's names where the meaning matches.

Pure types and the built-in providers; reading, layering and resolving live in load.py and resolve.py.
"""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from goalkeeper.sandbox.rules import ApprovalPolicy, RuleAction
from goalkeeper.spec.settings import Price, ReasoningEffort

ProviderWireApi = Literal["chat", "responses", "anthropic"]
"""The wire formats a `[model_providers.NAME]` table may name."""


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelProvider(_Table):
    """One `[model_providers.NAME]` table: where a provider lives and how to talk to it."""

    name: str | None = None
    """Display name (defaults to the table's NAME)."""
    base_url: str | None = None
    """The API's base URL. Required for a provider you define; the local provider's None means
    goalkeeper starts its own server."""
    wire_api: ProviderWireApi = "chat"
    """`chat` (OpenAI Chat Completions, what most compatible servers speak), `responses` (OpenAI Responses)
    or `anthropic` (Anthropic Messages)."""
    env_key: str | None = None
    """The environment variable that must hold the API key; unset means the provider needs no key."""
    env_key_instructions: str | None = None
    """Told to the person when env_key is not set, e.g. where to create a key."""
    http_headers: dict[str, str] = {}
    """Extra HTTP headers sent with every request."""
    query_params: dict[str, str] = {}
    """Extra query parameters on every request URL (e.g. `api-version` for Azure)."""
    request_max_retries: int | None = Field(None, ge=0)
    """Retries of a transient failure before the goal pauses (default 5)."""
    stream_idle_timeout_ms: int | None = Field(None, gt=0)
    """A stream silent for this many milliseconds is cut and retried (default 300000)."""


class RunTable(_Table):
    """The `[run]` table: how the harness drives turns."""

    shell_timeout_s: float | None = Field(None, gt=0)
    """Default timeout of one shell tool call, in seconds."""
    wrap_up_cap_tokens: int | None = Field(None, ge=0)
    """Tokens the budget wrap-up turn may spend on top of an exhausted budget."""
    wait_min_interval_s: float | None = Field(None, ge=0.1)
    """The shortest interval between two probes of the `wait` tool, in seconds (default 5)."""


def one_of(value: object, kind: Any) -> object:
    """`value` when the Literal `kind` allows it; else a literal_error whose choices end in a did-you-mean."""
    choices = typing.get_args(kind)
    if value in choices or not isinstance(value, str):
        return value
    close = difflib.get_close_matches(value, choices, n=1)
    listed = ", ".join(f'"{choice}"' for choice in choices)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": f"one of {listed}{hint}"})


class CommandRule(_Table):
    """One `[[rules]]` table: what happens to shell commands (or, with `tool`, tool calls) that match."""

    tool: str | None = Field(None, min_length=1)
    """Instead of `match`: a glob over an MCP tool's name (`fs__write_file`, `fs__*`)."""
    match: str | None = Field(None, min_length=1, validate_default=True)
    """A glob over one simple command (`*` is any text): `git push*`, `npm publish*`."""
    action: RuleAction
    """deny (never run it), ask (a person approves it; denied in headless runs) or allow."""
    reason: str = ""
    """Told to the model when the rule denies or asks, so it can choose another approach."""

    @field_validator("action", mode="before")
    @classmethod
    def _known_action(cls, value: object) -> object:
        return one_of(value, RuleAction)

    @field_validator("match")
    @classmethod
    def _command_or_tool(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A rule names a command glob or a tool glob: exactly one (`tool` is validated first)."""
        tool = info.data.get("tool")
        if value is None and tool is None:
            raise PydanticCustomError("missing", "Field required")
        if value is not None and tool is not None:
            raise PydanticCustomError("invalid_table", "{what}", {
                "what": "a rule has `match` (a command glob) or `tool` (a tool-name glob), not both",
                "fix": "two [[rules]] tables, one with each"})
        return value


NotifyStatus = Literal["pursuing", "paused", "achieved", "unmet", "budget_limited"]
"""A goal status a notification can be sent for (lifecycle.Status)."""


class NotifyTarget(_Table):
    """One `[[notify]]` table: a webhook told when a goal run reaches one of `events`."""

    url: str = Field(pattern=r"^https?://")
    """Where to POST: an http(s) URL, e.g. a Slack incoming webhook."""
    events: list[NotifyStatus] = ["achieved", "unmet", "budget_limited", "paused"]
    """The statuses that trigger a notification."""
    format: Literal["json", "slack"] = "json"
    """json: goal, status, reason, evidence summary and report URL; slack: `text` plus `blocks`."""
    secret: str | None = None
    """When set, each request is signed: `X-Goalkeeper-Signature: sha256=HMAC(secret, "<timestamp>.<body>")`
    with the timestamp in `X-Goalkeeper-Timestamp`."""
    timeout_s: float = Field(5.0, gt=0)
    """One request may take this long."""
    max_attempts: int = Field(5, ge=1, le=20)
    """Attempts before giving up (waiting 0.5 s, 1 s, 2 s ... between them)."""

    @field_validator("events", mode="before")
    @classmethod
    def _known_events(cls, value: object) -> object:
        return [one_of(item, NotifyStatus) for item in value] if isinstance(value, list) else value


class Profile(_Table):
    """A `[profiles.NAME]` table: top-level keys laid over the files' when the profile is chosen."""

    model: str | None = None
    """Model name as the provider knows it, or `scripted:PATH`."""
    model_provider: str | None = None
    """A built-in provider (openai, anthropic, ollama, local) or a `[model_providers]` NAME."""
    model_reasoning_effort: ReasoningEffort | None = None
    """minimal, low, medium or high; sent to reasoning models."""
    model_pricing: dict[str, Price] = {}
    """USD per 1M tokens by model name; overrides the built-in table."""
    model_context_window: int | None = Field(None, gt=0)
    """Tokens one request to the model may hold; overrides the built-in table (context_windows.toml)."""
    model_auto_compact_token_limit: int | None = Field(None, gt=0)
    """Prompt tokens at which the conversation is compacted (default 80% of the context window)."""
    tool_output_token_limit: int | None = Field(None, gt=0)
    """Tool output beyond this many tokens is cut to head + tail; the model pages the rest with read_output."""
    project_doc_max_bytes: int | None = Field(None, ge=0, le=1_048_576)
    """Bytes of AGENTS.md / CLAUDE.md text a goal's prompt may hold in all (default 32768; 0 reads none)."""
    run: RunTable | None = None
    """Harness knobs."""
    approval_policy: ApprovalPolicy | None = None
    """When a shell command needs a person's approval: untrusted, on-request (default) or never."""
    rules: list[CommandRule] | None = None
    """Command rules; every layer's rules apply, and the strictest matching one wins."""
    restate_before_start: bool | None = None
    """Before a goal's first run, ask the model to restate the goal in its own words for the person to
    check (default true)."""

    @field_validator("approval_policy", mode="before")
    @classmethod
    def _known_policy(cls, value: object) -> object:
        return one_of(value, ApprovalPolicy)


class SandboxTable(_Table):
    """The `[sandbox]` table: what the agent's commands never see, on top of the built-in lists."""

    secret_env: list[str] = []
    """Environment variable name globs removed from every command's environment (case-insensitive)."""
    secret_paths: list[str] = []
    """Path globs masked in the workspace and in $HOME, like `.env*` and `.ssh/`."""


HookEvent = Literal["pre_tool", "post_tool", "post_turn", "status_change", "completion"]
"""When a `[[hooks]]` command runs (run/hooks.py)."""

TOOL_HOOK_EVENTS = ("pre_tool", "post_tool")
"""The hook events about one tool call: the only ones a `matcher` applies to."""


class HookTable(_Table):
    """One `[[hooks]]` table: a command run at a seam of the goal's run, under the goal's sandbox."""

    event: HookEvent
    """pre_tool (exit 2 vetoes the call), post_tool, post_turn, status_change, or completion (exit 2 refuses the
    completion like a failing check)."""
    command: str = Field(min_length=1)
    """A bash command line, run like a check's `run`; the event arrives on stdin as one line of JSON."""
    timeout_s: float = Field(60.0, gt=0)
    """Seconds before the hook's process group is killed; a hook that times out never vetoes."""
    matcher: str = Field("*", min_length=1)
    """pre_tool and post_tool only: the tool names it runs for, globs joined by `|` (`shell|apply_patch`)."""

    @field_validator("event", mode="before")
    @classmethod
    def _known_event(cls, value: object) -> object:
        return one_of(value, HookEvent)

    @field_validator("command")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is blank: a hook needs a command to run")
        return value

    @field_validator("matcher")
    @classmethod
    def _matcher_for_tools(cls, value: str, info: ValidationInfo) -> str:
        event = info.data.get("event")  # absent when `event` itself was wrong: that error is the one shown
        if value != "*" and event is not None and event not in TOOL_HOOK_EVENTS:
            raise ValueError(f"applies only to pre_tool and post_tool hooks, not to {event} (remove it)")
        return value


class AgentsTable(_Table):
    """The `[agents]` table: the bounds on child agents a goal starts with `spawn_agent` (Codex's keys)."""

    max_threads: int | None = Field(None, ge=0)
    """Children running at once across a goal; 0 (the default) offers no spawn_agent tool."""
    max_depth: int | None = Field(None, ge=1)
    """How deep children nest (default 1: children cannot spawn their own)."""


class TemporalTable(_Table):
    """The `[temporal]` table (the user's file only): how every goalkeeper on this machine connects to the
    fleet's Temporal server; `gk worker`/`gk submit`/`gk batch` flags win over it key by key."""

    tls: bool | None = None
    """Connect over TLS (implied by any other key below)."""
    tls_cert: str | None = Field(None, min_length=1)
    """The client certificate file (PEM) for mTLS; needs `tls_key`."""
    tls_key: str | None = Field(None, min_length=1)
    """The client certificate's private key file (PEM)."""
    tls_ca: str | None = Field(None, min_length=1)
    """The CA certificate file (PEM) the server's certificate is checked against (default: the system's)."""
    tls_server_name: str | None = Field(None, min_length=1)
    """The name the server's certificate must carry, when not the address's host."""
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The environment variable holding the API key (Temporal Cloud); its name, never the key."""


class McpServer(_Table):
    """One `[mcp_servers.NAME]` table: an MCP server whose tools a goal may call as `NAME__tool` (Codex's keys)."""

    command: str | None = Field(None, min_length=1)
    """The program that runs a stdio server, inside the goal's sandbox (give `command` or `url`)."""
    args: list[str] = []
    """Its arguments."""
    env: dict[str, str] = {}
    """Variables set for it on top of the commands' environment (which has the credentials removed)."""
    url: str | None = Field(None, pattern=r"^https?://")
    """A streamable HTTP server's endpoint, instead of `command`."""
    bearer_token_env_var: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """With `url`: the variable holding a token sent as `Authorization: Bearer …`."""
    enabled_tools: list[str] | None = None
    """Only these of the server's tools (its own names); all when left out."""
    disabled_tools: list[str] = []
    """These of the server's tools are left out (applied after enabled_tools)."""
    startup_timeout_s: float = Field(10.0, gt=0)
    """Seconds the server may take to start and list its tools."""
    tool_timeout_s: float = Field(60.0, gt=0)
    """Seconds one tool call may take; past it the call is a tool error."""
    enabled: bool = True
    """false keeps the table but starts nothing."""

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        """stdio (`command`, `args`, `env`) or HTTP (`url`, `bearer_token_env_var`), never both or neither."""
        if (self.command is None) == (self.url is None):
            raise PydanticCustomError("invalid_table", "{what}", {
                "what": "needs `command` (a stdio server) or `url` (a streamable HTTP server), exactly one",
                "fix": 'command = "npx" with args = [...], or url = "http://127.0.0.1:8000/mcp"'})
        if self.url is not None and (self.args or self.env):
            raise PydanticCustomError("invalid_table", "{what}", {
                "what": "`args` and `env` are for a stdio server (`command`), not a `url`",
                "fix": "drop them, or give `command` instead of `url`"})
        if self.command is not None and self.bearer_token_env_var is not None:
            raise PydanticCustomError("invalid_table", "{what}", {
                "what": "`bearer_token_env_var` is for a `url` server", "fix": "drop it, or give `url`"})
        return self


MCP_SERVER_NAME = r"[A-Za-z0-9_-]+"
"""What a `[mcp_servers.NAME]` NAME may be: it prefixes its tools' names, which providers restrict."""


class ConfigFile(Profile):
    """One config.toml, user or project."""

    profile: str | None = None
    """The profile used when no `--profile` is given."""
    model_providers: dict[str, ModelProvider] = {}
    """Providers by NAME; a built-in NAME changes only the keys given."""
    profiles: dict[str, Profile] = {}
    """Named overlays, chosen with `--profile NAME` or `profile = "NAME"`."""
    notify: list[NotifyTarget] = []
    """`[[notify]]` webhooks; every layer's apply (the user's and the project's)."""
    server_url: str | None = Field(None, pattern=r"^https?://")
    """Where `gk serve` is reachable, for the report links in notifications."""
    notify_wait_s: float | None = Field(None, ge=0)
    """How long a finished run waits for notifications still being delivered (default 10 s)."""
    sandbox: SandboxTable | None = None
    """What the sandbox hides besides the built-in secrets; every layer's entries add up."""
    hooks: list[HookTable] = []
    """`[[hooks]]` commands; every layer's run (the user's first; a project's only once it is trusted)."""
    store_url: str | None = Field(None, pattern=r"^postgres(ql)?://")
    """The PostgreSQL store a fleet's machines share (read from the user's file only); unset: the store file."""
    temporal: TemporalTable | None = None
    """`[temporal]`: TLS and the API key for the fleet's Temporal server (read from the user's file only)."""
    agents: AgentsTable | None = None
    """`[agents]`: how many child agents a goal may run at once, and how deep they nest."""
    mcp_servers: dict[str, McpServer] = {}
    """MCP servers by NAME, whose tools join every goal's as `NAME__tool` (an untrusted project cannot add any)."""

    @field_validator("mcp_servers", mode="before")
    @classmethod
    def _server_names(cls, value: object) -> object:
        bad = [name for name in value if not re.fullmatch(MCP_SERVER_NAME, str(name))] \
            if isinstance(value, dict) else []
        if bad:
            raise PydanticCustomError("invalid_table", "{what}", {
                "what": f"server name {bad[0]!r} may hold only letters, digits, `_` and `-`",
                "fix": "[mcp_servers.my_server] (it prefixes the tools' names: my_server__tool)"})
        return value


BUILTIN_PROVIDERS: dict[str, dict[str, Any]] = {
    "openai": {"name": "OpenAI", "base_url": "https://api.openai.com/v1", "wire_api": "responses",
               "env_key": "OPENAI_API_KEY",
               "env_key_instructions": "create a key at https://platform.openai.com/api-keys"},
    "anthropic": {"name": "Anthropic", "base_url": "https://api.anthropic.com", "wire_api": "anthropic",
                  "env_key": "ANTHROPIC_API_KEY",
                  "env_key_instructions": "create a key at https://console.anthropic.com/settings/keys"},
    "ollama": {"name": "Ollama", "base_url": "http://127.0.0.1:11434/v1", "wire_api": "chat"},
    "local": {"name": "Local SmolLM2 (started by goalkeeper)", "base_url": None, "wire_api": "chat"},
}
"""The providers every config starts with, as raw table values (files are laid over them key by key)."""

DEFAULT_MODELS = {"openai": "gpt-5-mini", "anthropic": "claude-sonnet-4-5", "local": "smollm2-135m"}
"""The model used when none is named; other providers need `--model` (or `model = ...`)."""

PROJECT_DOC_MAX_BYTES = 32_768
"""Bytes of project instructions (AGENTS.md, CLAUDE.md) a goal's prompt holds unless `project_doc_max_bytes`
says otherwise: Codex's default."""

OPTIONAL_BASE_URL = frozenset({"local"})
"""Providers whose base_url may be None (goalkeeper serves them itself)."""

EXAMPLES = {
    "model": 'model = "gpt-5-mini"',
    "model_provider": 'model_provider = "openai" (or anthropic, ollama, local, a [model_providers] NAME)',
    "model_reasoning_effort": 'model_reasoning_effort = "medium" (minimal, low, medium or high)',
    "profile": 'profile = "NAME" with a [profiles.NAME] table',
    "model_providers": '[model_providers.NAME] with base_url = "https://…/v1"',
    "profiles": "[profiles.NAME] tables",
    "model_pricing": '[model_pricing."MODEL"] with input, cached_input and output',
    "run": "a [run] table",
    "name": 'name = "My provider"',
    "base_url": 'base_url = "http://127.0.0.1:8000/v1"',
    "wire_api": 'wire_api = "chat" (or "responses", "anthropic")',
    "env_key": 'env_key = "MY_API_KEY" (the variable\'s name, not the key)',
    "env_key_instructions": 'env_key_instructions = "create a key at …"',
    "http_headers": 'http_headers = { "X-Team" = "core" }',
    "query_params": 'query_params = { "api-version" = "2025-04-01-preview" }',
    "request_max_retries": "request_max_retries = 4",
    "stream_idle_timeout_ms": "stream_idle_timeout_ms = 300000",
    "input": "input = 1.25 (USD per 1M tokens)",
    "cached_input": "cached_input = 0.125 (USD per 1M tokens)",
    "output": "output = 10.0 (USD per 1M tokens)",
    "model_context_window": "model_context_window = 272000 (tokens)",
    "model_auto_compact_token_limit": "model_auto_compact_token_limit = 200000 (tokens, below the context window)",
    "tool_output_token_limit": "tool_output_token_limit = 4000 (a top-level key)",
    "project_doc_max_bytes": "project_doc_max_bytes = 32768 (bytes, at most 1048576; 0 reads no AGENTS.md)",
    "shell_timeout_s": "shell_timeout_s = 120",
    "wrap_up_cap_tokens": "wrap_up_cap_tokens = 32000",
    "wait_min_interval_s": "wait_min_interval_s = 5 (seconds, at least 0.1)",
    "approval_policy": 'approval_policy = "on-request" (or "untrusted", "never")',
    "rules": '[[rules]] tables with match = "git push*" and action = "deny"',
    "match": 'match = "git push*"',
    "action": 'action = "deny" (or "ask", "allow")',
    "reason": 'reason = "the person pushes after review"',
    "restate_before_start": "restate_before_start = true (or false)",
    "notify": '[[notify]] tables with url = "https://…", events = ["achieved", "unmet"], format = "json"',
    "url": 'url = "https://hooks.example.com/goalkeeper"',
    "events": 'events = ["achieved", "unmet", "budget_limited", "paused"]',
    "format": 'format = "json" (or "slack")',
    "secret": 'secret = "a shared secret for the HMAC signature"',
    "timeout_s": "timeout_s = 5",
    "max_attempts": "max_attempts = 5",
    "server_url": 'server_url = "http://127.0.0.1:8765"',
    "notify_wait_s": "notify_wait_s = 10",
    "store_url": 'store_url = "postgresql://goalkeeper@db.internal:5432/goalkeeper"',
    "sandbox": '[sandbox] with secret_env = ["*_CREDS"] and secret_paths = ["secrets/"]',
    "secret_env": 'secret_env = ["DATABASE_URL", "*_CREDS"] (variable name globs)',
    "secret_paths": 'secret_paths = ["secrets/", "*.key"] (path globs)',
    "hooks": '[[hooks]] tables with event = "pre_tool", command = "./check-call.sh", matcher = "shell"',
    "event": 'event = "pre_tool" (or "post_tool", "post_turn", "status_change", "completion")',
    "command": ('command = "python3 ~/hooks/review.py" (a hook\'s bash command line), or command = "npx" (an MCP '
                "server's program)"),
    "matcher": 'matcher = "shell|apply_patch" (tool name globs joined by |)',
    "temporal": '[temporal] with tls_cert = "~/.goalkeeper/client.pem" and tls_key = "~/.goalkeeper/client.key"',
    "tls": "tls = true",
    "tls_cert": 'tls_cert = "/etc/goalkeeper/client.pem" (the client certificate, PEM)',
    "tls_key": 'tls_key = "/etc/goalkeeper/client.key" (its private key, PEM)',
    "tls_ca": 'tls_ca = "/etc/goalkeeper/ca.pem" (the CA that signed the server\'s certificate)',
    "tls_server_name": 'tls_server_name = "temporal.internal"',
    "api_key_env": 'api_key_env = "TEMPORAL_API_KEY" (the variable\'s name, not the key)',
    "agents": "[agents] with max_threads = 3 and max_depth = 1",
    "max_threads": "max_threads = 3 (children at once; 0 turns spawn_agent off)",
    "max_depth": "max_depth = 1 (children cannot spawn their own)",
    "tool": 'tool = "fs__write_file" (or a glob: "fs__*")',
    "mcp_servers": '[mcp_servers.NAME] with command = "npx" and args = [...], or url = "http://…/mcp"',
    "args": 'args = ["-y", "@modelcontextprotocol/server-filesystem", "."]',
    "env": 'env = { "LOG_LEVEL" = "warn" }',
    "bearer_token_env_var": 'bearer_token_env_var = "MY_MCP_TOKEN" (the variable\'s name, not the token)',
    "enabled_tools": 'enabled_tools = ["read_file", "list_directory"]',
    "disabled_tools": 'disabled_tools = ["write_file"]',
    "startup_timeout_s": "startup_timeout_s = 10",
    "tool_timeout_s": "tool_timeout_s = 60",
    "enabled": "enabled = true (or false)",
}
"""What to write, by key, for error messages."""

REPLACED_KEYS = {
    "tool_output_char_limit": "tool output is now limited in tokens; write tool_output_token_limit = 4000 at the "
                              "top level (or in a profile), not in [run]",
}
"""Keys that were removed, by name: what to write instead (shown in place of "unknown key")."""
