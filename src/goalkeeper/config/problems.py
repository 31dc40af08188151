"""config.toml's problems in words a person can act on: which file, which key, what to write instead.

Turns TOML and pydantic errors into one ConfigError; never reads files itself.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from goalkeeper.config.schema import EXAMPLES, ConfigFile
from goalkeeper.errors import ConfigError


def syntax_error(error: tomllib.TOMLDecodeError, text: str, source: Path) -> ConfigError:
    """A TOML syntax error with the file, line and the line's text."""
    message = str(error)
    # Python 3.11's tomllib puts the position only in the message, as "(at line L, column C)".
    where = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if where is None:
        return ConfigError(f"{source}: TOML syntax error: {message}", "fix the TOML syntax")
    line, column = int(where.group(1)), int(where.group(2))
    lines = text.splitlines()
    shown = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    return ConfigError(f"{source}:{line}:{column}: TOML syntax error: {message[: where.start()].strip()}",
                       f"fix line {line}: {shown!r} (strings need quotes, tables need [name])")


def validation_error(error: ValidationError, source: Path) -> ConfigError:
    """Every problem pydantic found, one line each: `<file>: <key>: <what is wrong>; write <what instead>`."""
    lines = []
    for problem in error.errors():
        what, fix = _describe(problem)
        lines.append(f"{source}: {dotted_key(problem['loc']) or '(top level)'}: {what}; write {fix}")
    return ConfigError("\n".join(lines))


def dotted_key(loc: tuple[int | str, ...]) -> str:
    """A location as a person would write it in TOML: model_pricing."gpt-4.1".input."""
    return ".".join(str(part) if re.fullmatch(r"[A-Za-z0-9_]+", str(part)) else f'"{part}"' for part in loc)


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    """` (did you mean `x`?)` for the closest choice, or nothing when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


_EXPECTED = {
    "string_type": "a string in quotes", "int_type": "a whole number", "int_parsing": "a whole number",
    "int_from_float": "a whole number", "float_type": "a number", "float_parsing": "a number",
    "dict_type": "a table", "model_type": "a table", "model_attributes_type": "a table",
    "finite_number": "a finite number",
}


def _describe(problem: ErrorDetails) -> tuple[str, str]:
    """What is wrong and what to write instead, for one pydantic error."""
    loc, kind, ctx = problem["loc"], problem["type"], problem.get("ctx") or {}
    named = [part for part in loc if isinstance(part, str)]
    example = EXAMPLES.get(named[-1], "") if named else ""
    given = f", got {_show(problem.get('input'))}"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return f"unknown key{did_you_mean(str(loc[-1]), allowed)}", f"one of: {', '.join(allowed)}"
    if kind == "missing":
        return "is required", example or "a value for it"
    if kind in ("greater_than", "greater_than_equal"):
        bound = f"greater than {ctx.get('gt'):g}" if kind == "greater_than" else f"at least {ctx.get('ge'):g}"
        return f"must be {bound}{given}", example or "a larger value"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}{given}", example or "one of the allowed values"
    return f"expected {_EXPECTED.get(kind, 'a different value')}{given}", example or "a valid value"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys of the table at `loc`, found by walking ConfigFile's field types (dict values included)."""
    kind: Any = ConfigFile
    for part in loc:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(str(part))
            kind = _unwrap(field.annotation) if field is not None else None
        elif typing.get_origin(kind) is dict:
            kind = _unwrap(typing.get_args(kind)[1])
        elif typing.get_origin(kind) in (list, tuple):  # [[rules]]: the index leads into the item's table
            kind = _unwrap(typing.get_args(kind)[0])
        else:
            return []
    return list(kind.model_fields) if isinstance(kind, type) and issubclass(kind, BaseModel) else []


def _unwrap(annotation: Any) -> Any:
    """`X | None` → X; anything else unchanged."""
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        return next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    return annotation
