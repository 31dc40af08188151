"""Configuration: config.toml files, flags and the environment, resolved into the settings stored with a goal.

Layers, later wins: built-in providers and prices, `$GOALKEEPER_HOME/config.toml`,
`<workspace>/.goalkeeper/config.toml`, the chosen `[profiles.NAME]`, then flags. Codex's key names are
used where the meaning matches (model, model_provider, model_reasoning_effort, profile, [model_providers]).
May import: the other adapters (verify, context, tools, models, workspace, sandbox, contract, templates),
store, core, events and errors.
"""

from goalkeeper.config.load import Config, config_paths, goalkeeper_home, load_config
from goalkeeper.config.resolve import (
    AD_HOC_PROVIDER,
    NO_PROVIDER_HINT,
    choose_model,
    model_if_configured,
    resolve_model_settings,
    scripted_settings,
    settings_from_config,
)
from goalkeeper.config.schema import BUILTIN_PROVIDERS, DEFAULT_MODELS, ModelProvider, NotifyTarget
from goalkeeper.config.settings import GoalSettings, ModelSettings, ReasoningEffort, RunSettings, WireApi

__all__ = [
    "AD_HOC_PROVIDER",
    "BUILTIN_PROVIDERS",
    "DEFAULT_MODELS",
    "NO_PROVIDER_HINT",
    "Config",
    "GoalSettings",
    "ModelProvider",
    "ModelSettings",
    "NotifyTarget",
    "ReasoningEffort",
    "RunSettings",
    "WireApi",
    "choose_model",
    "config_paths",
    "goalkeeper_home",
    "load_config",
    "model_if_configured",
    "resolve_model_settings",
    "scripted_settings",
    "settings_from_config",
]
