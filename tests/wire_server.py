"""What the local wire-format test servers share: a thread, a loop, a free port, a script of replies, records.

Each wire format (chat_server.py, responses_server.py, anthropic_server.py) subclasses `WireServer` and keeps
only its routes and its encoders. The replies every format gives the same way (an error status, malformed
JSON) are answered here, and so are the ways a stream is written, cut short or dropped.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Self, TypeAlias, TypeVar

from aiohttp import web


class ErrorStatus(ABC):
    """An HTTP error status with a body shaped as the format's API shapes it; each format's `Failure` is one."""

    status: int
    headers: dict[str, str]

    @abstractmethod
    def wire(self) -> dict[str, Any]:
        """The error body as the format's API sends it."""


@dataclass(frozen=True)
class MalformedJSON:
    """HTTP 200 whose body (or first stream event) is not valid JSON."""

    body: str = '{"id": "broken", '


@dataclass(frozen=True)
class Exchange:
    """One request as the server received it."""

    body: dict[str, Any]
    number: int
    """The request's position among all the server received, from 0."""

    @property
    def stream(self) -> bool:
        """Whether the request asked for server-sent events."""
        return bool(self.body.get("stream"))


Own = TypeVar("Own")
"""The replies a format renders itself (its answers, its cut answers, its failures inside a 200)."""
Scripted: TypeAlias = Own | ErrorStatus | MalformedJSON


class WireServer(ABC, Generic[Own]):
    """Serves one wire format on 127.0.0.1 at a free port, from its own event loop in its own thread.

    Replies come from `responses` in order; once it is empty the last reply repeats. A `reply_fn`, when
    given, answers every request instead. Every request body is kept parsed in `requests`, and its headers
    (names lowercased) in `request_headers`; a format that needs more extends `record`.
    """

    kind: ClassVar[str]
    """Names the thread and the startup error: "chat" gives thread chat-server-<port>."""
    path: ClassVar[str]
    """The route the format's requests are POSTed to."""
    first_event: ClassVar[str | None] = None
    """The `event:` name a stream opens with, which a MalformedJSON reply breaks; None: events have no name."""
    stream_end: ClassVar[bytes] = b""
    """What a stream sends after its last event when it ends cleanly."""

    def __init__(self, responses: Iterable[Scripted[Own]] = (), *,
                 reply_fn: Callable[[dict[str, Any]], Scripted[Own]] | None = None,
                 model: str = "test-model") -> None:
        self.model = model
        self.reply_fn = reply_fn
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self._queue: deque[Scripted[Own]] = deque(responses)
        self._last: Scripted[Own] = self.default_reply()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]

    @property
    def base_url(self) -> str:
        """The API root a client is pointed at."""
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, *replies: Scripted[Own]) -> None:
        """Queue more replies (thread-safe)."""
        with self._lock:
            self._queue.extend(replies)

    @abstractmethod
    def default_reply(self) -> Own:
        """What every request gets while nothing has been scripted."""

    @abstractmethod
    async def answer(self, request: web.Request, exchange: Exchange, reply: Own) -> web.StreamResponse:
        """Answer one request with a reply this format renders itself."""

    def add_routes(self, app: web.Application) -> None:
        """Route POSTs to `path` to `receive`; a format with other routes overrides this."""
        app.router.add_post(self.path, self.receive)

    def record(self, request: web.Request, raw: bytes, body: dict[str, Any]) -> None:
        """Keep what a test asserts on (called under the lock, before the reply is chosen)."""
        self.requests.append(body)
        self.request_headers.append({key.lower(): value for key, value in request.headers.items()})

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}-server-{self.port}", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._startup_error is not None:
            raise RuntimeError(f"{self.kind} server failed to start") from self._startup_error
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # surfaced to __enter__; a thread has nowhere else to raise
            self._startup_error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.add_routes(app)
        # Cancel handlers whose client went away, so slow replies do not hold up shutdown.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, self._socket).start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def _next_reply(self, request: web.Request, raw: bytes) -> tuple[Exchange, Scripted[Own]]:
        body = json.loads(raw)
        with self._lock:
            self.record(request, raw, body)
            exchange = Exchange(body, len(self.requests) - 1)
            if self.reply_fn is not None:
                return exchange, self.reply_fn(body)
            if self._queue:
                self._last = self._queue.popleft()
            return exchange, self._last

    async def receive(self, request: web.Request) -> web.StreamResponse:
        """Handle one request: record it, then answer it with the next scripted reply."""
        exchange, reply = self._next_reply(request, await request.read())
        if isinstance(reply, ErrorStatus):
            return web.json_response(reply.wire(), status=reply.status, headers=reply.headers)
        if isinstance(reply, MalformedJSON):
            if not exchange.stream:
                return web.Response(text=reply.body, content_type="application/json")
            return await self.send_stream(request, [sse(reply.body, self.first_event)])
        return await self.answer(request, exchange, reply)

    async def send_stream(self, request: web.Request, frames: Sequence[bytes], *, abort: bool = False,
                          stall_s: float = 0.0) -> web.StreamResponse:
        """Send SSE frames, then `stream_end`. `abort`: send the first half only, then drop the connection.
        `stall_s`: pause this long after the first frame, as a stalled upstream does mid-response."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        if abort:
            frames = frames[: max(1, len(frames) // 2)]
        for position, frame in enumerate(frames):
            await response.write(frame)
            if position == 0 and stall_s > 0:
                await asyncio.sleep(stall_s)
        if abort:
            return _drop_connection(request, response)
        if self.stream_end:
            await response.write(self.stream_end)
        await response.write_eof()
        return response

    async def send_truncated(self, request: web.Request, exchange: Exchange, whole: dict[str, Any],
                             frames: Sequence[bytes], *, abort: bool) -> web.StreamResponse:
        """A reply cut short. Whole: the body promised in Content-Length, half of it sent, the connection
        dropped. Streamed: `frames` (the stream without what a cut stream never reaches), dropped half-way
        when `abort`, else ended cleanly."""
        if exchange.stream:
            return await self.send_stream(request, frames, abort=abort)
        data = json.dumps(whole).encode()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        return _drop_connection(request, response)


def _drop_connection(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Drop the TCP connection as a crashed server or a proxy would."""
    if request.transport is not None:
        request.transport.abort()
    return response


def sse(data: str, event: str | None = None) -> bytes:
    """One server-sent event: an optional `event:` line, then its data."""
    named = f"event: {event}\n" if event is not None else ""
    return f"{named}data: {data}\n\n".encode()


def sse_events(events: Iterable[dict[str, Any]]) -> list[bytes]:
    """Events that carry their name in `type`, as Responses and Messages streams do, framed as SSE."""
    return [sse(json.dumps(event), event["type"]) for event in events]


def pieces(text: str, count: int = 3) -> list[str]:
    """Split text into up to `count` pieces, as a stream delivers it."""
    if not text:
        return []
    size = -(-len(text) // count)
    return [text[start:start + size] for start in range(0, len(text), size)]


def estimate_tokens(prompt: object, outputs: Iterable[str]) -> tuple[int, int]:
    """Input and output token counts at about four characters a token, as an "estimate" usage reports them."""
    return len(json.dumps(prompt)) // 4, sum(len(text) for text in outputs) // 4 + 1
