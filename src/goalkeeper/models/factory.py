"""Builds the `Model` a goal's settings name, and the endpoint it talks to (a local server on demand);
`open_model` is the one way the runner and the sessions open one."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import platform
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from goalkeeper.models.base import Model, ModelRequest, ModelResponse
from goalkeeper.spec.settings import ModelSettings

if TYPE_CHECKING:
    from goalkeeper.models.local_server import LocalServer

#: Modules the HTTP stack of the SDKs (httpx over anyio) imports only when its first request connects, about
#: 20 ms: a model built in a worker thread imports there those of the packages its SDK loaded, off the path
#: to that request.
FIRST_REQUEST_IMPORTS = ("anyio._backends._asyncio", "httpcore2._backends.anyio", "httpcore._backends.anyio")

#: Printed whenever the bundled local model is used, so nobody mistakes it for a capable coder.
LOCAL_MODEL_NOTE = ("local model: SmolLM2-135M-Instruct via llama.cpp, a 135M-parameter model that "
                    "demonstrates the loop; it is not a capable coder")


def build_model(settings: ModelSettings) -> Model:
    """The provider for `settings`; the API key is read from its environment variable now, never stored.

    Each provider's module is imported here, when a model is built: the SDKs (openai with aiohttp, anthropic)
    take most of a second to import, and every command that never calls a model must start without them."""
    key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
    # The SDKs' read timeout is the longest wait between two chunks: for a stream that is exactly the
    # idle timeout; for a whole response it must cover the whole answer.
    timeout = settings.stream_idle_timeout_s if settings.stream else settings.request_timeout_s
    if settings.wire_api == "scripted":
        assert settings.script is not None  # resolution guarantees a script path
        from goalkeeper.models.scripted import ScriptedModel

        return ScriptedModel.from_file(Path(settings.script))
    if settings.wire_api == "responses":
        from goalkeeper.models.openai_responses import OpenAIResponsesModel

        return OpenAIResponsesModel(settings.model, settings.base_url, key, stream=settings.stream,
                                    timeout_s=timeout, reasoning_effort=settings.reasoning_effort,
                                    extra_headers=settings.http_headers, query_params=settings.query_params,
                                    api_key_env=settings.api_key_env)
    if settings.wire_api == "anthropic":
        from goalkeeper.models.anthropic_messages import AnthropicModel

        return AnthropicModel(settings.model, settings.base_url, key, stream=settings.stream,
                              timeout_s=timeout, extra_headers=settings.http_headers,
                              api_key_env=settings.api_key_env)
    from goalkeeper.models.openai_chat import OpenAIChatModel

    return OpenAIChatModel(settings.model, settings.base_url, key, stream=settings.stream,
                           timeout_s=timeout, extra_headers=settings.http_headers,
                           query_params=settings.query_params, api_key_env=settings.api_key_env)


def local_server_for(settings: ModelSettings) -> LocalServer | None:
    """The bundled llama.cpp server `settings` need (the `local` provider with no base URL), not yet started.
    Its port is never stored with the goal."""
    if settings.provider != "local" or settings.base_url:
        return None
    from goalkeeper.models.local_server import LocalServer  # it loads httpx, needed only for this provider

    return LocalServer()


class BuildingModel:
    """A provider's model built in a worker thread: its SDK takes most of a second to import, and what the
    caller does before its first request need not wait for it (a goal's baseline starts the build when its
    checks start, so the import does not compete for the interpreter with the git work before them). The
    first request starts the build if nothing did, waits for it and raises what it raised. Its name is the
    settings' (the name a provider sends)."""

    def __init__(self, settings: ModelSettings) -> None:
        self.name = settings.model
        self._settings = settings
        self._built: asyncio.Future[Model] | None = None

    def start(self) -> None:
        """Start the build now, unless it started already (from a running event loop)."""
        if self._built is None:
            self._built = asyncio.ensure_future(asyncio.to_thread(_build_for_request, self._settings))

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.start()
        assert self._built is not None  # start() made it
        return await (await self._built).complete(request)

    async def aclose(self) -> None:
        if self._built is None:
            return
        try:
            built = await self._built  # a thread cannot be stopped: a build under way finishes first
        except Exception:  # a build that failed opened nothing, and a request raised its error
            return
        await built.aclose()


def _build_for_request(settings: ModelSettings) -> Model:
    """`build_model`, then what its first request would do first (`_first_request_imports`)."""
    built = build_model(settings)
    _first_request_imports()
    return built


def _first_request_imports() -> None:
    """The imports a first request makes (FIRST_REQUEST_IMPORTS of loaded packages), and the platform the SDKs
    name in their headers (platform.platform() runs `uname -p` once, and the standard library keeps the answer)."""
    for name in FIRST_REQUEST_IMPORTS:
        if name.partition(".")[0] in sys.modules:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
    platform.platform()


def provider_module(settings: ModelSettings) -> str:
    """The module `build_model` imports for `settings` (tests/test_factory.py holds the two to each other)."""
    return {"scripted": "goalkeeper.models.scripted", "responses": "goalkeeper.models.openai_responses",
            "anthropic": "goalkeeper.models.anthropic_messages"}.get(settings.wire_api, "goalkeeper.models.openai_chat")


def import_provider_soon(settings: ModelSettings | None) -> threading.Thread | None:
    """Import, in a thread of its own (returned), what building a model for `settings` and its first request
    import.

    A batch calls it before it has linted its goals: otherwise its first goals each wait most of a second for
    the SDK's import (one of them imports it, the others wait on the import lock) while holding the start slots
    the rest queue for; its worker processes, forked once it is done, inherit it. A failed import is left for
    the build to raise, where the goal reports it."""
    if settings is None:
        return None

    def run() -> None:
        with contextlib.suppress(Exception):
            importlib.import_module(provider_module(settings))
            _first_request_imports()
            if settings.wire_api != "scripted":
                from goalkeeper.models.provider import shared_tls

                shared_tls()  # the CA bundle, loaded once for every goal's client

    thread = threading.Thread(target=run, name="import-provider", daemon=True)
    thread.start()
    return thread


@contextlib.asynccontextmanager
async def open_model(settings: ModelSettings, *, build_now: bool = True) -> AsyncIterator[Model]:
    """The model `settings` name, its endpoint reachable while the block runs (the bundled local server is
    started and stopped off the event loop: it takes seconds), and its connections closed at the end.
    A remote provider's model is a `BuildingModel`, its build started now, or with `build_now=False` by the
    caller's `start()` (or its first request)."""
    server = local_server_for(settings)
    if server is not None:
        await asyncio.to_thread(server.start)
    try:
        if server is None:
            # The scripted model is built at once: it loads no SDK, and a bad script is an error here.
            built = build_model(settings) if settings.wire_api == "scripted" else BuildingModel(settings)
            if build_now and isinstance(built, BuildingModel):
                built.start()
        else:
            # llama.cpp's streamed answers carry no usage (the goal would be charged nothing) and a streamed
            # tool call in "auto" mode fails with HTTP 500: the local model never streams.
            built = build_model(settings.model_copy(update={"base_url": server.base_url, "stream": False}))
        try:
            yield built if server is None else server.watching(built)
        finally:
            await built.aclose()
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)
