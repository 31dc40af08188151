"""One model request as the runner makes it: retries, a watch for pauses, and what provider failures mean.

A provider's failure never makes a goal unmet: retries that run out pause it, a prompt too long is compacted
(or, right after a compaction, has its oldest tool outputs cut) and is retried, and a refused request pauses
it with the reason.

Each request is priced before it is sent as if nothing were cached (`request_due`), and a request still
running when the goal's time limit comes is cut and charged that estimate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from goalkeeper.core.lifecycle import Reason
from goalkeeper.core.outcomes import Action, ModelResponded, Proceed, ProviderFailed, RequestDue
from goalkeeper.errors import ContextLengthError, ProviderError, ProviderUnavailableError
from goalkeeper.events import ProviderRetryEvent, UsageChargedEvent
from goalkeeper.models.base import ModelRequest, ModelResponse, ToolSpec, Usage
from goalkeeper.models.pricing import cost_usd
from goalkeeper.models.retry import RetryPolicy, complete_with_retries
from goalkeeper.run.goal_run import GoalRun
from goalkeeper.spec.settings import ModelSettings


def request_due(run: GoalRun, specs: Sequence[ToolSpec]) -> RequestDue:
    """The next request, priced pessimistically: every input token uncached, at the uncached price (a
    different tool list, a compaction or an expired cache all miss the cache)."""
    tokens = run.conversation.request_tokens(specs)
    price = run.unit_price
    input_usd = tokens * price.input / 1_000_000 if price is not None else 0.0
    output_usd = price.output / 1_000_000 if price is not None else 0.0
    return RequestDue(tokens, run.elapsed(), input_usd, output_usd)


Compact = Callable[[], Awaitable[Action | None]]
"""Compacts the conversation now; an action means the turn must stop (compaction.compact)."""


async def sample(run: GoalRun, request: ModelRequest, deadline_s: float | None = None,
                 compact: Compact | None = None) -> ModelResponse | Action:
    """The request, or the action its failure leads to (Proceed: it was cut at `deadline_s`, the goal's
    active time limit, and charged its estimate; or it was too long and `compact` ran, so the caller builds
    it again). Non-transient failures pause, then re-raise."""
    run.before("model")
    try:
        return await _fitted(run, request, deadline_s, compact)
    except ContextLengthError as error:
        return _failed(run, error, Reason.CONTEXT_TOO_LONG)
    except ProviderUnavailableError as error:
        return _failed(run, error, Reason.PROVIDER_UNAVAILABLE)
    except ProviderError as error:
        _failed(run, error, Reason.PROVIDER_ERROR)
        raise  # auth, bad request, unknown model: the person must fix something; the CLI says what


async def _fitted(run: GoalRun, request: ModelRequest, deadline_s: float | None,
                  compact: Compact | None) -> ModelResponse | Action:
    """The request; one the provider finds too long is compacted first (unless nothing was added since the
    last compaction, which could not make it smaller), and only then has its oldest tool outputs cut."""
    try:
        return await watched(run, request, deadline_s)
    except ContextLengthError as error:
        too_long = error
    if compact is not None and run.conversation.responses_since_compaction > 0:
        charge_failed(run, too_long)
        # Proceed: the caller checks the budget again and builds the request from the compacted history.
        stopped = await compact()
        return Proceed() if stopped is None else stopped
    if not _trim_context(run):
        raise too_long  # sample pauses the goal, charging what the provider reported
    charge_failed(run, too_long)
    return await watched(run, replace(request, messages=run.conversation.messages()), deadline_s)


async def watched(run: GoalRun, request: ModelRequest, deadline_s: float | None = None,
                  ) -> ModelResponse | Action:
    """The request with retries, watched for a pause or clear arriving meanwhile (nothing has run yet) and
    cut when the goal's active time reaches `deadline_s`."""
    model = run.settings.model or ModelSettings()
    policy = RetryPolicy(max_retries=model.max_retries, max_total_s=model.retry_max_total_s)

    def on_retry(attempt: int, error: ProviderError, delay: float) -> None:
        run.record([ProviderRetryEvent(attempt=attempt, error=error.message, status_code=error.status_code,
                                        delay_s=round(delay, 3))])
        charge_failed(run, error)  # usage a failed attempt reported is still charged

    run.flush()  # what the step did is in the store before the request that reads it is sent
    task = asyncio.create_task(complete_with_retries(run.model, request, policy, on_retry))
    try:
        while True:
            wait = run.settings.run.control_poll_s
            if deadline_s is not None:
                wait = max(0.0, min(wait, deadline_s - run.elapsed()))
            done, _ = await asyncio.wait({task}, timeout=wait)
            if done:
                return task.result()
            if (control := run.poll_controls()) is not None:
                return control
            if deadline_s is not None and run.elapsed() >= deadline_s:
                _charge_cut(run, request)
                return Proceed()
    finally:
        # A control stops the request, and so does our own cancellation (a UI closing): the request must
        # not live on and write to a store that is being closed.
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _failed(run: GoalRun, error: ProviderError, reason: Reason) -> Action:
    """Pause the goal for a provider failure, charging any usage the provider reported first."""
    charge_failed(run, error)
    return run.steer(ProviderFailed(error.message, reason)).action


def charge_failed(run: GoalRun, error: ProviderError) -> None:
    """Charge the usage a failed attempt reported (a stream cut after its usage chunk, say)."""
    usage = error.usage
    if isinstance(usage, Usage):
        run.steer(ModelResponded(usage.charged_tokens, usage.cached_input_tokens,
                                 cost_usd(run.unit_price, usage), run.elapsed()),
                  [UsageChargedEvent(why="reported by a failed attempt", charged_tokens=usage.charged_tokens)])


def _charge_cut(run: GoalRun, request: ModelRequest) -> None:
    """A request cut at the time limit may still be billed: charge its pessimistic estimate."""
    due = request_due(run, request.tools)
    output = request.max_output_tokens or 0
    usd = due.input_usd + output * due.output_usd_per_token
    run.steer(ModelResponded(due.estimated_input_tokens + output, 0, usd, run.elapsed()),
               [UsageChargedEvent(why="the request was cut at the time limit; its estimate is charged",
                                  charged_tokens=due.estimated_input_tokens + output, usd=usd)])


def _trim_context(run: GoalRun) -> bool:
    """When compacting cannot help: cut the oldest half of the long tool outputs (recorded, so a restart
    rebuilds the same conversation). False when there is nothing left to cut."""
    plan = run.conversation.trim_plan()
    if plan is None:
        return False
    run.record([plan])
    return True
