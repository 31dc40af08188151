"""Server-sent events: the store's events in seq order, resumable with `Last-Event-ID` without gaps or repeats.

One poller task reads new events from the store file and fans them out to every open stream (the default),
or each stream polls on its own (`fanout="per_connection"`, kept for the benchmark's comparison). Gap-free
because SQLite has one writer at a time: once a reader sees seq N, every lower seq is committed or gone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anyio
from sse_starlette import ServerSentEvent

from goalkeeper.errors import StoreError
from goalkeeper.goals.service import open_store
from goalkeeper.server.build import event_out

if TYPE_CHECKING:
    from goalkeeper.store import EventRecord

Fanout = Literal["shared", "per_connection"]

PAGE = 500
"""Events read from the store per query (a backlog is sent in pages of this many)."""
BEHIND_LIMIT = 5_000
"""Events a stream may have waiting; a client further behind is caught up from the store instead."""
KEEP_ALIVE_S = 15.0
"""An idle stream sends a comment line this often, so proxies and browsers keep it open."""


class EventFeed:
    """Reads events after a seq from the store file, across threads or for one thread.

    A Store of its own (its own connection and lock): a poll never waits on the requests' Store.
    """

    def __init__(self, path: Path | str) -> None:
        self._store = open_store(path)

    def after(self, seq: int, thread_id: str | None = None, limit: int = PAGE) -> list[EventRecord]:
        """Events with seq > `seq`, oldest first; at most `limit`."""
        return self._store.events_after(seq, limit, thread_id)

    def last_seq(self) -> int:
        return self._store.last_seq()

    def close(self) -> None:
        self._store.close()


@dataclass(frozen=True)
class Outgoing:
    """One event as a stream sends it, encoded once however many streams send it."""

    seq: int
    thread_id: str
    chunk: bytes


def outgoing(record: EventRecord) -> Outgoing:
    return Outgoing(record.seq, record.thread_id, sse_event(record).encode())


class Subscriber:
    """One open stream's mailbox. `since`: the poller's position when it joined (older events come from
    the store); `behind`: it fell more than BEHIND_LIMIT events back and must catch up from the store;
    `stopped`: the server is shutting down."""

    def __init__(self, thread_id: str | None, since: int) -> None:
        self.thread_id, self.since = thread_id, since
        self.pending: deque[Outgoing] = deque()
        self.wake = asyncio.Event()
        self.behind = self.stopped = False

    def offer(self, item: Outgoing) -> None:
        if self.thread_id is not None and item.thread_id != self.thread_id:
            return
        if len(self.pending) >= BEHIND_LIMIT:
            self.pending.clear()
            self.behind = True
        else:
            self.pending.append(item)
        self.wake.set()

    async def stop_on(self, stop: anyio.Event) -> None:
        await stop.wait()
        self.stopped = True
        self.wake.set()


class Broadcaster:
    """One poller for every open stream. It polls only while someone listens; it starts with the first."""

    def __init__(self, feed: EventFeed, poll_s: float = 0.1, fanout: Fanout = "shared",
                 keep_alive_s: float = KEEP_ALIVE_S) -> None:
        self.feed, self.poll_s, self.fanout, self.keep_alive_s = feed, poll_s, fanout, keep_alive_s
        self.last = 0
        self.subscribers: set[Subscriber] = set()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def subscribe(self, thread_id: str | None) -> Subscriber:
        async with self._lock:  # never between a poll's read and its fan-out: `since` is exact
            if not self.subscribers:
                self.last = await asyncio.to_thread(self.feed.last_seq)
            subscriber = Subscriber(thread_id, self.last)
            self.subscribers.add(subscriber)
        if self.fanout == "shared" and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._poll())
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _poll(self) -> None:
        while self.subscribers:
            async with self._lock:
                try:
                    records = await asyncio.to_thread(self.feed.after, self.last)
                except StoreError:
                    records = []  # the file was busy (a checkpoint, say): the next poll reads the same events
                for item in map(outgoing, records):
                    for subscriber in self.subscribers:
                        subscriber.offer(item)
                    self.last = item.seq
            if len(records) < PAGE:
                await asyncio.sleep(self.poll_s)

    async def stream(self, thread_id: str | None, after: int | None,
                     stop: anyio.Event | None = None) -> AsyncIterator[bytes]:
        """The events of `thread_id` (every thread's when None) after seq `after`, then live ones, until `stop`
        (the server shutting down) is set. With `after` None a thread's stream starts at its first event and
        the all-threads stream at now."""
        subscriber = await self.subscribe(thread_id)
        sent = after if after is not None else (0 if thread_id is not None else subscriber.since)
        stopper = asyncio.create_task(subscriber.stop_on(stop)) if stop is not None else None
        try:
            if self.fanout == "per_connection":
                async for chunk in self._polled(thread_id, sent, subscriber):
                    yield chunk
                return
            async for record in self._backlog(thread_id, sent, subscriber.since):
                sent = record.seq
                yield outgoing(record).chunk
            while not subscriber.stopped:
                await subscriber.wake.wait()
                subscriber.wake.clear()
                if subscriber.behind:
                    subscriber.behind, upto = False, self.last
                    subscriber.pending.clear()
                    async for record in self._backlog(thread_id, sent, upto):
                        sent = record.seq
                        yield outgoing(record).chunk
                while subscriber.pending and not subscriber.stopped:
                    item = subscriber.pending.popleft()
                    if item.seq > sent:
                        sent = item.seq
                        yield item.chunk
        finally:
            self.unsubscribe(subscriber)
            if stopper is not None:
                stopper.cancel()

    async def _backlog(self, thread_id: str | None, after: int, upto: int) -> AsyncIterator[EventRecord]:
        """Events in (after, upto] from the store, page by page."""
        while after < upto:
            records = [r for r in await asyncio.to_thread(self.feed.after, after, thread_id) if r.seq <= upto]
            if not records:
                return
            for record in records:
                after = record.seq
                yield record

    async def _polled(self, thread_id: str | None, after: int, subscriber: Subscriber) -> AsyncIterator[bytes]:
        """Per-connection fan-out: this stream polls the store itself."""
        while not subscriber.stopped:
            records = await asyncio.to_thread(self.feed.after, after, thread_id)
            for record in records:
                after = record.seq
                yield outgoing(record).chunk
            if len(records) < PAGE:
                await asyncio.sleep(self.poll_s)


def sse_event(record: EventRecord) -> ServerSentEvent:
    """`id: <seq>`, `event: <kind>`, `data: <EventOut JSON>`."""
    return ServerSentEvent(data=event_out(record).model_dump_json(), event=record.event.kind, id=str(record.seq))
