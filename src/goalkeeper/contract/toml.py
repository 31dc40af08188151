"""The contract's TOML form: goal.toml in and out, and pydantic's errors in words a person can act on.

Never runs a check and never prints; every problem becomes one ContractError that says what to write.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from goalkeeper.contract.model import _EXAMPLES, Contract, _Invalid, format_duration
from goalkeeper.errors import ContractError

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
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise _syntax_error(err, text, source) from None
    try:
        return Contract.model_validate(data)
    except ValidationError as err:
        raise ContractError("\n".join(_problems(err, source))) from None


def _syntax_error(err: tomllib.TOMLDecodeError, text: str, source: str) -> ContractError:
    # Python 3.11's tomllib puts the position only in the message, as "(at line L, column C)".
    message = str(err)
    where = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if where is None:
        return ContractError(f"{source}: TOML syntax error: {message}", hint="fix the TOML syntax")
    line, column = int(where.group(1)), int(where.group(2))
    reason = message[: where.start()].strip()
    lines = text.splitlines()
    shown = lines[line - 1] if 0 < line <= len(lines) else ""
    return ContractError(
        f"{source}:{line}:{column}: TOML syntax error: {reason}",
        hint=f"fix line {line}: {shown.strip()!r} (strings need quotes, tables need [name])",
    )


def _problems(err: ValidationError, source: str) -> list[str]:
    """pydantic's errors in our words: `<file>: <key>: <what is wrong>; write <what instead>`."""
    lines = []
    for error in err.errors():
        loc = error["loc"]
        key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
        what, fix = _describe(error)
        lines.append(f"{source}: {key or '(top level)'}: {what}; write {fix}")
    return lines


_EXPECTED = {
    "string_type": "a string", "int_type": "a whole number", "int_parsing": "a whole number",
    "int_from_float": "a whole number", "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false", "list_type": "a list",
    "model_type": "a table", "model_attributes_type": "a table", "dict_type": "a table",
    "finite_number": "a finite number",
}


def _describe(error: ErrorDetails) -> tuple[str, str]:
    """What is wrong and what to write instead, for one pydantic error."""
    loc = error["loc"]
    kind: str = error["type"]
    ctx = error.get("ctx") or {}
    example = _EXAMPLES.get(".".join(str(part) for part in loc if isinstance(part, str)), "")
    given = f", got {_show(error.get('input'))}"
    if isinstance(ctx.get("error"), _Invalid):
        return ctx["error"].what, ctx["error"].fix
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        guess = f" (did you mean `{close[0]}`?)" if close else ""
        return f"unknown key{guess}", f"one of: {', '.join(allowed)}" if allowed else "no such key"
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
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, types.UnionType, typing.Union):
        return next(filter(None, map(_table_type, typing.get_args(annotation))), None)
    return None


# ---------------------------------------------------------------- TOML out


def dump_contract(contract: Contract) -> str:
    """The contract as goal.toml text, defaults left out; load_contract reads it back equal."""
    data = contract.model_dump(by_alias=True, exclude_defaults=True)
    head = {key: value for key, value in data.items() if isinstance(value, str)}
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


_TABLES = ("constraints", "boundaries", "iteration", "budget")


def _dump_duration(seconds: float) -> str | float:
    # Whole seconds below 2**53 survive the unit arithmetic exactly; anything else is written as a number.
    return format_duration(seconds) if seconds.is_integer() and seconds < 2**53 else seconds

