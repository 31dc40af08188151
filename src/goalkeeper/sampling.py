"""One model request as the runner makes it: retries, a watch for pauses, and what provider failures mean.

A provider's failure never makes a goal unmet: retries that run out pause it, a prompt too long has its
oldest tool outputs cut and is retried once, and a refused request pauses it with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Protocol

from goalkeeper.config import GoalSettings, ModelSettings
from goalkeeper.context.history import Conversation
from goalkeeper.decide import Action, Decision, ModelResponded, Outcome, ProviderFailed
from goalkeeper.errors import ContextLengthError, ProviderError, ProviderUnavailableError
from goalkeeper.lifecycle import Reason
from goalkeeper.models.base import Model, ModelRequest, ModelResponse
from goalkeeper.models.pricing import Price, cost_usd
from goalkeeper.models.retry import RetryPolicy, complete_with_retries
from goalkeeper.store import NewEvent


class SamplingHost(Protocol):
    """What a request needs from the runner that makes it."""

    model: Model
    settings: GoalSettings
    conversation: Conversation
    unit_price: Price | None

    def steer(self, outcome: Outcome, extra: list[NewEvent] | None = None) -> Decision: ...
    def record(self, events: list[NewEvent]) -> None: ...
    def elapsed(self) -> float: ...
    def poll_controls(self) -> Action | None: ...


async def sample(host: SamplingHost, request: ModelRequest) -> ModelResponse | Action:
    """The request, or the action its failure leads to. Non-transient failures pause, then re-raise."""
    try:
        try:
            return await watched(host, request)
        except ContextLengthError:
            if not _trim_context(host):
                raise
            return await watched(host, replace(request, messages=host.conversation.messages()))
    except ContextLengthError as error:
        return _failed(host, error, Reason.CONTEXT_TOO_LONG)
    except ProviderUnavailableError as error:
        return _failed(host, error, Reason.PROVIDER_UNAVAILABLE)
    except ProviderError as error:
        _failed(host, error, Reason.PROVIDER_ERROR)
        raise  # auth, bad request, unknown model: the person must fix something; the CLI says what


async def watched(host: SamplingHost, request: ModelRequest) -> ModelResponse | Action:
    """The request with retries, watched for a pause or clear arriving meanwhile (nothing has run yet)."""
    model = host.settings.model or ModelSettings()
    policy = RetryPolicy(max_retries=model.max_retries, max_total_s=model.retry_max_total_s)

    def on_retry(attempt: int, error: ProviderError, delay: float) -> None:
        host.record([NewEvent("provider_retry", {"attempt": attempt, "error": error.message,
                                                  "status_code": error.status_code, "delay_s": round(delay, 3)},
                              "harness")])
        charge_failed(host, error)  # usage a failed attempt reported is still charged

    task = asyncio.create_task(complete_with_retries(host.model, request, policy, on_retry))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=host.settings.run.control_poll_s)
            if done:
                return task.result()
            if (control := host.poll_controls()) is not None:
                return control
    finally:
        # A control stops the request, and so does our own cancellation (a UI closing): the request must
        # not live on and write to a store that is being closed.
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _failed(host: SamplingHost, error: ProviderError, reason: Reason) -> Action:
    """Pause the goal for a provider failure, charging any usage the provider reported first."""
    charge_failed(host, error)
    return host.steer(ProviderFailed(error.message, reason)).action


def charge_failed(host: SamplingHost, error: ProviderError) -> None:
    """Charge the usage a failed attempt reported (a stream cut after its usage chunk, say)."""
    if error.usage is not None:
        usage = error.usage
        host.steer(ModelResponded(usage.charged_tokens, usage.cached_input_tokens,
                                  cost_usd(host.unit_price, usage), host.elapsed()),
                   [NewEvent("usage_charged", {"why": "reported by a failed attempt",
                                               "charged_tokens": usage.charged_tokens}, "harness")])


def _trim_context(host: SamplingHost) -> bool:
    """Compaction's stand-in: cut the oldest half of the long tool outputs (recorded, so a restart
    rebuilds the same conversation). False when there is nothing left to cut."""
    plan = host.conversation.trim_plan()
    if plan is None:
        return False
    host.record([NewEvent("context_trimmed", plan, "harness")])
    return True
