"""Bad TOML input in words a person can act on: syntax errors, pydantic problems, did-you-mean guesses.

Shared by config and contract; knows neither schema, so callers pass the example and the allowed keys.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic_core import ErrorDetails

EXPECTED = {
    "string_type": "a string in quotes", "int_type": "a whole number", "int_parsing": "a whole number",
    "int_from_float": "a whole number", "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false", "list_type": "a list",
    "dict_type": "a table", "model_type": "a table", "model_attributes_type": "a table",
    "finite_number": "a finite number",
}
"""What a pydantic error type asked for, as a person would say it."""


def toml_syntax_problem(error: tomllib.TOMLDecodeError, text: str, source: str | Path) -> tuple[str, str]:
    """A TOML syntax error as (message, hint): the file, line and column, and the line's text."""
    message = str(error)
    # Python 3.11's tomllib puts the position only in the message, as "(at line L, column C)".
    where = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if where is None:
        return f"{source}: TOML syntax error: {message}", "fix the TOML syntax"
    line, column = int(where.group(1)), int(where.group(2))
    lines = text.splitlines()
    shown = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    return (f"{source}:{line}:{column}: TOML syntax error: {message[: where.start()].strip()}",
            f"fix line {line}: {shown!r} (strings need quotes, tables need [name])")


def describe(problem: ErrorDetails, example: str,
             allowed_keys: Callable[[tuple[int | str, ...]], list[str]]) -> tuple[str, str]:
    """What is wrong and what to write instead, for one pydantic error.

    `example` is what to suggest for the key ("" when there is none); `allowed_keys` lists the keys of
    the table at a location, asked only for an unknown key.
    """
    loc, kind, ctx = problem["loc"], problem["type"], problem.get("ctx") or {}
    given = f", got {show(problem.get('input'))}"
    if kind == "extra_forbidden":
        allowed = allowed_keys(loc[:-1])
        return (f"unknown key{did_you_mean(str(loc[-1]), allowed)}",
                f"one of: {', '.join(allowed)}" if allowed else "no such key")
    if kind == "invalid_table":  # a check across a table's keys says itself what is wrong and what to write
        return str(ctx.get("what")), str(ctx.get("fix"))
    if kind == "missing":
        return "is required", example or "a value for it"
    if kind in ("greater_than", "greater_than_equal"):
        bound = f"greater than {ctx.get('gt'):g}" if kind == "greater_than" else f"at least {ctx.get('ge'):g}"
        return f"must be {bound}{given}", example or "a larger value"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}{given}", example or "one of the allowed values"
    if kind == "value_error":  # a validator's own words (e.g. a hook's matcher on an event without a tool)
        return str(ctx.get("error") or problem["msg"]), example or "a valid value"
    return f"expected {EXPECTED.get(kind, 'a different value')}{given}", example or "a valid value"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean `x`?)` for the closest choice, or nothing when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


def show(value: object) -> str:
    """A value's repr, cut to 60 characters so one bad value cannot flood the message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def unwrap_optional(annotation: Any) -> Any:
    """`X | None` → X; anything else unchanged."""
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        return next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    return annotation
