"""The `read_output` tool: pages through a stored full tool output whose shown text was cut.

Read-only: it reads the store's blobs through `context.read_blob` and never writes anything.
"""

from __future__ import annotations

import json

from goalkeeper.errors import StoreError
from goalkeeper.tools.base import Count, Offset, Tool, ToolArgs, ToolContext, ToolResult
from goalkeeper.tools.replies import MAX_CHARS_PER_TOKEN, refusal


def page_header(blob: str, start: int, end: int, total: int) -> str:
    """`chars A–B of N; next: read_output {...}` (or `end of output`): where the page is and how to go on."""
    after = f"next: read_output {json.dumps({'id': blob, 'offset': end})}" if end < total else "end of output"
    return f"chars {start:,}–{end:,} of {total:,}; {after}"


def fitting_end(text: str, start: int, most: int, token_limit: int, context: ToolContext) -> int:
    """The end of the longest page from `start`, at most `most` chars, that fits in `token_limit` tokens.

    Starts from the most chars the limit could hold and shrinks at the measured ratio until it fits.
    """
    counter = context.token_counter()
    end = min(start + most, len(text), start + token_limit * MAX_CHARS_PER_TOKEN)
    while end > start + 1:
        used = counter.count(text[start:end])
        if used <= token_limit:
            break
        end = start + max(min(end - start - 1, int((end - start) * token_limit / used * 0.97)), 1)
    return end


class ReadOutputArgs(ToolArgs):
    """`read_output`'s arguments."""

    id: str
    offset: Offset | None = None
    limit: Count | None = None


class ReadOutputTool(Tool[ReadOutputArgs]):
    """Returns one page of a stored full output, by the id a cut marker named."""

    name = "read_output"
    description = ("Read a tool output that was cut: id and offset as the cut marker gives them (offset is a "
                   "char position, 0 = start); limit: chars (default: as many as fit). Each page says where the "
                   "next one starts.")
    Args = ReadOutputArgs

    async def run(self, args: ReadOutputArgs, context: ToolContext) -> ToolResult:
        """The page; an unknown id, an offset past the end or no store at hand is `ok=False` with what to do."""
        blob, offset, limit = args.id, args.offset or 0, args.limit
        if context.read_blob is None:
            return refusal("read_output cannot read stored outputs here; rerun the command with its output "
                           "narrowed instead (grep, head, tail, or read_file with offset and limit)")
        try:
            text = context.read_blob(blob)
        except StoreError:
            return refusal(f"no stored output has id {blob!r}; copy the id exactly from a cut marker "
                           '("read_output {"id": "blob_…", "offset": …}")')
        if offset >= len(text) and text:
            return refusal(f"offset {offset} is past the end of output {blob} ({len(text):,} chars); "
                           f"use an offset below {len(text)}, or 0 to start over")
        return ToolResult(page_of(text, blob, offset, limit, context),
                          facts={"page": {"id": blob, "offset": offset, "total_chars": len(text)}})


def page_of(text: str, blob: str, offset: int, limit: int | None, context: ToolContext) -> str:
    """Header and chars from `offset`: `limit` of them, or as many as fit, ending at a line's end when
    one is near. The whole page, header included, stays within the context's token limit."""
    counter = context.token_counter()
    longest_header = page_header(blob, offset, max(len(text) - 1, offset), len(text))  # a "next:" one
    budget = context.output_token_limit - counter.count(longest_header) - 1
    while True:
        end = fitting_end(text, offset, limit or len(text), max(budget, 1), context)
        if limit is None and end < len(text):
            newline = text.rfind("\n", offset, end)
            if newline >= offset + (end - offset) // 2:
                end = newline + 1  # the next page starts on a fresh line
        page = f"{page_header(blob, offset, end, len(text))}\n{text[offset:end]}"
        over = counter.count(page) - context.output_token_limit
        if over <= 0 or budget <= 1:
            return page  # fits, or the limit cannot hold even the header: the smallest page there is
        budget -= over
