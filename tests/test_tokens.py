"""Token accounting: exact o200k counts built offline, the calibrated estimate, which model gets which,
context windows from the model table, and where compaction starts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from goalkeeper.context.tokens import (
    DEFAULT_CONTEXT_WINDOW,
    O200K_SHA256,
    EstimatedTokens,
    ExactTokens,
    auto_compact_limit,
    counter_for,
    load_o200k,
    o200k_cache_path,
)
from goalkeeper.models.windows import context_window_of
from goalkeeper.spec.settings import ModelSettings


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $XDG_CACHE_HOME, so the o200k cache file starts out missing."""
    home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def o200k() -> ExactTokens:
    counter = counter_for("gpt-5", "responses")
    assert isinstance(counter, ExactTokens)
    return counter


# ---------------------------------------------------------------- exact o200k


@pytest.mark.parametrize(("text", "tokens"), [
    ("hello world", 2),
    ("", 0),
    ("Hello, world!", 4),
    ("<|endoftext|>", 7),  # special-token text in a tool output counts as ordinary text
    ("def apply_discount(total: float, percent: float) -> float:", 14),
    ("naïve café — 東京 🚀", 8),
])
def test_o200k_counts_match_the_tokenizer(o200k: ExactTokens, text: str, tokens: int) -> None:
    assert o200k.count(text) == tokens


def test_the_o200k_cache_file_is_built_when_missing_and_its_hash_verifies(cache_home: Path) -> None:
    path = o200k_cache_path()
    assert path == cache_home / "goalkeeper" / "o200k_base.tiktoken"
    assert not path.exists()

    encoding = load_o200k(path)

    assert hashlib.sha256(path.read_bytes()).hexdigest() == O200K_SHA256
    assert encoding.encode_ordinary("Hello, world!") == [13225, 11, 2375, 0]
    assert list(path.parent.iterdir()) == [path]  # the temp file was renamed, not left behind


def test_a_corrupted_cache_file_is_rebuilt(cache_home: Path) -> None:
    path = o200k_cache_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"aGVsbG8= 0\n")  # valid-looking, wrong content

    assert ExactTokens(load_o200k(path)).count("hello world") == 2
    assert hashlib.sha256(path.read_bytes()).hexdigest() == O200K_SHA256


def test_a_verified_cache_file_is_used_as_it_is(cache_home: Path) -> None:
    path = o200k_cache_path()
    load_o200k(path)
    built = path.stat().st_mtime_ns

    load_o200k(path)

    assert path.stat().st_mtime_ns == built


# ---------------------------------------------------------------- the estimate


def test_the_estimate_starts_conservative_and_rounds_up() -> None:
    estimate = EstimatedTokens()
    assert estimate.count("") == 0
    assert estimate.count("abcd") == 2  # 4 / 3.5 rounds up
    assert estimate.count("x" * 350) == 100
    assert not estimate.exact


def test_the_estimate_follows_what_the_provider_reports() -> None:
    estimate = EstimatedTokens()
    text = "y" * 40_000
    before = estimate.count(text)
    for _ in range(20):
        estimate.observe(chars=len(text), reported_tokens=8_000)  # the real tokenizer: 5 chars a token

    assert estimate.count(text) < before
    assert abs(estimate.count(text) - 8_000) <= 80


def test_the_estimate_ignores_empty_reports_and_stays_in_a_sane_range() -> None:
    estimate = EstimatedTokens()
    estimate.observe(chars=0, reported_tokens=100)
    estimate.observe(chars=100, reported_tokens=0)
    assert estimate.chars_per_token == 3.5
    for _ in range(50):
        estimate.observe(chars=1_000_000, reported_tokens=1)  # an image, say: not the tokenizer
    assert estimate.chars_per_token <= 6.0


def test_an_exact_counter_learns_nothing(o200k: ExactTokens) -> None:
    o200k.observe(chars=100, reported_tokens=1)
    assert o200k.count("hello world") == 2


# ---------------------------------------------------------------- which counter


@pytest.mark.parametrize(("model", "wire_api"), [
    ("gpt-5", "responses"), ("gpt-5-mini", "chat"), ("gpt-4.1-2025-04-14", "chat"), ("gpt-4o-mini", "chat"),
    ("o3", "chat"), ("o4-mini", "chat"), ("o1", "chat"), ("codex-mini-latest", "chat"),
    ("chatgpt-4o-latest", "chat"), ("openai/gpt-5", "chat"), ("my-deployment", "responses"),
])
def test_openai_models_are_counted_exactly(model: str, wire_api: str) -> None:
    counter = counter_for(model, wire_api)
    assert counter.exact and counter.name == "o200k_base"


@pytest.mark.parametrize(("model", "wire_api"), [
    ("claude-sonnet-4-5", "anthropic"), ("smollm2-135m", "chat"), ("scripted", "scripted"),
    ("qwen2.5-coder:7b", "chat"), ("gpt-4-turbo", "chat"), ("", "chat"),
])
def test_other_models_get_a_fresh_estimate(model: str, wire_api: str) -> None:
    counter = counter_for(model, wire_api)
    assert not counter.exact
    counter.observe(chars=5_000, reported_tokens=1_000)
    assert counter_for(model, wire_api).count("x" * 350) == 100  # each one learns on its own


# ---------------------------------------------------------------- context windows


@pytest.mark.parametrize(("model", "window"), [
    ("gpt-5", 272_000), ("gpt-5-mini-2025-08-07", 272_000), ("gpt-5.1-codex", 272_000),
    ("gpt-4.1-nano-2025-04-14", 1_047_576), ("gpt-4o", 128_000), ("o3", 200_000), ("o4-mini", 200_000),
    ("claude-sonnet-4-5-20250929", 200_000), ("claude-opus-4-1", 200_000), ("claude-haiku-4-5", 200_000),
    ("smollm2-135m", 4_096), ("llama3", None), ("scripted", None), ("gpt-5x", None),
])
def test_context_windows_come_from_the_model_table(model: str, window: int | None) -> None:
    assert context_window_of(model) == window


def test_an_override_beats_the_table_and_covers_dated_variants() -> None:
    overrides = {"gpt-5": 400_000, "my-model": 32_768}
    assert context_window_of("gpt-5-2025-08-07", overrides) == 400_000
    assert context_window_of("my-model-q4", overrides) == 32_768
    assert context_window_of("o3", overrides) == 200_000


# ---------------------------------------------------------------- where compaction starts


def model(name: str, window: int | None = None, limit: int | None = None) -> ModelSettings:
    return ModelSettings(model=name, context_window=window, auto_compact_token_limit=limit)


def test_compaction_starts_at_the_explicit_limit() -> None:
    assert auto_compact_limit(model("gpt-5", 272_000, 150_000)) == 150_000


def test_compaction_starts_at_80_percent_of_the_window() -> None:
    assert auto_compact_limit(model("gpt-5", 272_000)) == 217_600
    assert auto_compact_limit(model("gpt-5")) == 217_600  # stored before windows were: the table knows it


def test_compaction_starts_at_80_percent_of_the_default_window_when_none_is_known() -> None:
    assert auto_compact_limit(None) == int(DEFAULT_CONTEXT_WINDOW * 0.8) == 102_400
    assert auto_compact_limit(model("llama3")) == 102_400
    assert auto_compact_limit(model("llama3", limit=50_000)) == 50_000


def test_an_explicit_limit_never_passes_90_percent_of_a_known_window() -> None:
    assert auto_compact_limit(model("smollm2-135m", 4_096, 4_000)) == 3_686
