"""config.toml's problems in words a person can act on: which file, which key, what to write instead.

Turns TOML and pydantic errors into one ConfigError; never reads files itself.
"""

from __future__ import annotations

import re
import tomllib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from goalkeeper.config.schema import EXAMPLES, REPLACED_KEYS, ConfigFile
from goalkeeper.config.toml_problems import describe, did_you_mean, toml_syntax_problem, unwrap_optional
from goalkeeper.errors import ConfigError

__all__ = ["did_you_mean", "dotted_key", "nesting_error", "syntax_error", "validation_error"]


def syntax_error(error: tomllib.TOMLDecodeError, text: str, source: str | Path) -> ConfigError:
    """A TOML syntax error with the file, line and the line's text."""
    return ConfigError(*toml_syntax_problem(error, text, source))


def nesting_error(source: str | Path) -> ConfigError:
    """TOML nested deeper than the parser can follow (it recurses once per level): no config needs that."""
    return ConfigError(f"{source}: TOML nested too deeply (arrays, tables or dotted keys inside each other "
                       "hundreds of levels down)", "fix the file: a config.toml nests a few levels at most")


def validation_error(error: ValidationError, source: str | Path) -> ConfigError:
    """Every problem pydantic found, one line each: `<file>: <key>: <what is wrong>; write <what instead>`."""
    lines = []
    for problem in error.errors():
        named = [part for part in problem["loc"] if isinstance(part, str)]
        if problem["type"] == "extra_forbidden" and named and named[-1] in REPLACED_KEYS:
            lines.append(f"{source}: {dotted_key(problem['loc'])}: this key was removed: {REPLACED_KEYS[named[-1]]}")
            continue
        # EXAMPLES is keyed by the field's own name, wherever the field sits.
        what, fix = describe(problem, EXAMPLES.get(named[-1], "") if named else "", _allowed_keys)
        lines.append(f"{source}: {dotted_key(problem['loc']) or '(top level)'}: {what}; write {fix}")
    return ConfigError("\n".join(lines))


def dotted_key(loc: tuple[int | str, ...]) -> str:
    """A location as a person would write it in TOML: model_pricing."gpt-4.1".input."""
    return ".".join(str(part) if re.fullmatch(r"[A-Za-z0-9_]+", str(part)) else f'"{part}"' for part in loc)


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys of the table at `loc`, found by walking ConfigFile's field types (dict values included)."""
    kind: Any = ConfigFile
    for part in loc:
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(str(part))
            kind = unwrap_optional(field.annotation) if field is not None else None
        elif typing.get_origin(kind) is dict:
            kind = unwrap_optional(typing.get_args(kind)[1])
        elif typing.get_origin(kind) in (list, tuple):  # [[rules]]: the index leads into the item's table
            kind = unwrap_optional(typing.get_args(kind)[0])
        else:
            return []
    return list(kind.model_fields) if isinstance(kind, type) and issubclass(kind, BaseModel) else []

