"""Settings → the provider that speaks their wire format, with their headers."""

from __future__ import annotations

import asyncio

import pytest

from chat_server import ChatServer, Completion
from goalkeeper.config.resolve import scripted_settings
from goalkeeper.errors import ConfigError
from goalkeeper.models.anthropic_messages import AnthropicModel
from goalkeeper.models.base import Message, ModelRequest
from goalkeeper.models.factory import BuildingModel, build_model, local_server_for, open_model, provider_module
from goalkeeper.models.openai_chat import OpenAIChatModel
from goalkeeper.models.openai_responses import OpenAIResponsesModel
from goalkeeper.models.scripted import ScriptedModel
from goalkeeper.spec.settings import ModelSettings


def test_each_wire_api_builds_its_provider(tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "s.json"
    script.write_text('{"steps": [{"text": "hi"}]}')
    kinds = {
        "chat": OpenAIChatModel, "responses": OpenAIResponsesModel, "anthropic": AnthropicModel,
    }
    for wire_api, kind in kinds.items():
        settings = ModelSettings(provider="custom", wire_api=wire_api, model="m", base_url="http://127.0.0.1:9/v1")
        assert isinstance(built := build_model(settings), kind)
        assert type(built).__module__ == provider_module(settings)  # what a batch imports ahead of its goals
    scripted = scripted_settings(str(script))
    assert isinstance(built := build_model(scripted), ScriptedModel)
    assert type(built).__module__ == provider_module(scripted)


def test_configured_headers_reach_the_server() -> None:
    settings = ModelSettings(provider="team", wire_api="chat", model="m", http_headers={"X-Team": "ml"})
    with ChatServer([Completion(text="ok")]) as server:
        reachable = settings.model_copy(update={"base_url": server.base_url})
        model = build_model(reachable)
        request = ModelRequest((Message("system", "s"), Message("user", "u")))
        assert asyncio.run(model.complete(request)).content == "ok"
        headers = server.request_headers[0]
    assert headers["x-team"] == "ml"


def test_remote_providers_start_no_local_server() -> None:
    settings = ModelSettings(provider="openai", wire_api="responses", model="gpt-5-mini", base_url="https://x/v1")
    assert local_server_for(settings) is None
    assert local_server_for(settings.model_copy(update={"provider": "local"})) is None  # a base URL of its own


def test_a_remote_model_is_built_when_started_and_answers_as_built(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = ModelSettings(provider="team", wire_api="chat", model="m")

    async def drive(base_url: str) -> tuple[bool, str, str]:
        async with open_model(settings.model_copy(update={"base_url": base_url}), build_now=False) as model:
            assert isinstance(model, BuildingModel) and model.name == "m"
            unstarted = model._built is None  # nothing loads until the caller (or a request) starts it
            model.start()
            model.start()  # once
            answer = await model.complete(ModelRequest((Message("system", "s"), Message("user", "u"))))
            return unstarted, answer.content, model.name

    with ChatServer([Completion(text="ok")]) as server:
        assert asyncio.run(drive(server.base_url)) == (True, "ok", "m")
        assert len(server.requests) == 1


def test_a_scripted_model_is_built_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def open_script(path: str) -> str:
        async with open_model(scripted_settings(path), build_now=False) as model:
            return type(model).__name__

    script = tmp_path / "s.json"
    script.write_text('{"steps": [{"text": "hi"}]}')
    assert asyncio.run(open_script(str(script))) == "ScriptedModel"
    with pytest.raises(ConfigError, match="script file not found"):  # a bad script is an error at open
        asyncio.run(open_script(str(tmp_path / "s2.json")))
