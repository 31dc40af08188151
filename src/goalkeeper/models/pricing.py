"""USD per million tokens for known models; local and scripted models cost nothing."""

from __future__ import annotations

from dataclasses import dataclass

from goalkeeper.models.base import Usage


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens."""

    input: float
    cached_input: float
    output: float


#: A small built-in table; prefixes match dated variants (gpt-4.1-2025-04-14 → gpt-4.1).
PRICES: dict[str, Price] = {
    "gpt-5": Price(1.25, 0.125, 10.0),
    "gpt-5-mini": Price(0.25, 0.025, 2.0),
    "gpt-5-nano": Price(0.05, 0.005, 0.4),
    "gpt-4.1": Price(2.0, 0.5, 8.0),
    "gpt-4.1-mini": Price(0.4, 0.1, 1.6),
    "gpt-4o": Price(2.5, 1.25, 10.0),
    "gpt-4o-mini": Price(0.15, 0.075, 0.6),
    "o4-mini": Price(1.1, 0.275, 4.4),
    "claude-sonnet-4-5": Price(3.0, 0.3, 15.0),
    "claude-opus-4-1": Price(15.0, 1.5, 75.0),
    "claude-haiku-4-5": Price(1.0, 0.1, 5.0),
    "scripted": Price(0.0, 0.0, 0.0),
}


def price_of(model: str) -> Price | None:
    """The price for `model`, matching the longest known prefix; None when unknown."""
    for name in sorted(PRICES, key=len, reverse=True):
        if model == name or model.startswith(name + "-"):
            return PRICES[name]
    return None


def cost_usd(model: str, usage: Usage) -> float:
    """USD for one response; an unknown model costs 0 (a USD budget on one is refused at goal start)."""
    price = price_of(model)
    if price is None:
        return 0.0
    fresh = max(0, usage.input_tokens - usage.cached_input_tokens)
    return (fresh * price.input + usage.cached_input_tokens * price.cached_input
            + usage.output_tokens * price.output) / 1_000_000
