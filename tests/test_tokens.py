"""Token accounting: the calibrated estimate every model gets, the conversation's size kept as messages land,
context windows from the model table, and where compaction starts."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from goalkeeper.context.history import Conversation
from goalkeeper.context.tokens import DEFAULT_CONTEXT_WINDOW, EstimatedTokens, auto_compact_limit
from goalkeeper.events import (
    ContextTrimmedEvent,
    Event,
    MessageEvent,
    ModelResponseEvent,
    ToolResultEvent,
    Usage,
)
from goalkeeper.models.windows import context_window_of
from goalkeeper.spec.settings import ModelSettings
from goalkeeper.store import EventRecord

# ---------------------------------------------------------------- the estimate


def test_the_estimate_starts_conservative_and_rounds_up() -> None:
    estimate = EstimatedTokens()
    assert estimate.count("") == 0
    assert estimate.count("abcd") == 2  # 4 / 3.5 rounds up
    assert estimate.count("x" * 350) == 100


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


def test_an_openai_model_is_estimated_too_and_learns_its_tokenizer_from_the_first_report() -> None:
    estimate = EstimatedTokens()  # every model's counter: no tokenizer tables are loaded (76 MB for o200k)
    estimate.observe(chars=40_000, reported_tokens=10_000)  # what gpt-5 reported for the first request
    assert estimate.count("x" * 4_000) < 1_143  # 4,000 chars at 3.5 a token, before the report


def test_counting_and_calibrating_do_not_load_a_tokenizer() -> None:
    # In a fresh interpreter: a conversation sized and calibrated as a runner does it imports no tokenizer.
    code = ("import sys; from goalkeeper.context.history import Conversation; "
            "Conversation('s', 'c').counter.observe(1000, 250); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tiktoken', 'quicktok')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- the conversation's size


def conversation_with(contents: list[str]) -> Conversation:
    conversation = Conversation("system prompt", "the goal contract")
    for number, content in enumerate(contents, 1):
        conversation.apply(record(number, MessageEvent(turn_kind="continuation", content=content)))
    return conversation


def record(number: int, event: Event) -> EventRecord:
    return EventRecord(seq=number, thread_id="t", goal_id="g", ts=0.0, event=event)


def test_the_request_is_sized_from_its_characters_and_the_learned_ratio() -> None:
    conversation = conversation_with(["a" * 700, "b" * 1_400])
    chars = len("system prompt") + len("the goal contract") + 700 + 1_400
    assert conversation.request_tokens(()) == math.ceil(chars / 3.5) + 4 * 4

    # The provider reports the request was 4 chars a token: the same history is now sized smaller,
    # from the kept character total (nothing is re-counted), and the next message adds only itself.
    usage = Usage(input_tokens=chars // 4, cached_input_tokens=0, output_tokens=1, charged_tokens=1)
    conversation.apply(record(3, ModelResponseEvent(content="ok", tool_calls=[], usage=usage, usd=0.0, model="m",
                                                    finish_reason="stop")))
    ratio = conversation.counter.chars_per_token
    assert 3.5 < ratio < 4
    assert conversation.request_tokens(()) == math.ceil((chars + 2) / ratio) + 4 * 5


def test_trimming_a_tool_output_shrinks_the_size_by_what_was_cut() -> None:
    conversation = conversation_with(["go"])
    conversation.apply(record(2, ToolResultEvent(call_id="c1", name="shell", output="z" * 10_000, ok=True,
                                                 signal=None, data={}, files_touched=[], full_output_chars=None)))
    prefix = len("system prompt") + len("the goal contract")
    assert conversation.request_tokens(()) == math.ceil((prefix + 2 + 10_000) / 3.5) + 4 * 4
    conversation.apply(record(3, ContextTrimmedEvent(upto_message=2, keep_chars=2_000)))
    cut = len(conversation.history[1].content)
    assert cut < 2_200
    assert conversation.request_tokens(()) == math.ceil((prefix + 2 + cut) / 3.5) + 4 * 4


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
