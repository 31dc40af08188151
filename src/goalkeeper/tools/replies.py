"""What a tool says back to the model: long text cut to size, and refusals.

No I/O here; every tool shapes its output through these helpers so they read alike. (Bad arguments are
refused by each tool's `Args` model, tools/base.py.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from pydantic import JsonValue

from goalkeeper.context.tokens import EstimatedTokens
from goalkeeper.store.store import blob_id_of
from goalkeeper.tools.base import ToolContext, ToolResult

HEAD_SHARE = 0.4
"""Share of the limit kept from the start of a long text; the rest comes from the end, where errors
and summaries usually are."""
MAX_CHARS_PER_TOKEN = 16
"""No real output averages more chars a token than this: a longer text is over a token limit uncounted."""
COUNT_CAP_CHARS = 2_000_000
"""A cut-out middle longer than this is estimated, not counted (counting runs about 10 MB a second)."""
MARKER_TOKENS = 80
"""Tokens kept free for the marker line when a cut is first sized."""


def seam(text: str, limit: int) -> tuple[int, int]:
    """Where to cut `text` to about `limit` chars: (head_end, tail_start), 40% head and 60% tail.

    Cuts snap to line breaks when one is near, so the model never sees half a line at the seam.
    """
    limit = max(limit, 0)
    if len(text) <= limit:
        return len(text), len(text)
    head_end = int(limit * HEAD_SHARE)
    tail_start = len(text) - (limit - head_end)
    newline = text.rfind("\n", 0, head_end)
    if newline >= head_end // 2:
        head_end = newline + 1
    newline = text.find("\n", tail_start, tail_start + (len(text) - tail_start) // 2)
    if newline != -1:
        tail_start = newline + 1
    return head_end, tail_start


def _join(text: str, head_end: int, tail_start: int, marker: str) -> str:
    head, tail = text[:head_end], text[tail_start:]
    if head and not head.endswith("\n"):
        head += "\n"
    return f"{head}{marker}\n{tail}"


def cut_middle(text: str, limit: int) -> tuple[str, bool]:
    """Keep about 40% head and 60% tail of `limit` chars with a marker line between; (text, was_cut)."""
    head_end, tail_start = seam(text, limit)
    if head_end == tail_start:
        return text, False
    return _join(text, head_end, tail_start, f"[... {tail_start - head_end} chars cut; full output stored ...]"), True


def cut_to_tokens(text: str, token_limit: int, counter: EstimatedTokens) -> tuple[str, bool]:
    """`text` cut to head + tail within `token_limit` tokens by `counter`; (text, was_cut).

    The marker between head and tail names the stored full output (`blob_id_of(text)`, the id the runner
    stores it under) and the char offset where the cut starts, so the model can page with read_output.
    Sized by chars at the measured chars-a-token ratio, then re-counted and shrunk while still over.
    """
    total = counter.count(text) if len(text) <= token_limit * MAX_CHARS_PER_TOKEN else None
    if total is not None and total <= token_limit:
        return text, False
    blob = blob_id_of(text)
    ratio = _chars_per_token(text, total, counter)
    chars = int(max(token_limit - MARKER_TOKENS, 0) * ratio)
    while True:
        head_end, tail_start = seam(text, chars)
        shown = _join(text, head_end, tail_start, _marker(text, head_end, tail_start, blob, counter, ratio))
        used = counter.count(shown)
        if used <= token_limit or chars == 0:
            return shown, True
        chars = max(min(chars - 1, int(chars * token_limit / used * 0.97)), 0)



def _chars_per_token(text: str, total: int | None, counter: EstimatedTokens) -> float:
    """The text's own ratio; for a text too long to count whole, the ratio of its first and last 64K chars."""
    if total is None:
        sample = text[:65_536] + text[-65_536:]
        total, text = counter.count(sample), sample
    return len(text) / max(total, 1)


def _marker(text: str, head_end: int, tail_start: int, blob: str, counter: EstimatedTokens, ratio: float) -> str:
    """The line between head and tail: how much was cut, where, and the read_output call that pages it."""
    middle = tail_start - head_end
    if middle <= COUNT_CAP_CHARS:
        cut = f"{counter.count(text[head_end:tail_start]):,} tokens"
    else:
        cut = f"about {math.ceil(middle / ratio):,} tokens"
    page = json.dumps({"id": blob, "offset": head_end})
    return (f"[... {cut} cut (chars {head_end:,}–{tail_start:,} of {len(text):,}); "
            f"read_output {page} pages through the full output ...]")


def text_result(
    text: str,
    context: ToolContext,
    *,
    ok: bool = True,
    facts: Mapping[str, JsonValue] | None = None,
    files_touched: tuple[str, ...] = (),
) -> ToolResult:
    """A result whose output is `text` cut to the context's token limit, keeping the uncut text when it was cut."""
    shown, was_cut = cut_to_tokens(text, context.output_token_limit, context.token_counter())
    return ToolResult(
        output=shown,
        ok=ok,
        full_output=text if was_cut else None,
        facts=facts or {},
        files_touched=files_touched,
    )


def refusal(message: str) -> ToolResult:
    """A failed call the model can read and correct."""
    return ToolResult(output=message, ok=False)
