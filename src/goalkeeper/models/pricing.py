"""What a model's tokens cost: the built-in price table (pricing.toml), config overrides, and the arithmetic.

Prices are resolved once, at goal start, and stored with the goal's model settings; the runner only
multiplies. A USD budget on a model without a price is refused at goal start, never counted as free.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Mapping
from importlib import resources

from pydantic import ValidationError

from goalkeeper.errors import ConfigError
from goalkeeper.models.base import Usage
from goalkeeper.spec.settings import Price

FREE_PROVIDERS = frozenset({"local", "ollama", "scripted"})
"""Providers that run on this machine (or replay a script): their tokens cost nothing."""


ZERO_PRICE = Price(input=0.0, cached_input=0.0, output=0.0)
"""The price of a local, Ollama or scripted model."""


@functools.cache
def builtin_prices() -> Mapping[str, Price]:
    """The table shipped in pricing.toml (read once per process)."""
    text = resources.files("goalkeeper.models").joinpath("pricing.toml").read_text(encoding="utf-8")
    try:
        table = tomllib.loads(text)["model_pricing"]
        return {name: Price.model_validate(entry) for name, entry in table.items()}
    except (tomllib.TOMLDecodeError, KeyError, ValidationError) as error:
        # Package data, not user input: this only happens to a broken installation.
        raise ConfigError(f"the built-in pricing.toml is malformed: {error}", "reinstall goalkeeper") from None


def load_prices(overrides: Mapping[str, Price] | None = None) -> dict[str, Price]:
    """The built-in table with `overrides` (from `[model_pricing]` in config) laid over it, entry by entry."""
    return {**builtin_prices(), **(overrides or {})}


#: A dated snapshot's suffix: `-2024-08-06` (OpenAI) or `-20250929` (Anthropic).
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")


def price_of(model: str, prices: Mapping[str, Price] | None = None) -> Price | None:
    """The price of `model` by its exact name, or a dated snapshot's by the name it dates; None when unknown.

    gpt-4o-2024-08-06 → gpt-4o and claude-sonnet-4-5-20250929 → claude-sonnet-4-5, but any other suffix names
    another model at another price (o1-pro is not o1, o3-deep-research is not o3), so it needs its own entry.
    `prices` defaults to the built-in table.
    """
    table = builtin_prices() if prices is None else prices
    if model in table:
        return table[model]
    dated = _SNAPSHOT.sub("", model)
    return table.get(dated) if dated != model else None


def unpriced_note(model: str) -> str:
    """What `gk goal` says when the goal's model has no price: its cost is not counted, and how to set one."""
    return (f"note: no price is known for model {model}, so its cost is not counted and a USD budget is refused.\n"
            "Set its price (USD per 1M tokens, from the provider's price page) in config.toml:\n"
            f'  [model_pricing."{model}"]\n  input = …\n  cached_input = …\n  output = …')


def require_price(model: str, provider: str, prices: Mapping[str, Price],
                  usd_budget: float | None) -> Price | None:
    """The price to store with a goal: zero for a local provider, the table's price, or None when unknown.

    Unknown is only allowed without a USD budget: counting an unknown model as free would let a goal
    spend past its budget unnoticed, so that is a ConfigError at goal start instead.
    """
    if provider in FREE_PROVIDERS:
        return ZERO_PRICE
    price = price_of(model, prices)
    if price is None and usd_budget is not None:
        raise ConfigError(
            f"no price for model {model}, so a USD budget cannot be kept",
            f'add [model_pricing."{model}"] with input, cached_input and output (USD per 1M tokens) to '
            "config.toml, or drop --budget-usd")
    return price


def cost_usd(price: Price | None, usage: Usage) -> float:
    """USD for one response's usage; an unknown price (None) costs 0 — `require_price` refused any USD budget."""
    if price is None:
        return 0.0
    fresh = max(0, usage.input_tokens - usage.cached_input_tokens)
    return (fresh * price.input + usage.cached_input_tokens * price.cached_input
            + usage.output_tokens * price.output) / 1_000_000
