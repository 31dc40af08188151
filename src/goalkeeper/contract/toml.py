"""The contract's TOML form: goal.toml in and out, and pydantic's errors in words a person can act on.

Never runs a check and never prints; every problem becomes one ContractError that says what to write.
"""

from __future__ import annotations

import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from goalkeeper.config.toml_problems import describe, toml_syntax_problem
from goalkeeper.core.figures import format_duration
from goalkeeper.errors import ContractError
from goalkeeper.spec.contract import _EXAMPLES, Contract, _Invalid

# ---------------------------------------------------------------- TOML in


def load_contract(path: Path) -> Contract:
    """Read and validate a goal file; every problem becomes one ContractError that says what to write."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContractError(
            f"goal file not found: {path}",
            hint='create it with at least `outcome = "..."`, or pass the right path with --file',
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ContractError(f"cannot read goal file {path}: {err}", hint="pass a readable UTF-8 file") \
            from None
    return parse_contract(text, source=str(path))


def parse_contract(text: str, source: str = "goal.toml") -> Contract:
    """Validate goal TOML held in memory; `source` names it in error messages."""
    try:
        return _validated(text, source)
    except RecursionError:  # tomllib recurses per nested array or inline table, repr per nested table
        raise ContractError(f"{source}: TOML nested too deeply (arrays, tables or dotted keys inside each other "
                            "hundreds of levels down)", hint="fix the file: a goal.toml nests a few levels at most"
                            ) from None


def _validated(text: str, source: str) -> Contract:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ContractError(*toml_syntax_problem(err, text, source)) from None
    try:
        return Contract.model_validate(data)
    except ValidationError as err:
        raise ContractError("\n".join(_problems(err, source))) from None


def _problems(err: ValidationError, source: str) -> list[str]:
    """pydantic's errors in our words: `<file>: <key>: <what is wrong>; write <what instead>`."""
    lines = []
    for error in err.errors():
        loc = error["loc"]
        key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
        what, fix = _describe(error)
        lines.append(f"{source}: {key or '(top level)'}: {what}; write {fix}")
    return lines


def _describe(error: ErrorDetails) -> tuple[str, str]:
    """What is wrong and what to write instead, for one pydantic error."""
    ctx = error.get("ctx") or {}
    if isinstance(ctx.get("error"), _Invalid):  # our own validators already said it in our words
        return ctx["error"].what, ctx["error"].fix
    example = _EXAMPLES.get(".".join(str(part) for part in error["loc"] if isinstance(part, str)), "")
    return describe(error, example, _allowed_keys)


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The TOML keys of the table at `loc`, found by walking the model's field types."""
    model: type[BaseModel] | None = Contract
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        model = _table_type(field.annotation) if field is not None else None
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _table_type(annotation: Any) -> type[BaseModel] | None:
    """The table model inside `X`, `X | None` or `list[X]`; None when the field holds no table."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, types.UnionType, typing.Union):
        return next(filter(None, map(_table_type, typing.get_args(annotation))), None)
    return None


# ---------------------------------------------------------------- TOML out


def dump_contract(contract: Contract) -> str:
    """The contract as goal.toml text, defaults left out; load_contract reads it back equal."""
    data = contract.model_dump(by_alias=True, exclude_defaults=True)
    # Top-level keys come before any table in TOML: the strings and the arrays (artifacts last, as [[artifacts]]).
    head = {key: value for key, value in data.items() if isinstance(value, str) or key in _ARRAYS}
    chunks = [tomli_w.dumps(head)]
    for check in data.get("checks", []):
        metric = check.pop("metric", None)
        if "timeout" in check:
            check["timeout"] = _dump_duration(check["timeout"])
        body = tomli_w.dumps(check)
        if metric:
            inline = ", ".join(tomli_w.dumps({key: value}).strip() for key, value in metric.items())
            body += f"metric = {{ {inline} }}\n"
        chunks.append(f"[[checks]]\n{body}")
    if "time" in data.get("budget", {}):
        data["budget"]["time"] = _dump_duration(data["budget"]["time"])
    tables: dict[str, Any] = {key: data[key] for key in _TABLES if key in data}
    if tables:
        chunks.append(tomli_w.dumps(tables))
    return "\n".join(chunk for chunk in chunks if chunk)


_ARRAYS = ("checklist", "non_goals", "read_first", "artifacts")
_TABLES = ("constraints", "boundaries", "iteration", "budget", "verify", "review")


def _dump_duration(seconds: float) -> str | float:
    # Whole seconds below 2**53 survive the unit arithmetic exactly; anything else is written as a number.
    return format_duration(seconds) if seconds.is_integer() and seconds < 2**53 else seconds

