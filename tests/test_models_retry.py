"""Retries: backoff with jitter, Retry-After honoured, limits that end in a paused goal."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest

from goalkeeper.errors import ContextLengthError, ProviderError, ProviderUnavailableError
from goalkeeper.models.base import Message, ModelRequest, ModelResponse
from goalkeeper.models.retry import (
    GatedModel,
    RateGate,
    RateGates,
    RetryPolicy,
    complete_with_retries,
    retry_after_from_headers,
)
from goalkeeper.models.scripted import ScriptedError, ScriptedModel, ScriptStep
from goalkeeper.spec.settings import ModelSettings

REQUEST = ModelRequest(messages=(Message("user", "Fix the tests."),))


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing_then(errors: list[ScriptedError], text: str = "answer") -> ScriptedModel:
    return ScriptedModel([*(ScriptStep(error=error) for error in errors), ScriptStep(text=text)])


def run(model: ScriptedModel, policy: RetryPolicy, time: FakeTime,
        retries: list[tuple[int, ProviderError, float]] | None = None) -> ModelResponse:
    def record(attempt: int, error: ProviderError, delay: float) -> None:
        if retries is not None:
            retries.append((attempt, error, delay))

    return asyncio.run(complete_with_retries(model, REQUEST, policy, record, time.sleep,
                                             clock=time.clock, rng=random.Random(7)))


def test_transient_errors_are_retried_with_growing_jittered_delays() -> None:
    time = FakeTime()
    retries: list[tuple[int, ProviderError, float]] = []
    model = failing_then([ScriptedError("transient", status_code=503)] * 4)
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=4.0)

    response = run(model, policy, time, retries)

    assert response.content == "answer"
    assert [attempt for attempt, _, _ in retries] == [1, 2, 3, 4]
    assert [delay for _, _, delay in retries] == time.sleeps
    ceilings = [1.0, 2.0, 4.0, 4.0]  # doubles, then stays at max_delay_s
    assert all(0 <= delay <= ceiling for delay, ceiling in zip(time.sleeps, ceilings, strict=True))
    assert len(set(time.sleeps)) == 4  # full jitter: not a fixed schedule


def test_retry_after_is_honoured_even_beyond_max_delay() -> None:
    time = FakeTime()
    model = failing_then([ScriptedError("transient", status_code=429, retry_after_s=45.0)])

    run(model, RetryPolicy(max_delay_s=30.0, max_total_s=120.0), time)

    assert time.sleeps == [45.0]


def test_gives_up_with_provider_unavailable_after_max_retries() -> None:
    time = FakeTime()
    model = failing_then([ScriptedError("transient", "overloaded", status_code=503)] * 10)

    with pytest.raises(ProviderUnavailableError) as raised:
        run(model, RetryPolicy(max_retries=3), time)

    assert len(time.sleeps) == 3
    assert len(model.requests) == 4
    assert "overloaded" in raised.value.message
    assert raised.value.hint is not None and "gk goal resume" in raised.value.hint
    assert raised.value.status_code == 503


def test_gives_up_when_the_next_wait_would_pass_the_total_cap() -> None:
    time = FakeTime()
    model = failing_then([ScriptedError("transient", status_code=429, retry_after_s=50.0)] * 10)

    with pytest.raises(ProviderUnavailableError, match="retry limit"):
        run(model, RetryPolicy(max_retries=10, max_total_s=120.0), time)

    assert time.sleeps == [50.0, 50.0]  # a third wait would reach 150 s


def test_non_transient_errors_are_raised_at_once() -> None:
    time = FakeTime()
    model = failing_then([ScriptedError("auth", "bad key", status_code=401)])

    with pytest.raises(ProviderError, match="bad key") as raised:
        run(model, RetryPolicy(), time)

    assert not isinstance(raised.value, ProviderUnavailableError)
    assert time.sleeps == []


def test_context_length_errors_go_straight_to_the_caller() -> None:
    time = FakeTime()
    model = failing_then([ScriptedError("context_length", "too long")])

    with pytest.raises(ContextLengthError):
        run(model, RetryPolicy(), time)

    assert time.sleeps == []
    assert len(model.requests) == 1


def test_zero_retries_means_one_attempt() -> None:
    time = FakeTime()
    model = failing_then([ScriptedError("transient")])

    with pytest.raises(ProviderUnavailableError):
        run(model, RetryPolicy(max_retries=0), time)

    assert len(model.requests) == 1


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"Retry-After": "7"}, 7.0),
    ({"retry-after": "1.5"}, 1.5),
    ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
    ({"Retry-After": "Wed, 01 Jan 2031 00:00:30 GMT"}, 30.0),
    ({"Retry-After": "Wed, 01 Jan 2031 00:00:00 GMT", "x": "y"}, 0.0),
    ({"Retry-After": "soon"}, None),
    ({}, None),
])
def test_retry_after_header_is_read_as_seconds_or_http_date(headers: dict[str, str],
                                                            seconds: float | None) -> None:
    now = datetime(2031, 1, 1, 0, 0, 0, tzinfo=UTC)

    assert retry_after_from_headers(headers, now=now) == seconds


# ---------------------------------------------------------------- the rate gate a batch shares


def test_a_rate_limited_failure_holds_the_gate_for_its_retry_after() -> None:
    now = [100.0]
    gate = RateGate(clock=lambda: now[0])
    limited = failing_then([ScriptedError("transient", status_code=429, retry_after_s=2.5)])
    with pytest.raises(ProviderError):
        asyncio.run(GatedModel(limited, gate).complete(REQUEST))
    assert gate.remaining_s() == 2.5
    now[0] += 1.0
    assert gate.remaining_s() == 1.5  # a sibling's next request waits the rest
    gate.hold(0.5)
    assert gate.remaining_s() == 1.5  # a shorter hold never cuts a longer one


def test_other_failures_do_not_hold_the_gate() -> None:
    gate = RateGate()
    broken = failing_then([ScriptedError("transient", status_code=503)])
    with pytest.raises(ProviderError):
        asyncio.run(GatedModel(broken, gate).complete(REQUEST))
    assert gate.remaining_s() == 0.0


def test_goals_share_a_gate_per_provider_and_base_url() -> None:
    gates = RateGates()
    one = ModelSettings(provider="openai", model="a")
    assert gates.gate_for(one) is gates.gate_for(ModelSettings(provider="openai", model="b"))
    assert gates.gate_for(one) is not gates.gate_for(ModelSettings(provider="custom", model="a",
                                                                    base_url="http://127.0.0.1:9/v1"))


def test_a_hold_that_moves_a_gate_is_told_for_the_other_worker_processes_and_one_passed_on_is_not_told_again() -> None:
    """A batch's worker process tells the others each hold its goals met (a deadline on the machine's monotonic
    clock); a hold it is told of moves its own gate without being told back."""
    told: list[tuple[tuple[str, str, str], float]] = []
    gates = RateGates(on_hold=lambda key, until: told.append((key, until)))
    settings = ModelSettings(provider="openai", model="a")
    gates.gate_for(settings).hold(5.0)
    assert [key for key, _ in told] == [("openai", settings.wire_api, "")]
    gates.gate_for(settings).hold(1.0)  # shorter: the deadline stays, nothing to tell
    assert len(told) == 1
    other = gates.gate_of(("custom", "chat", "http://127.0.0.1:9/v1"))
    assert other.hold_until(told[0][1] + 10) and other.remaining_s() > 10
    assert len(told) == 1
