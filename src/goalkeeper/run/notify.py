"""Notifications: webhooks told when a goal run reaches a status that a `[[notify]]` table in config.toml names.

Deliveries run on background threads, with retries and exponential backoff, and every attempt is recorded as a
`notify_attempt` event. They never block or break the runner: at the end of a run `Notifier.close` waits at
most `notify_wait_s` for what is still in flight, then gives up on it (and records that too).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import goalkeeper
from goalkeeper.config.load import load_config
from goalkeeper.config.schema import NotifyTarget
from goalkeeper.context.replay import replay
from goalkeeper.core.lifecycle import REASONS, status_label
from goalkeeper.errors import StoreError
from goalkeeper.events import BaselineEvent, EvidenceEvent, NotifyAttemptEvent, StatusChangedEvent
from goalkeeper.store import EventRecord, Store

SIGNATURE_HEADER = "X-Goalkeeper-Signature"
TIMESTAMP_HEADER = "X-Goalkeeper-Timestamp"
BACKOFF_S = 0.5
"""The wait before the second attempt; it doubles before each later one (0.5 s, 1 s, 2 s, 4 s ...)."""
SIGNATURE_TOLERANCE_S = 300
"""How old a timestamp `verify_signature` accepts: a replayed request older than this is refused."""

EventHook = Callable[[EventRecord], None]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`: the timestamp is signed with the body, so an old
    request cannot be replayed with a fresh timestamp."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str, *, now: float | None = None,
                     tolerance_s: float = SIGNATURE_TOLERANCE_S) -> bool:
    """What a receiver checks: the signature matches (in constant time) and the timestamp is recent."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


def shown_url(url: str) -> str:
    """The URL as events show it: no credentials, no query, and the path cut after its first segment, since
    webhook URLs (Slack's, for one) carry their secret in the path."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    segments = [s for s in parts.path.split("/") if s]
    path = "/" + segments[0] + ("/…" if len(segments) > 1 else "") if segments else ""
    return f"{parts.scheme}://{netloc}{path}"


@dataclass(frozen=True)
class Notice:
    """What a notification says about a goal that reached a status."""

    goal_id: str
    thread_id: str
    objective: str
    status: str
    previous: str | None
    reason: str
    actor: str | None
    seq: int
    """The seq of the status_changed event this is about."""
    verified: bool
    checks_passing: int
    checks_total: int
    evidence: list[dict[str, Any]] = field(default_factory=list)
    report_url: str | None = None
    """The goal's page on `gk serve`'s dashboard when `server_url` is configured; None otherwise (see
    report_command)."""

    @property
    def report_command(self) -> str:
        return f"gk report --thread {self.thread_id}"

    @property
    def reason_text(self) -> str:
        return REASONS.get(self.reason, self.reason)

    @property
    def label(self) -> str:
        """The status as people read it: `achieved (unverified)` when no check proved it."""
        return status_label(self.status, self.verified)

    def as_json(self) -> dict[str, Any]:
        """The `format = "json"` payload."""
        return {"event": "goal.status_changed", "goal_id": self.goal_id, "thread_id": self.thread_id,
                "objective": self.objective, "status": self.status, "label": self.label,
                "previous_status": self.previous,
                "reason": self.reason, "reason_text": self.reason_text, "actor": self.actor, "seq": self.seq,
                "evidence": {"verified": self.verified, "checks_passing": self.checks_passing,
                             "checks_total": self.checks_total, "items": self.evidence},
                "report_url": self.report_url, "report_command": self.report_command,
                "goalkeeper_version": goalkeeper.__version__}

    def as_slack(self) -> dict[str, Any]:
        """The `format = "slack"` payload: `text` (the notification's fallback) plus `blocks`."""
        checks = f"{self.checks_passing}/{self.checks_total} checks pass" if self.verified else "unverified (no checks)"
        first = self.objective.strip().splitlines()[0][:200] if self.objective.strip() else self.goal_id
        # The objective and check names are the user's (or the model's) text: in mrkdwn `<!channel>` pings a
        # whole channel and `<url|x>` is a link, so Slack's three control characters are escaped.
        objective = slack_escape(first)
        text = f"Goal {self.label}: {objective} ({self.reason_text}; {checks})"
        items = "\n".join(f"{'✅' if e['passed'] else '❌'} `{slack_escape(e['name'])}`"
                          + (f" = {e['metric']:g}" if e.get("metric") is not None else "")
                          for e in self.evidence) or "(no checks have run)"
        report = f"<{self.report_url}|Report>" if self.report_url else f"Report: `{self.report_command}`"
        return {"text": text, "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": f"Goal {self.label}"[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{objective}*\n{self.reason_text}"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*Checks*\n{checks}"},
                                           {"type": "mrkdwn", "text": f"*Goal*\n`{self.goal_id}`"}]},
            {"type": "section", "text": {"type": "mrkdwn", "text": items[:2900]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": report}]},
        ]}


def slack_escape(text: str) -> str:
    """`text` as Slack shows it literally: `&`, `<` and `>` are its only control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def notice_of(store: Store, record: EventRecord, server_url: str | None) -> Notice:
    """The notice for a status_changed event, with the goal's newest evidence (replayed from its events)."""
    assert record.goal_id is not None
    goal = store.get_goal_by_id(record.goal_id)
    newest = replay(store.events(goal.thread_id, goal_id=goal.goal_id, kinds=[BaselineEvent, EvidenceEvent])).evidence
    # The dashboard's goal page (it shows the report): a browser can open it, while the API's report route
    # needs a bearer header that a link cannot carry.
    url = f"{server_url.rstrip('/')}/#/threads/{record.thread_id}" if server_url else None
    changed = record.event
    assert isinstance(changed, StatusChangedEvent), "only a status change is notified"
    evidence = [{"name": e.name, "kind": e.kind, "passed": e.passed, "exit_code": e.exit_code, "metric": e.metric,
                 "target": e.target} for e in newest]
    return Notice(goal_id=record.goal_id, thread_id=record.thread_id, objective=goal.contract.outcome,
                  status=changed.to, previous=changed.from_status, reason=changed.reason, actor=changed.actor,
                  seq=record.seq,
                  verified=goal.contract.verified, checks_passing=sum(e.passed for e in newest if e.is_check),
                  checks_total=len(goal.contract.checks), evidence=evidence, report_url=url)


def request_of(target: NotifyTarget, notice: Notice, now: float | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one delivery (signed when the target has a secret)."""
    payload = notice.as_slack() if target.format == "slack" else notice.as_json()
    body = json.dumps(payload, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", "User-Agent": f"goalkeeper/{goalkeeper.__version__}"}
    if target.secret:
        timestamp = str(int(time.time() if now is None else now))
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = sign(target.secret, timestamp, body)
    return body, headers


class Notifier:
    """Watches a run's committed events and delivers notifications in the background.

    It has its own store connection (deliveries write `notify_attempt` events from their threads).
    """

    def __init__(self, store_path: Path | str, targets: tuple[NotifyTarget, ...], server_url: str | None = None,
                 wait_s: float = 10.0, backoff_s: float = BACKOFF_S) -> None:
        self.store_path, self.targets, self.server_url = store_path, targets, server_url
        self.wait_s, self.backoff_s = wait_s, backoff_s
        self._store: Store | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._deliveries: list[tuple[threading.Thread, NotifyTarget, EventRecord]] = []

    def observe(self, record: EventRecord) -> None:
        """Called with every committed event; a status change some target wants starts its deliveries."""
        if not isinstance(record.event, StatusChangedEvent) or record.goal_id is None:
            return
        for target in self.targets:
            if record.event.to in target.events:
                thread = threading.Thread(target=self._deliver, args=(target, record), daemon=True,
                                          name=f"notify-{record.seq}")
                with self._lock:
                    self._deliveries.append((thread, target, record))
                thread.start()

    def close(self) -> None:
        """Wait up to `wait_s` for deliveries in flight; record the ones still going as abandoned."""
        deadline = time.monotonic() + self.wait_s
        for thread, _, _ in list(self._deliveries):
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for thread, target, record in self._deliveries:
                if thread.is_alive():
                    status = record.event.to if isinstance(record.event, StatusChangedEvent) else ""
                    self._write(record, NotifyAttemptEvent(
                        event_seq=record.seq, url=shown_url(target.url), status=status, attempt=None, delivered=False,
                        status_code=None, error=f"abandoned: the run ended and {self.wait_s:g}s passed"))
            self._closed = True
            if self._store is not None:
                self._store.close()

    def _deliver(self, target: NotifyTarget, record: EventRecord) -> None:
        """Up to `max_attempts` POSTs, backing off between them; stops at the first 2xx."""
        with self._lock:
            if self._closed:
                return
            notice = notice_of(self._open(), record, self.server_url)
        import httpx  # only a delivery needs it: every run imports this module, few have [[notify]] targets

        with httpx.Client(timeout=target.timeout_s) as client:
            for attempt in range(1, target.max_attempts + 1):
                body, headers = request_of(target, notice)
                started = time.monotonic()
                code: int | None = None
                error: str | None = None
                try:
                    code = client.post(target.url, content=body, headers=headers).status_code
                except httpx.HTTPError as failure:
                    error = f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
                delivered = code is not None and 200 <= code < 300
                with self._lock:
                    if self._closed:
                        return
                    self._write(record, NotifyAttemptEvent(
                        event_seq=record.seq, url=shown_url(target.url), status=notice.status, attempt=attempt,
                        max_attempts=target.max_attempts, format=target.format, delivered=delivered,
                        status_code=code, error=error, duration_s=round(time.monotonic() - started, 3)))
                if delivered:
                    return
                if attempt < target.max_attempts:
                    time.sleep(self.backoff_s * 2 ** (attempt - 1))

    def _open(self) -> Store:
        if self._store is None:
            self._store = Store(self.store_path)
        return self._store

    def _write(self, record: EventRecord, attempt: NotifyAttemptEvent) -> None:
        """One `notify_attempt` event in the goal's thread (called with the lock held)."""
        # A store locked past its timeout loses this record; that must not take the delivery (or the run) down.
        with contextlib.suppress(StoreError):
            self._open().append_events(record.thread_id, [attempt], goal_id=record.goal_id)


@asynccontextmanager
async def notifying(store: Store, workspace: Path, on_event: EventHook | None,
                    commit: str = "HEAD") -> AsyncIterator[EventHook | None]:
    """`on_event` with the run's notifications attached (when config.toml has `[[notify]]`, the project's as
    committed at `commit`); at the end, wait a bounded time for deliveries in flight, off the event loop."""
    config = load_config(workspace, commit=commit)
    if not config.notify:
        yield on_event
        return
    notifier = Notifier(store.location, config.notify, config.server_url, config.notify_wait_s)

    def hook(record: EventRecord) -> None:
        notifier.observe(record)
        if on_event is not None:
            on_event(record)

    try:
        yield hook
    finally:
        await asyncio.to_thread(notifier.close)
