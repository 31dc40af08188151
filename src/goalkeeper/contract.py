"""The goal contract: what done means (DESIGN §1), its TOML form and its command-line form.

Pure data and parsing: it never runs a check (that is verify.py) and never prints.
"""

from __future__ import annotations

import difflib
import math
import re
import shlex
import tomllib
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Self

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from goalkeeper.errors import ContractError

Comparator = Literal["<", "<=", ">", ">=", "=="]
SandboxMode = Literal["read-only", "workspace-write", "danger-full-access"]

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_TARGET = re.compile(r"\s*(<=|>=|==|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*")
_JSON_STEP = re.compile(r"\[(-?\d+)\]|\.?([^.\[\]]+)")
_DURATION = re.compile(r"(?:\s*(?:\d+(?:\.\d*)?|\.\d+)\s*[dhms])+\s*", re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([dhms])", re.IGNORECASE)
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_EXAMPLES = '"90" or 90 (seconds), "90s", "10m", "2h", "1h30m", "1.5h", "2d"'

#: What to write for each TOML key, shown in every error about that key.
_EXAMPLES = {
    "outcome": 'outcome = "Make the test suite green"',
    "blocked_when": 'blocked_when = "the fix needs a schema change"',
    "checks": '[[checks]] tables, each with name = "tests" and run = "python -m pytest -q"',
    "checks.name": 'name = "tests" (letters, digits, `_`, `.`, `-`)',
    "checks.run": 'run = "python -m pytest -q"',
    "checks.timeout": 'timeout = "10m" (or a number of seconds)',
    "checks.metric": 'metric = { json_path = "p95_ms", target = "< 120" }',
    "checks.metric.regex": "regex = 'p95: ([0-9.]+)' (exactly one capture group)",
    "checks.metric.json_path": 'json_path = "stats.latency.p95"',
    "checks.metric.target": 'target = "< 120" (one of <, <=, >, >=, == and a number)',
    "constraints": '[constraints] with keep_green = ["ruff check ."]',
    "constraints.keep_green": 'keep_green = ["ruff check ."]',
    "boundaries": '[boundaries] with paths, protect, network and sandbox',
    "boundaries.paths": 'paths = ["src/**"]',
    "boundaries.protect": 'protect = ["tests/**"]',
    "boundaries.network": "network = false",
    "boundaries.sandbox": 'sandbox = "workspace-write" (or "read-only", "danger-full-access")',
    "iteration": '[iteration] with policy, max_attempts and no_progress_turns',
    "iteration.policy": 'policy = "smallest change first"',
    "iteration.max_attempts": "max_attempts = 3 (1 or more)",
    "iteration.no_progress_turns": "no_progress_turns = 5 (1 or more)",
    "budget": "[budget] with tokens, usd, time and turns",
    "budget.tokens": "tokens = 200000",
    "budget.usd": "usd = 5.0",
    "budget.time": 'time = "2h" (or a number of seconds)',
    "budget.turns": "turns = 40",
}


class _Invalid(ValueError):
    """A validator's complaint, kept in two parts so load_contract can say what is wrong and what to write."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what}; write {fix}")
        self.what = what
        self.fix = fix


# ---------------------------------------------------------------- small parsers


def parse_duration(text: str | int | float) -> float:
    """Seconds in `text`: a number of seconds, or units d/h/m/s such as "90s", "10m", "1h30m", "1.5h"."""
    if isinstance(text, bool):
        raise ContractError(f"not a duration: {text!r}", hint=f"write {_DURATION_EXAMPLES}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        try:
            seconds = float(text.strip())
        except ValueError:
            if not _DURATION.fullmatch(text):
                raise ContractError(f"not a duration: {text!r}", hint=f"write {_DURATION_EXAMPLES}") from None
            seconds = sum(float(n) * _UNIT_SECONDS[u.lower()] for n, u in _DURATION_PART.findall(text))
    if not math.isfinite(seconds) or seconds < 0:
        raise ContractError(f"not a duration: {text!r}", hint=f"write {_DURATION_EXAMPLES}")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form: "1h 30m", "12m", "45s", "2.5s". parse_duration reads whole seconds back exactly."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds >= 60:
        seconds = round(seconds)  # past a minute, fractions of a second are noise to a person
    whole = int(seconds)
    fraction = seconds - whole
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    if whole or fraction or not parts:
        parts.append(f"{whole + fraction:.3g}s")
    return " ".join(parts)


def _duration_or_invalid(value: object, key: str) -> object:
    """Lets a duration validator report through pydantic, which only collects ValueError."""
    if not isinstance(value, str | int | float):
        return value  # pydantic reports the wrong type itself
    try:
        return parse_duration(value)
    except ContractError as err:
        raise _Invalid(err.message, _EXAMPLES[key]) from None


def _parse_target(target: str) -> tuple[Comparator, float]:
    match = _TARGET.fullmatch(target)
    if match is None:
        raise _Invalid(f"{target!r} is not a target", _EXAMPLES["checks.metric.target"])
    op = typing.cast(Comparator, match.group(1))
    return op, float(match.group(2))


def _check_regex(regex: str) -> None:
    try:
        groups = re.compile(regex).groups
    except re.error as err:
        raise _Invalid(f"{regex!r} is not a valid regex ({err})", _EXAMPLES["checks.metric.regex"]) from None
    if groups != 1:
        raise _Invalid(
            f"{regex!r} has {groups} capture groups, a metric needs exactly one (use (?:...) for others)",
            _EXAMPLES["checks.metric.regex"],
        )


def json_path_steps(path: str) -> list[str | int]:
    """The keys and indexes of a JSON path: "$.results[0].ms" -> ["results", 0, "ms"]. Bad: ValueError."""
    rest = path.strip().removeprefix("$").removeprefix(".")
    steps: list[str | int] = []
    position = 0
    while position < len(rest):
        match = _JSON_STEP.match(rest, position)
        if match is None or (match.group(2) is not None and position and rest[position] != "."):
            raise _Invalid(f"{path!r} is not a JSON path", _EXAMPLES["checks.metric.json_path"])
        steps.append(int(match.group(1)) if match.group(1) is not None else match.group(2).strip())
        position = match.end()
    if not steps:
        raise _Invalid(f"{path!r} is an empty JSON path", _EXAMPLES["checks.metric.json_path"])
    return steps


# ---------------------------------------------------------------- the model


class _Strict(BaseModel):
    """Base of every contract table: unknown keys are errors, and fields may be given by name or TOML key."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)


class Metric(_Strict):
    """A number read from a check's output and compared with a target."""

    regex: str | None = None
    """A regex with exactly one capture group; the first match's group is the value."""
    json_path: str | None = None
    """A path into JSON printed by the check: "p95", "stats.latency.p95" or "$.results[0].ms"."""
    target: str
    """The target as written: a comparator and a number, e.g. "< 120" or ">= 0.8"."""

    @field_validator("regex")
    @classmethod
    def _regex_has_one_group(cls, regex: str | None) -> str | None:
        if regex is not None:
            _check_regex(regex)
        return regex

    @field_validator("json_path")
    @classmethod
    def _json_path_parses(cls, path: str | None) -> str | None:
        if path is not None:
            json_path_steps(path)
        return path

    @field_validator("target")
    @classmethod
    def _target_parses(cls, target: str) -> str:
        _parse_target(target)
        return target

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.regex is None) == (self.json_path is None):
            raise _Invalid("give exactly one of `regex` and `json_path`", _EXAMPLES["checks.metric"])
        return self

    @property
    def op(self) -> Comparator:
        """The comparator of the target."""
        return _parse_target(self.target)[0]

    @property
    def value(self) -> float:
        """The number of the target."""
        return _parse_target(self.target)[1]

    @property
    def lower_is_better(self) -> bool:
        """True for < and <=. False for > and >=, and for ==, which has no direction (closer is better)."""
        return self.op in ("<", "<=")

    def met(self, value: float) -> bool:
        """Whether `value` meets the target. == allows only floating-point rounding."""
        op, target = _parse_target(self.target)
        if op == "==":
            return math.isclose(value, target, rel_tol=1e-9, abs_tol=1e-12)
        return {"<": value < target, "<=": value <= target, ">": value > target, ">=": value >= target}[op]

    def better(self, a: float, b: float) -> bool:
        """Whether `a` is strictly better than `b`: lower, higher, or for == closer to the target."""
        op, target = _parse_target(self.target)
        if op == "==":
            return abs(a - target) < abs(b - target)
        return a < b if self.lower_is_better else a > b


class Check(_Strict):
    """A command the harness runs to verify the goal."""

    name: str
    """A short unique name: letters, digits, `_`, `.`, `-`."""
    run: str
    """The shell command, run in the workspace."""
    timeout_s: float = Field(600.0, alias="timeout", gt=0)
    """Seconds the check may run before its process group is killed; `timeout = "10m"` in TOML."""
    metric: Metric | None = None
    """When set, the check passes only if the metric is read and meets its target (and it exits 0)."""

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise _Invalid(f"{name!r} is not a check name", _EXAMPLES["checks.name"])
        return name

    @field_validator("run")
    @classmethod
    def _run_not_blank(cls, run: str) -> str:
        if not run.strip():
            raise _Invalid("is empty", _EXAMPLES["checks.run"])
        return run

    @field_validator("timeout_s", mode="before")
    @classmethod
    def _timeout_duration(cls, value: object) -> object:
        return _duration_or_invalid(value, "checks.timeout")


class Constraints(_Strict):
    """What must not regress while pursuing the goal."""

    keep_green: list[str] = []
    """Commands that must stay green (exit 0) if they were green at baseline."""


class Boundaries(_Strict):
    """Where the agent may act."""

    paths: list[str] = []
    """Globs that may be changed; empty means anything not protected."""
    protect: list[str] = []
    """Globs that may never be changed."""
    network: bool = False
    """Whether commands may reach the network."""
    sandbox: SandboxMode = "workspace-write"
    """The sandbox mode commands run under."""


class IterationPolicy(_Strict):
    """How the model should choose its next step, and when to give up."""

    policy: str = ""
    """A free-text note to the model on choosing the next step."""
    max_attempts: int = Field(3, ge=1)
    """Failed completion attempts allowed per failing check."""
    no_progress_turns: int = Field(5, ge=1)
    """Turns without progress before a nudge (and then unmet)."""


class Budget(_Strict):
    """Limits on spending; each one is optional."""

    tokens: int | None = Field(None, gt=0)
    """Tokens: non-cached input plus output."""
    usd: float | None = Field(None, gt=0)
    """US dollars, priced from the pricing table."""
    time_s: float | None = Field(None, alias="time", gt=0)
    """Wall-clock seconds; `time = "2h"` in TOML (a number of seconds works too)."""
    turns: int | None = Field(None, gt=0)
    """Model turns."""

    @field_validator("time_s", mode="before")
    @classmethod
    def _time_duration(cls, value: object) -> object:
        return _duration_or_invalid(value, "budget.time")


class Contract(_Strict):
    """What done means: an outcome, the checks that prove it, and the limits to pursue it within."""

    outcome: str
    """The objective, in words."""
    checks: list[Check] = []
    """The verification surface; names are unique."""
    constraints: Constraints = Field(default_factory=Constraints)
    """Commands that must not regress."""
    boundaries: Boundaries = Field(default_factory=Boundaries)
    """Paths, network and sandbox limits."""
    iteration: IterationPolicy = Field(default_factory=IterationPolicy)
    """How to choose the next step, and attempt limits."""
    blocked_when: str = ""
    """When to stop and report instead of guessing."""
    budget: Budget = Field(default_factory=Budget)
    """Tokens, dollars, time and turns."""

    @field_validator("outcome")
    @classmethod
    def _outcome_not_blank(cls, outcome: str) -> str:
        if not outcome.strip():
            raise _Invalid("is empty", _EXAMPLES["outcome"])
        return outcome

    @field_validator("checks")
    @classmethod
    def _names_unique(cls, checks: list[Check]) -> list[Check]:
        names = [check.name for check in checks]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            shown = ", ".join(f"`{name}`" for name in twice)
            raise _Invalid(f"check names must be unique, {shown} is used twice", "a distinct name per check")
        return checks

    @property
    def verified(self) -> bool:
        """True when at least one check can prove the goal; a goal with none is "unverified"."""
        return bool(self.checks)

    @property
    def metric_checks(self) -> list[Check]:
        """The checks that read a metric."""
        return [check for check in self.checks if check.metric is not None]


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


# ---------------------------------------------------------------- flags in


def contract_from_flags(
    objective: str | None,
    *,
    base: Contract | None = None,
    checks: Sequence[str] = (),
    metrics: Sequence[str] = (),
    targets: Sequence[str] = (),
    regexes: Sequence[str] = (),
    json_paths: Sequence[str] = (),
    keep_green: Sequence[str] = (),
    protect: Sequence[str] = (),
    paths: Sequence[str] = (),
    budget_tokens: int | None = None,
    budget_usd: float | None = None,
    budget_time: str | None = None,
    budget_turns: int | None = None,
    max_attempts: int | None = None,
    no_progress_turns: int | None = None,
) -> Contract:
    """A contract from command-line flags, laid over `base` (from --file) when given.

    The objective replaces the outcome, checks and lists are appended, scalar flags replace. A check
    whose command itself starts with `VAR=...` needs an explicit name: `--check tests="CI=1 pytest"`.
    """
    if objective is None and base is None:
        raise ContractError("no objective given",
                            hint='write gk goal "make the tests pass", or pass a goal file: --file goal.toml')
    if objective is not None and not objective.strip():
        raise ContractError("the objective is empty", hint='write gk goal "make the tests pass"')
    data: dict[str, Any] = base.model_dump() if base is not None else {"outcome": objective}
    if objective is not None:
        data["outcome"] = objective
    taken = [check["name"] for check in data.get("checks", [])]
    data["checks"] = [
        *data.get("checks", []),
        *(_check_from_flag(text, taken) for text in checks or ()),
        *_metric_checks(metrics or (), targets or (), regexes or (), json_paths or (), taken),
    ]
    for table, key, extra in (("constraints", "keep_green", keep_green), ("boundaries", "protect", protect),
                              ("boundaries", "paths", paths)):
        section = data.setdefault(table, {})
        section[key] = list(dict.fromkeys([*section.get(key, []), *(extra or ())]))
    _overlay_numbers(data, {
        ("budget", "tokens", "--budget-tokens 200000"): budget_tokens,
        ("budget", "usd", "--budget-usd 5"): budget_usd,
        ("budget", "turns", "--budget-turns 40"): budget_turns,
        ("iteration", "max_attempts", "--max-attempts 3"): max_attempts,
        ("iteration", "no_progress_turns", "--no-progress-turns 5"): no_progress_turns,
    })
    if budget_time is not None:
        try:
            data.setdefault("budget", {})["time_s"] = parse_duration(budget_time)
        except ContractError:
            raise ContractError(f"--budget-time: not a duration: {budget_time!r}",
                                hint="write --budget-time 2h (or 90m, 1h30m, 3600)") from None
    try:
        return Contract.model_validate(data)
    except ValidationError as err:
        raise ContractError("\n".join(_problems(err, "command line"))) from None


def _overlay_numbers(data: dict[str, Any], flags: dict[tuple[str, str, str], float | None]) -> None:
    """Scalar flags replace what the base said; each must be positive."""
    for (table, key, example), value in flags.items():
        if value is None:
            continue
        if isinstance(value, bool) or value <= 0:
            flag = example.split()[0]
            raise ContractError(f"{flag} must be a positive number, got {value!r}", hint=f"write {example}")
        data.setdefault(table, {})[key] = value


def _named(flag: str, text: str, example: str) -> tuple[str, str]:
    """Split `NAME=VALUE`; anything else is an error naming the flag."""
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)=(.*)", text, re.DOTALL)
    if match is None or not match.group(2).strip():
        raise ContractError(f"{flag} {text!r}: expected NAME=VALUE", hint=f"write {flag} {example}")
    return match.group(1), match.group(2)


def _check_from_flag(text: str, taken: list[str]) -> dict[str, Any]:
    if re.match(r"[A-Za-z0-9_.-]+=", text):
        name, command = _named("--check", text, "tests='python -m pytest -q'")
        if name in taken:
            raise ContractError(f"--check {text!r}: a check named `{name}` already exists",
                                hint=f"write --check {name}-2={shlex.quote(command)}")
    else:
        command = text
        name = _unique(_name_from_command(command), taken)
    if not command.strip():
        raise ContractError("--check '': the command is empty", hint="write --check 'python -m pytest -q'")
    taken.append(name)
    return {"name": name, "run": command}


def _name_from_command(command: str) -> str:
    """"pytest -q" -> "pytest"; "./scripts/test.sh --fast" -> "test.sh"."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    name = "".join(_NAME.findall(Path(words[0]).name)) if words else ""
    return name or "check"


def _unique(name: str, taken: list[str]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}-{number}", number + 1
    return candidate


def _metric_checks(metrics: Sequence[str], targets: Sequence[str], regexes: Sequence[str],
                   json_paths: Sequence[str], taken: list[str]) -> list[dict[str, Any]]:
    """--metric NAME=CMD with its --target and its --regex or --json-path, as check tables."""
    commands = dict(_named("--metric", text, "p95='python bench.py'") for text in metrics)
    sources: dict[str, dict[str, str]] = {name: {} for name in commands}
    for flag, key, texts, example in (("--regex", "regex", regexes, "'p95=p95: ([0-9.]+)'"),
                                      ("--json-path", "json_path", json_paths, "p95=p95_ms")):
        for text in texts:
            name, value = _named(flag, text, example)
            _known(flag, name, sources)
            if sources[name]:
                raise ContractError(f"{flag} {text!r}: metric `{name}` already has a regex or json path",
                                    hint="give each metric one --regex or one --json-path")
            sources[name][key] = value
    for text in targets:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*(<=|>=|==|<|>)\s*(.*?)\s*", text)
        if match is None:
            raise ContractError(f"--target {text!r}: expected NAME, a comparator and a number",
                                hint="write --target 'p95<120' (comparators: < <= > >= ==)")
        name, target = match.group(1), f"{match.group(2)} {match.group(3)}"
        _known("--target", name, sources)
        if "target" in sources[name]:
            raise ContractError(f"--target {text!r}: metric `{name}` already has a target",
                                hint="give each metric one --target")
        sources[name]["target"] = target
    return [_metric_check(name, command, sources[name], taken) for name, command in commands.items()]


def _known(flag: str, name: str, sources: dict[str, dict[str, str]]) -> None:
    if name not in sources:
        known = ", ".join(sources) or "none"
        raise ContractError(f"{flag} names `{name}`, which is not a --metric (metrics: {known})",
                            hint=f"add --metric {name}='python bench.py', or fix the name in {flag}")


def _metric_check(name: str, command: str, source: dict[str, str], taken: list[str]) -> dict[str, Any]:
    if "target" not in source:
        raise ContractError(f"--metric {name} has no target", hint=f"add --target '{name}<120'")
    if "regex" not in source and "json_path" not in source:
        raise ContractError(f"--metric {name} says nothing about where to read the value",
                            hint=f"add --json-path {name}=p95_ms or --regex '{name}=p95: ([0-9.]+)'")
    if name in taken:
        raise ContractError(f"--metric {name}: a check named `{name}` already exists",
                            hint=f"write --metric {name}-2=... with --target '{name}-2<120'")
    try:
        metric = Metric.model_validate(source)
    except ValidationError as err:
        first = err.errors()[0]
        flag, example = {
            "regex": ("--regex", f"--regex '{name}=p95: ([0-9.]+)'"),
            "json_path": ("--json-path", f"--json-path {name}=stats.p95"),
        }.get(str(first["loc"][0]) if first["loc"] else "", ("--target", f"--target '{name}<120'"))
        raise ContractError(f"{flag} for metric {name}: {_describe(first)[0]}",
                            hint=f"write {example}") from None
    taken.append(name)
    return {"name": name, "run": command, "metric": metric}


# ---------------------------------------------------------------- display


def contract_summary_lines(contract: Contract) -> list[str]:
    """A few short lines for a person: outcome, checks, keep_green, boundaries, budget."""
    lines = [f"goal: {contract.outcome.strip().splitlines()[0]}"]
    if not contract.checks:
        lines.append("checks: none (unverified goal: only a completion audit can end it)")
    for check in contract.checks:
        target = ""
        if check.metric is not None:
            target = f" -> {check.metric.json_path or check.metric.regex} {check.metric.target}"
        lines.append(f"check {check.name}: {check.run}{target}")
    if contract.constraints.keep_green:
        lines.append("keep green: " + ", ".join(contract.constraints.keep_green))
    limits = contract.boundaries
    where = [f"may change {', '.join(limits.paths)}"] if limits.paths else []
    where += [f"protected {', '.join(limits.protect)}"] if limits.protect else []
    where += [f"network {'on' if limits.network else 'off'}", f"sandbox {limits.sandbox}"]
    lines.append("boundaries: " + "; ".join(where))
    budget = contract.budget
    spend = [f"{budget.tokens:,} tokens"] if budget.tokens else []
    spend += [f"${budget.usd:.2f}"] if budget.usd else []
    spend += [format_duration(budget.time_s)] if budget.time_s else []
    spend += [f"{budget.turns} turns"] if budget.turns else []
    lines.append("budget: " + (", ".join(spend) or "none"))
    return lines
