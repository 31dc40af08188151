"""Restate before start: before a goal first runs, the model says in its own words what the goal is.

One request with the runner's own prefix (the system prompt, then the contract) and a question after it;
no tool runs. The answer is stored as a `restated` event, which the goal's context never reads, and its
usage is charged to the goal through the decision core under the goal's version guard (no runner holds
the goal yet). Provider errors propagate for the caller to show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from goalkeeper.context.prompts import render
from goalkeeper.context.render import contract_block
from goalkeeper.core.decide import decide
from goalkeeper.core.outcomes import ModelResponded
from goalkeeper.errors import StaleGoalError
from goalkeeper.events import RestatedEvent
from goalkeeper.events import Usage as UsageRecord
from goalkeeper.models.base import Message, Model, ModelRequest, Usage
from goalkeeper.models.pricing import cost_usd, price_of
from goalkeeper.models.retry import RetryPolicy, complete_with_retries
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import ModelSettings
from goalkeeper.store import Goal, Store

#: Times the charge is retried when another process changed the goal's version meanwhile.
CHARGE_ATTEMPTS = 3


@dataclass(frozen=True)
class Restatement:
    """The model's restatement of a goal, and what it cost."""

    text: str
    usage: Usage
    model: str


def restate_messages(contract: Contract) -> tuple[Message, ...]:
    """The request: the runner's prefix, byte for byte, then the restate question."""
    return (Message("system", render("system")), Message("user", contract_block(contract)),
            Message("user", render("restate")))


async def restate_goal(store: Store, goal: Goal, model: Model, *,
                       on_text: Callable[[str], None] | None = None) -> Restatement:
    """Ask `model` to restate `goal`, store the answer as a `restated` event and charge the goal for it.

    `on_text` receives the text as it streams. Retries transient failures as the goal's settings say;
    other provider errors raise (ProviderError) and nothing is stored.
    """
    settings = goal.settings
    chosen = settings.model or ModelSettings()
    policy = RetryPolicy(max_retries=chosen.max_retries, max_total_s=chosen.retry_max_total_s)
    request = ModelRequest(restate_messages(goal.contract), on_text=on_text)
    response = await complete_with_retries(model, request, policy)
    restatement = Restatement(response.content.strip(), response.usage, response.model or model.name)
    # The price is fixed when the goal is set; goals stored before prices were kept look it up.
    price = chosen.price if settings.model is not None and chosen.price is not None else price_of(model.name)
    _charge(store, goal.goal_id, restatement, cost_usd(price, response.usage))
    return restatement


def _charge(store: Store, goal_id: str, restatement: Restatement, usd: float) -> None:
    """Store the `restated` event and charge its usage, as one commit guarded by the goal's version."""
    usage = restatement.usage
    for attempt in range(CHARGE_ATTEMPTS):
        goal = store.get_goal_by_id(goal_id)
        state = goal.state
        # Time is not charged: the goal's clock counts its runs, and none has started.
        decision = decide(state, ModelResponded(usage.charged_tokens, usage.cached_input_tokens, usd,
                                                state.spent.time_s))
        charged = state.status == "pursuing"  # decide stops any other goal without charging it
        event = RestatedEvent(text=restatement.text, usage=UsageRecord.of(usage), usd=usd, model=restatement.model,
                              charged_to_goal=charged)
        try:
            store.commit(goal_id, [event, *decision.events],
                         state=decision.state if charged else None, expected_version=goal.version)
            return
        except StaleGoalError as stale:
            if stale.reason != "version" or attempt == CHARGE_ATTEMPTS - 1:
                raise
