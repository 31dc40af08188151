"""Counting tokens: one estimate for every model, calibrated against the input tokens the provider reports.

No tokenizer tables are loaded: o200k_base alone cost a runner 76 MB of its ~150 MB, and the counts only
size requests against a limit that keeps a fifth of the window spare. An OpenAI model reports its prompt
tokens with every response, so the estimate follows its tokenizer from the first answer on.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from goalkeeper.errors import ConfigError
from goalkeeper.models.windows import context_window_of

if TYPE_CHECKING:
    from goalkeeper.spec.settings import ModelSettings

DEFAULT_CONTEXT_WINDOW = 128_000
"""The window assumed for a model whose window is neither configured nor in context_windows.toml."""
AUTO_COMPACT_SHARE = 0.8
"""Compact when a prompt reaches this share of the window, unless `model_auto_compact_token_limit` says."""
MAX_COMPACT_SHARE = 0.9
"""A configured limit is held below this share: the next turn's own messages still need room."""

ESTIMATE_CHARS_PER_TOKEN = 3.5
"""Where an estimate starts: fewer chars a token than English prose has, so early estimates run high."""
ESTIMATE_RANGE = (1.5, 6.0)
"""Chars a token an estimate may learn: reported usage outside this range says more about the request
(images, hidden system text) than about the tokenizer."""
ESTIMATE_WEIGHT = 0.3
"""How far one observation moves the estimate's ratio (an exponential average)."""


class EstimatedTokens:
    """Characters over a learned chars-per-token ratio, rounded up: every model is counted this way.

    A goal's context is sized from its characters, kept as messages land (history.py), so a new message
    costs O(its length) and a provider's usage report moves only the ratio, never a re-count.
    """

    def __init__(self, chars_per_token: float = ESTIMATE_CHARS_PER_TOKEN) -> None:
        self.chars_per_token = chars_per_token

    def count(self, text: str) -> int:
        """About how many tokens `text` is; rounded up, so a budget kept by it errs on the safe side."""
        return self.of_chars(len(text))

    def of_chars(self, chars: int) -> int:
        """About how many tokens `chars` characters are."""
        return math.ceil(chars / self.chars_per_token)

    def observe(self, chars: int, reported_tokens: int) -> None:
        """Move the ratio toward what the provider reported, so later estimates follow the real tokenizer."""
        if chars <= 0 or reported_tokens <= 0:
            return
        blended = (1 - ESTIMATE_WEIGHT) * self.chars_per_token + ESTIMATE_WEIGHT * chars / reported_tokens
        low, high = ESTIMATE_RANGE
        self.chars_per_token = min(max(blended, low), high)


def auto_compact_limit(model: ModelSettings | None) -> int:
    """Prompt tokens at which the conversation is compacted: `model_auto_compact_token_limit`, else 80% of
    the context window, else 80% of DEFAULT_CONTEXT_WINDOW; never above 90% of a known window."""
    explicit = model.auto_compact_token_limit if model is not None else None
    window = None
    if model is not None:
        # Goals stored before windows were resolved have None: the table still knows their model.
        window = model.context_window or context_window_of(model.model)
    if window is None:
        return explicit or int(DEFAULT_CONTEXT_WINDOW * AUTO_COMPACT_SHARE)
    return min(explicit or int(window * AUTO_COMPACT_SHARE), int(window * MAX_COMPACT_SHARE))


def check_compact_limit(model: str, window: int | None, limit: int | None) -> None:
    """Refuse a compaction limit the model's window cannot hold (called when the goal's model is resolved)."""
    if window is None or limit is None or limit <= window:
        return
    raise ConfigError(
        f"model_auto_compact_token_limit = {limit} is more than the context window of {model} ({window} tokens)",
        f"set model_auto_compact_token_limit below {window} (or remove it: compaction then starts at "
        f"{int(window * AUTO_COMPACT_SHARE)}); if the window really is larger, set model_context_window")
