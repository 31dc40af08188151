"""Settings for one goal run: which model to ask and how the harness behaves.

Settings are resolved once, when the goal is set, and stored with the goal, so a `gk run` after a
restart talks to the same model the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from goalkeeper.errors import ConfigError

ProviderKind = Literal["chat", "scripted"]

NO_PROVIDER_HINT = (
    "set OPENAI_API_KEY (and optionally OPENAI_BASE_URL) for OpenAI, or point at any OpenAI-compatible "
    "server: gk ... --model NAME --base-url http://127.0.0.1:11434/v1 (Ollama, vLLM and llama.cpp work)"
)


class ModelSettings(BaseModel):
    """Which model proposes, and how to reach it."""

    model_config = ConfigDict(extra="forbid")

    provider: ProviderKind = "chat"
    """`chat`: the OpenAI Chat Completions wire format; `scripted`: replay a script file (tests, demos)."""
    model: str = ""
    """Model name as the provider knows it."""
    base_url: str | None = None
    """OpenAI-compatible base URL (…/v1). None means the provider's default."""
    api_key_env: str = "OPENAI_API_KEY"
    """The environment variable holding the API key; the key itself is never stored."""
    script: str | None = None
    """Scripted provider only: path of the JSON script."""
    stream: bool = False
    """Stream responses (text shows as it arrives)."""
    request_timeout_s: float = 300.0
    """One model request may take at most this long."""
    max_retries: int = 5
    """Retries of a transient provider failure before the goal pauses."""
    retry_max_total_s: float = 120.0
    """Total time spent retrying one request before the goal pauses."""


class RunSettings(BaseModel):
    """How the harness drives turns."""

    model_config = ConfigDict(extra="forbid")

    tool_output_char_limit: int = 12_000
    """Tool output beyond this is cut to head + tail; the full text stays in the store."""
    shell_timeout_s: float = 120.0
    """Default timeout of one shell tool call."""
    wrap_up_cap_tokens: int = 32_000
    """Tokens the budget wrap-up turn may spend on top of an exhausted budget."""
    heartbeat_s: float = 1.0
    """How often a runner renews its lease."""
    control_poll_s: float = 0.2
    """How often a pause or clear is looked for while a model request is in flight."""


class GoalSettings(BaseModel):
    """Everything stored with a goal besides its contract."""

    model_config = ConfigDict(extra="forbid")

    model: ModelSettings | None = None
    """None until a provider is configured; `gk run` then resolves one from flags or the environment."""
    run: RunSettings = RunSettings()


def resolve_model_settings(model: str | None, base_url: str | None, api_key_env: str | None,
                           stream: bool = False) -> ModelSettings:
    """Build model settings from flags and the environment, or say exactly how to configure a provider.

    `--model scripted:PATH` selects the scripted provider with that script.
    """
    model = model or os.environ.get("GOALKEEPER_MODEL")
    if model and model.startswith("scripted:"):
        script = Path(model.removeprefix("scripted:")).expanduser().resolve()
        if not script.is_file():
            raise ConfigError(f"script file not found: {script}", "pass --model scripted:PATH with an existing file")
        return ModelSettings(provider="scripted", model="scripted", script=str(script))
    key_env = api_key_env or "OPENAI_API_KEY"
    base_url = base_url or os.environ.get("OPENAI_BASE_URL")
    if not base_url and not os.environ.get(key_env):
        raise ConfigError("no model provider is configured", NO_PROVIDER_HINT)
    if not model:
        if base_url:
            raise ConfigError(f"no model name for {base_url}", "pass --model NAME (or set GOALKEEPER_MODEL)")
        model = "gpt-5-mini"
    return ModelSettings(provider="chat", model=model, base_url=base_url, api_key_env=key_env, stream=stream)
