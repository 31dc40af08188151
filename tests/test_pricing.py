"""Pricing: the built-in table, config overrides, exact names and dated snapshots, and the USD-budget guard
at goal start."""

from __future__ import annotations

from pathlib import Path

import pytest

from goalkeeper.config.load import load_config
from goalkeeper.config.resolve import settings_from_config
from goalkeeper.errors import ConfigError
from goalkeeper.models.base import Usage
from goalkeeper.models.pricing import ZERO_PRICE, builtin_prices, cost_usd, load_prices, price_of, require_price
from goalkeeper.spec.settings import Price


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "GOALKEEPER_MODEL"):
        monkeypatch.delenv(name, raising=False)


def test_the_built_in_table_prices_current_openai_and_anthropic_models() -> None:
    prices = load_prices()
    for model in ("gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini",
                  "o3", "o4-mini", "claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5"):
        assert model in prices
    assert prices["gpt-5"] == Price(input=1.25, cached_input=0.125, output=10.0)
    assert all(price.cached_input <= price.input for price in prices.values())


def test_dated_variants_match_the_longest_known_name() -> None:
    assert price_of("gpt-4.1-2025-04-14") == builtin_prices()["gpt-4.1"]
    assert price_of("gpt-4.1-mini-2025-04-14") == builtin_prices()["gpt-4.1-mini"]
    assert price_of("claude-sonnet-4-5-20250929") == builtin_prices()["claude-sonnet-4-5"]
    assert price_of("claude-sonnet-4-20250514") == builtin_prices()["claude-sonnet-4"]


def test_a_name_that_only_shares_letters_is_unknown() -> None:
    assert price_of("gpt-5x") is None
    assert price_of("llama3") is None


def test_overrides_replace_entries_and_add_models() -> None:
    cheap = Price(input=1.0, cached_input=0.5, output=2.0)
    prices = load_prices({"gpt-5": cheap, "my-model": cheap})
    assert prices["gpt-5"] == cheap and price_of("my-model", prices) == cheap
    assert price_of("my-model-v2", prices) is None  # another model, not a snapshot of my-model
    assert prices["gpt-5-mini"] == builtin_prices()["gpt-5-mini"]


def test_config_pricing_overrides_the_table_and_is_stored_with_the_settings(
        goalkeeper_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (goalkeeper_home / "config.toml").write_text(
        'model_provider = "openai"\nmodel = "gpt-5"\n'
        '[model_pricing."gpt-5"]\ninput = 1.0\ncached_input = 0.1\noutput = 8.0\n'
        '[profiles.team]\nmodel_pricing = { "gpt-5" = { input = 2.0, cached_input = 0.2, output = 16.0 } }\n')
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert settings_from_config(load_config(None)).price == Price(input=1.0, cached_input=0.1, output=8.0)
    assert settings_from_config(load_config(None, "team")).price == Price(input=2.0, cached_input=0.2, output=16.0)


def test_a_usd_budget_on_an_unpriced_model_is_refused_at_goal_start() -> None:
    with pytest.raises(ConfigError, match="no price for model llama3") as caught:
        require_price("llama3", "custom", load_prices(), usd_budget=5.0)
    assert caught.value.hint is not None and '[model_pricing."llama3"]' in caught.value.hint
    assert "--budget-usd" in caught.value.hint


def test_the_same_refusal_comes_from_settings_resolution() -> None:
    config = load_config(None)
    with pytest.raises(ConfigError, match="no price for model llama3"):
        settings_from_config(config, model="llama3", base_url="http://127.0.0.1:8080/v1", usd_budget=5.0)
    assert settings_from_config(config, model="llama3", base_url="http://127.0.0.1:8080/v1").price is None


def test_local_ollama_and_scripted_models_cost_nothing() -> None:
    for provider in ("local", "ollama", "scripted"):
        price = require_price("anything", provider, load_prices(), usd_budget=1.0)
        assert price == ZERO_PRICE
        assert cost_usd(price, Usage(input_tokens=10**6, output_tokens=10**6)) == 0.0


def test_cost_charges_cached_input_at_its_own_rate() -> None:
    price = Price(input=2.0, cached_input=0.5, output=8.0)
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=100_000)
    assert cost_usd(price, usage) == pytest.approx(0.6 * 2.0 + 0.4 * 0.5 + 0.1 * 8.0)


def test_an_unknown_price_costs_nothing_without_a_budget() -> None:
    assert require_price("llama3", "custom", load_prices(), usd_budget=None) is None
    assert cost_usd(None, Usage(input_tokens=1000, output_tokens=1000)) == 0.0
