"""From configuration, flags and the environment to the one `ModelSettings` a goal is stored with.

Precedence, highest first: flags, config files (project over user, the chosen profile over both), then
the environment ($GOALKEEPER_MODEL, $OPENAI_BASE_URL, $OPENAI_API_KEY) as the zero-config fallback.
Reads environment variables only to see whether they are set; the API key itself is never stored.
"""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass
from pathlib import Path

from goalkeeper.config.load import Config, load_config
from goalkeeper.config.problems import did_you_mean
from goalkeeper.config.schema import DEFAULT_MODELS, ModelProvider
from goalkeeper.context.tokens import check_compact_limit
from goalkeeper.errors import ConfigError, NoProviderError
from goalkeeper.models.pricing import ZERO_PRICE, require_price
from goalkeeper.models.windows import context_window_of
from goalkeeper.spec.settings import GoalSettings, ModelSettings, ReasoningEffort

NO_PROVIDER_HINT = (
    "set OPENAI_API_KEY for OpenAI; or ANTHROPIC_API_KEY and pass --model-provider anthropic; or pass "
    "--model-provider local for the offline model (no key, no network); or point at any OpenAI-compatible "
    "server: gk ... --model NAME --base-url http://127.0.0.1:11434/v1 (Ollama, vLLM and llama.cpp work); "
    'or write model_provider = "..." in ~/.goalkeeper/config.toml'
)

AD_HOC_PROVIDER = "custom"
"""The provider name stored for an OpenAI-compatible server named only by `--base-url` / $OPENAI_BASE_URL."""


@dataclass(frozen=True)
class _Choice:
    """Which provider is in effect, and why."""

    name: str | None
    """A provider NAME, AD_HOC_PROVIDER, or None when nothing is configured."""
    ad_hoc_base_url: str | None = None
    """The base URL of an ad-hoc provider."""


def choose_model(workspace: Path, model: ModelSettings | None = None, stored: GoalSettings | None = None,
                 commit: str = "HEAD") -> ModelSettings:
    """The model a goal or a session talks to: `model` (the flags), else the one stored with the goal, else
    config.toml's as committed at `commit` (a goal's base; HEAD for a session with no goal). The one place
    this choice is made."""
    return model or (stored.model if stored else None) or settings_from_config(load_config(workspace, commit=commit))


def model_if_configured(workspace: Path, usd_budget: float | None = None) -> ModelSettings | None:
    """config.toml's model for a new goal, or None when no provider is configured anywhere (`gk run` asks
    later); a configured one that cannot be used (no key, no price for a USD budget) is still an error."""
    try:
        return settings_from_config(load_config(workspace), usd_budget=usd_budget)
    except NoProviderError:
        return None


def settings_from_config(config: Config, *, model: str | None = None, model_provider: str | None = None,
                         base_url: str | None = None, api_key_env: str | None = None,
                         reasoning_effort: str | None = None, stream: bool = False,
                         usd_budget: float | None = None) -> ModelSettings:
    """The model settings for a new goal: flags (the keyword arguments) laid over `config` and the environment.

    `--base-url` without `--model-provider` means an ad-hoc OpenAI-compatible server (Chat Completions).
    A provider needing a key whose variable is unset, a provider without a model name, or a USD budget on
    a model without a price is a ConfigError that says what to set.
    """
    choice = _choose_provider(config, model_provider, base_url, api_key_env)
    name = _choose_model(config, model, choice)
    if name is not None and name.startswith("scripted:"):
        script = scripted_settings(name.removeprefix("scripted:"))
        return script.model_copy(update=_context_limits(config, script.model))
    if choice.name is None:
        raise NoProviderError("no model provider is configured", NO_PROVIDER_HINT)
    effort = _reasoning_effort(reasoning_effort) or config.reasoning_effort
    if choice.ad_hoc_base_url is not None:
        if name is None:
            raise ConfigError(f"no model name for {choice.ad_hoc_base_url}",
                              "pass --model NAME (or set GOALKEEPER_MODEL)")
        return ModelSettings(provider=AD_HOC_PROVIDER, wire_api="chat", model=name,
                             base_url=choice.ad_hoc_base_url, api_key_env=api_key_env or "OPENAI_API_KEY",
                             reasoning_effort=effort, stream=stream,
                             price=require_price(name, AD_HOC_PROVIDER, config.prices, usd_budget),
                             **_context_limits(config, name))
    provider = _provider(config, choice.name)
    name = name or DEFAULT_MODELS.get(choice.name)
    if name is None:
        raise ConfigError(f"no model name for model provider {choice.name}",
                          'pass --model NAME (or write model = "NAME" in config.toml)')
    key_env = api_key_env or provider.env_key
    _require_key(choice.name, key_env, provider.env_key_instructions)
    tuned: dict[str, object] = {}
    if provider.request_max_retries is not None:
        tuned["max_retries"] = provider.request_max_retries
    if provider.stream_idle_timeout_ms is not None:
        tuned["stream_idle_timeout_s"] = provider.stream_idle_timeout_ms / 1000
    return ModelSettings.model_validate({
        "provider": choice.name, "wire_api": provider.wire_api, "model": name,
        "base_url": base_url or provider.base_url, "api_key_env": key_env,
        "http_headers": provider.http_headers, "query_params": provider.query_params,
        "reasoning_effort": effort, "stream": stream,
        "price": require_price(name, choice.name, config.prices, usd_budget), **_context_limits(config, name),
        **tuned})


def resolve_model_settings(model: str | None, base_url: str | None, api_key_env: str | None,
                           stream: bool = False) -> ModelSettings:
    """Model settings from flags and the environment alone (no config files), or say how to configure one.

    `--model scripted:PATH` selects the scripted provider with that script.
    """
    return settings_from_config(Config(), model=model, base_url=base_url, api_key_env=api_key_env, stream=stream)


def scripted_settings(script: str) -> ModelSettings:
    """The scripted provider replaying the JSON script at `script` (tests, demos)."""
    path = Path(script).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"script file not found: {path}", "pass --model scripted:PATH with an existing file")
    return ModelSettings(provider="scripted", wire_api="scripted", model="scripted", script=str(path),
                         price=ZERO_PRICE)


def _context_limits(config: Config, model: str) -> dict[str, int | None]:
    """The context window stored with the goal (config's, else the table's) and the compaction limit, which
    must fit in it."""
    window = config.context_window or context_window_of(model)
    check_compact_limit(model, window, config.auto_compact_token_limit)
    return {"context_window": window, "auto_compact_token_limit": config.auto_compact_token_limit}


def _choose_provider(config: Config, flag: str | None, base_url: str | None, api_key_env: str | None) -> _Choice:
    if flag:
        return _Choice(flag)
    if base_url:
        return _Choice(AD_HOC_PROVIDER, ad_hoc_base_url=base_url)
    if config.model_provider:
        return _Choice(config.model_provider)
    if environment_url := os.environ.get("OPENAI_BASE_URL"):
        return _Choice(AD_HOC_PROVIDER, ad_hoc_base_url=environment_url)
    if os.environ.get(api_key_env or "OPENAI_API_KEY"):
        return _Choice("openai")
    return _Choice(None)


def _choose_model(config: Config, flag: str | None, choice: _Choice) -> str | None:
    """`--model`, else config's `model` (unless a flag switched away from config's provider, whose model it
    names), else $GOALKEEPER_MODEL; None leaves it to the provider's default."""
    switched = config.model_provider is not None and (choice.name != config.model_provider
                                                      or choice.ad_hoc_base_url is not None)
    return flag or (None if switched else config.model) or os.environ.get("GOALKEEPER_MODEL") or None


def _provider(config: Config, name: str) -> ModelProvider:
    if name in config.providers:
        return config.providers[name]
    raise ConfigError(f"unknown model provider `{name}`{did_you_mean(name, config.providers)}",
                      f"use one of: {', '.join(sorted(config.providers))}; or define [model_providers.{name}] "
                      "with a base_url in config.toml")


def _require_key(provider: str, key_env: str | None, instructions: str | None) -> None:
    if key_env is None or os.environ.get(key_env):
        return
    how = f" ({instructions})" if instructions else ""
    raise ConfigError(f"model provider {provider} needs an API key, and {key_env} is not set",
                      f"set {key_env}{how}, or choose another provider with --model-provider")


def _reasoning_effort(flag: str | None) -> ReasoningEffort | None:
    allowed = typing.get_args(ReasoningEffort)
    if flag is None or flag in allowed:
        return typing.cast("ReasoningEffort | None", flag)
    raise ConfigError(f"unknown reasoning effort `{flag}`{did_you_mean(flag, allowed)}",
                      f"pass --reasoning-effort with one of: {', '.join(allowed)}")
