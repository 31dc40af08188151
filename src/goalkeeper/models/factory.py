"""Builds the `Model` a goal's settings name."""

from __future__ import annotations

import os
from pathlib import Path

from goalkeeper.config import ModelSettings
from goalkeeper.models.base import Model
from goalkeeper.models.openai_chat import OpenAIChatModel
from goalkeeper.models.scripted import ScriptedModel


def build_model(settings: ModelSettings) -> Model:
    """The provider for `settings`; the API key is read from its environment variable now, never stored."""
    if settings.provider == "scripted":
        assert settings.script is not None  # config.resolve_model_settings guarantees a script path
        return ScriptedModel.from_file(Path(settings.script))
    return OpenAIChatModel(settings.model, settings.base_url, os.environ.get(settings.api_key_env),
                           stream=settings.stream, timeout_s=settings.request_timeout_s,
                           api_key_env=settings.api_key_env)
