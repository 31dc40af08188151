"""Retrying transient provider failures: exponential backoff with full jitter, Retry-After honoured; and the
rate gate several goals share, so a 429 one of them gets holds every goal that uses the same provider.

Only transient errors are retried. Every other provider error propagates at once, and so does
`ContextLengthError`, which the caller answers by compacting, not by waiting. When retries run out the
caller gets `ProviderUnavailableError`, which pauses the goal; it never makes the goal unmet.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

from goalkeeper.errors import ProviderError, ProviderUnavailableError
from goalkeeper.models.base import Model, ModelRequest, ModelResponse
from goalkeeper.spec.settings import ModelSettings

_RANDOM = random.Random()


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying a provider that fails transiently."""

    max_retries: int = 5
    """Retries after the first attempt; 0 means try once."""
    base_delay_s: float = 0.5
    """The backoff ceiling for the first retry; it doubles with each retry after that."""
    max_delay_s: float = 30.0
    """The highest backoff ceiling. A server's Retry-After may ask for longer and is honoured."""
    max_total_s: float = 120.0
    """Cap on the total time spent on the request, retries and waits included."""


async def complete_with_retries(
    model: Model,
    request: ModelRequest,
    policy: RetryPolicy,
    on_retry: Callable[[int, ProviderError, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    *,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> ModelResponse:
    """Ask `model` until it answers, a non-transient error occurs, or the policy's limits run out.

    `on_retry(attempt, error, delay_s)` is called before each wait; `attempt` counts from 1.
    `clock` and `rng` exist so tests can pin time and jitter.
    """
    started = clock()
    attempt = 0
    while True:
        try:
            return await model.complete(request)
        except ProviderError as error:
            # ProviderUnavailableError is transient, but it means some inner caller already retried.
            if not error.transient or isinstance(error, ProviderUnavailableError):
                raise
            attempt += 1
            delay = retry_delay(policy, attempt, error, rng or _RANDOM)
            if attempt > policy.max_retries:
                raise _unavailable(error, f"after {attempt} attempts") from error
            if clock() - started + delay > policy.max_total_s:
                reason = (f"after {attempt} attempts; waiting {delay:.1f}s more would pass the "
                          f"{policy.max_total_s:g}s retry limit")
                raise _unavailable(error, reason) from error
            if on_retry is not None:
                on_retry(attempt, error, delay)
            await sleep(delay)


def retry_delay(policy: RetryPolicy, attempt: int, error: ProviderError, rng: random.Random) -> float:
    """Seconds to wait before retry number `attempt` (from 1).

    The server's Retry-After wins when it gave one: it knows when it will have capacity again, and
    retrying sooner only earns another 429. Otherwise full jitter: uniform in [0, ceiling], which
    spreads out clients that failed together.
    """
    if error.retry_after_s is not None:
        return max(0.0, error.retry_after_s)
    ceiling = min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempt - 1))
    return rng.uniform(0.0, ceiling)


def retry_after_from_headers(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds a response's `retry-after-ms` or `Retry-After` header (seconds or HTTP date) asks for.

    None when there is no such header or it cannot be read.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    milliseconds = _seconds(lowered.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000
    value = lowered.get("retry-after")
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _seconds(value: str | None) -> float | None:
    """A non-negative finite number of seconds, or None."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _unavailable(error: ProviderError, reason: str) -> ProviderUnavailableError:
    """The error that pauses the goal, naming the last failure."""
    return ProviderUnavailableError(
        f"the model provider is still failing {reason}; last error: {error.message}",
        hint="the goal is paused; run `gk goal resume` to continue once the provider answers again",
        status_code=error.status_code,
        retry_after_s=error.retry_after_s,
        usage=error.usage,
    )


class RateGate:
    """One provider's rate limit as every goal of a batch that uses it sees it: a 429 (or a Retry-After) that
    one goal gets holds the next request of every goal until the wait it asked for is over.

    Goals run in threads of their own, each with its own event loop: the gate is a deadline under a lock, and
    each waiter sleeps on its own loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 on_hold: Callable[[float], None] | None = None) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._until = 0.0
        self._on_hold = on_hold
        """Told the new deadline (on `clock`) of each hold that moved it: a batch's worker processes pass it on."""

    def hold(self, seconds: float) -> None:
        """No request through this gate starts for `seconds` from now (a longer hold already set stays)."""
        until = self._clock() + max(0.0, seconds)
        if self.hold_until(until) and self._on_hold is not None:
            self._on_hold(until)

    def hold_until(self, until: float) -> bool:
        """No request starts before `until` (on the gate's clock); whether that moved the deadline."""
        with self._lock:
            moved = until > self._until
            self._until = max(self._until, until)
        return moved

    def remaining_s(self) -> float:
        """Seconds until requests may go again (0: now)."""
        with self._lock:
            return max(0.0, self._until - self._clock())

    async def wait(self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """Return once the gate is open (a hold set meanwhile is waited out too)."""
        while (remaining := self.remaining_s()) > 0:
            await sleep(remaining)


class Gate(Protocol):
    """What a goal's requests wait on: a provider's shared RateGate, or a batch's wrapper around one."""

    async def wait(self) -> None: ...

    def hold(self, seconds: float) -> None: ...


class RateGates:
    """The gates of one batch, one per provider: the same wire format and base URL is the same provider."""

    def __init__(self, on_hold: Callable[[GateKey, float], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._gates: dict[GateKey, RateGate] = {}
        self._on_hold = on_hold
        """Told each hold a goal's gate took (the provider, the deadline on the monotonic clock, which every
        process of the machine shares): a batch's worker process passes it to the others."""

    def gate_for(self, settings: ModelSettings) -> RateGate:
        """The gate every goal talking to `settings`' provider shares."""
        return self.gate_of((settings.provider, settings.wire_api, settings.base_url or ""))

    def gate_of(self, key: GateKey) -> RateGate:
        """The gate of the provider `key` names."""
        on_hold = self._on_hold
        with self._lock:
            if key not in self._gates:
                self._gates[key] = RateGate(on_hold=(lambda until: on_hold(key, until)) if on_hold else None)
            return self._gates[key]


GateKey = tuple[str, str, str]
"""A provider as rate gates tell them apart: its name, its wire format and its base URL."""


class GatedModel:
    """`model` behind `gate`: each request first waits for the gate, and a rate-limited failure (429, or any
    transient failure with a Retry-After) holds the gate for the wait it asks for, so the goal's siblings wait
    with it. The goal's own retries (complete_with_retries) are unchanged."""

    def __init__(self, model: Model, gate: Gate) -> None:
        self.model = model
        self.gate = gate
        self.name = model.name

    async def complete(self, request: ModelRequest) -> ModelResponse:
        await self.gate.wait()
        try:
            return await self.model.complete(request)
        except ProviderError as error:
            if error.transient and (error.status_code == 429 or error.retry_after_s is not None):
                self.gate.hold(rate_limit_wait(error))
            raise

    async def aclose(self) -> None:
        await self.model.aclose()


def rate_limit_wait(error: ProviderError) -> float:
    """How long a rate-limited failure holds the gate: its Retry-After, else the first backoff's ceiling."""
    return error.retry_after_s if error.retry_after_s is not None else RetryPolicy().base_delay_s
