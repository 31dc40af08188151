"""What a tool says back to the model: long text cut to size, and precise refusals for bad arguments.

No I/O here; every tool shapes its input checks and its output through these helpers so they read alike.
"""

from __future__ import annotations

from typing import Any

from goalkeeper.models.base import ToolSpec
from goalkeeper.tools.base import ToolResult

HEAD_SHARE = 0.4
"""Share of the limit kept from the start of a long text; the rest comes from the end, where errors
and summaries usually are."""


def cut_middle(text: str, limit: int) -> tuple[str, bool]:
    """Keep about 40% head and 60% tail of `limit` chars with a marker line between; (text, was_cut).

    Cuts snap to line breaks when one is near, so the model never sees half a line at the seam.
    """
    limit = max(limit, 0)
    if len(text) <= limit:
        return text, False
    head_end = int(limit * HEAD_SHARE)
    tail_start = len(text) - (limit - head_end)
    newline = text.rfind("\n", 0, head_end)
    if newline >= head_end // 2:
        head_end = newline + 1
    newline = text.find("\n", tail_start, tail_start + (len(text) - tail_start) // 2)
    if newline != -1:
        tail_start = newline + 1
    marker = f"[... {tail_start - head_end} chars cut; full output stored ...]\n"
    head, tail = text[:head_end], text[tail_start:]
    if head and not head.endswith("\n"):
        head += "\n"
    return head + marker + tail, True


def text_result(
    text: str,
    limit: int,
    *,
    ok: bool = True,
    data: dict[str, Any] | None = None,
    files_touched: tuple[str, ...] = (),
) -> ToolResult:
    """A result whose output is `text` cut to `limit`, keeping the uncut text when it was cut."""
    shown, was_cut = cut_middle(text, limit)
    return ToolResult(
        output=shown,
        ok=ok,
        full_output=text if was_cut else None,
        data=data or {},
        files_touched=files_touched,
    )


def refusal(message: str) -> ToolResult:
    """A failed call the model can read and correct."""
    return ToolResult(output=message, ok=False)


class ArgumentError(ValueError):
    """A tool argument is missing, unknown or of the wrong type; the message names it and what is expected."""


def check_argument_names(arguments: dict[str, Any], spec: ToolSpec) -> None:
    """Refuse names the schema does not list, and required names that are missing.

    The schemas say `additionalProperties: false`, but models still invent arguments; silently
    ignoring one (a misspelt `timeout`) would run something other than what the model asked for.
    """
    properties: dict[str, Any] = spec.parameters.get("properties", {})
    unknown = sorted(set(arguments) - set(properties))
    if unknown:
        listed = ", ".join(f"'{name}'" for name in unknown)
        raise ArgumentError(f"unknown argument {listed}; {spec.name} takes: {', '.join(properties)}")
    for name in spec.parameters.get("required", []):
        if arguments.get(name) is None:
            kind = properties[name].get("type", "value")
            raise ArgumentError(f"missing required argument '{name}' (a {kind})")


def _describe(value: Any) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{shown} ({type(value).__name__})"


def required_string(arguments: dict[str, Any], name: str) -> str:
    """The string argument `name`; ArgumentError when it is missing or not a string."""
    value = arguments.get(name)
    if value is None:
        raise ArgumentError(f"missing required argument '{name}' (a string)")
    if not isinstance(value, str):
        raise ArgumentError(f"argument '{name}' must be a string, got {_describe(value)}")
    return value


def optional_string(arguments: dict[str, Any], name: str) -> str | None:
    """The string argument `name`, or None when absent or null."""
    if arguments.get(name) is None:
        return None
    return required_string(arguments, name)


def optional_integer(arguments: dict[str, Any], name: str, minimum: int = 1) -> int | None:
    """The integer argument `name` (at least `minimum`), or None when absent or null.

    A float with no fractional part (5.0) counts as an integer, as JSON Schema says; a bool does not.
    """
    value = arguments.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentError(f"argument '{name}' must be an integer, got {_describe(value)}")
    if value < minimum:
        raise ArgumentError(f"argument '{name}' must be at least {minimum}, got {value}")
    return value
