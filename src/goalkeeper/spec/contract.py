"""The contract's data: pydantic models of what done means (DESIGN §1), durations and metric targets.

Pure data and parsing: it never runs a check (that is verify/checks.py), never reads a file and never prints.
"""

from __future__ import annotations

import math
import re
import typing
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
    "checklist": 'checklist = ["reproduce the bug", "fix cart.py"] (each item a non-empty string)',
    "non_goals": 'non_goals = ["no new dependencies", "leave the public API alone"] (each a non-empty string)',
    "read_first": 'read_first = ["docs/ARCHITECTURE.md", "src/billing/*.py"] (repository paths or globs)',
    "artifacts": 'artifacts = ["docs/MIGRATION.md", { path = "migrations/*.sql", min = 3 }]',
    "artifacts.path": 'path = "docs/MIGRATION.md" (a repository path or glob, no `..`)',
    "reviewer_notes": 'reviewer_notes = "check the rounding in cart.py by hand"',
    "review": '[review] with pause_after, pause_on_paths and model_may_pause',
    "review.pause_after": 'pause_after = "checkpoint" (or "turn", or a number of checkpoints such as 3)',
    "review.pause_on_paths": 'pause_on_paths = ["services/**"]',
    "review.model_may_pause": "model_may_pause = true",
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
    """A regex with exactly one capture group; the last match's group is the value (the final figure printed)."""
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
        return _runnable(run, "checks.run")

    @field_validator("timeout_s", mode="before")
    @classmethod
    def _timeout_duration(cls, value: object) -> object:
        return _duration_or_invalid(value, "checks.timeout")


class Constraints(_Strict):
    """What must not regress while pursuing the goal."""

    keep_green: list[str] = []
    """Commands that must stay green (exit 0) if they were green at baseline."""

    @field_validator("keep_green")
    @classmethod
    def _commands_runnable(cls, commands: list[str]) -> list[str]:
        return [_runnable(command, "constraints.keep_green") for command in commands]


def _runnable(command: str, field: str) -> str:
    """A command a shell can be given: no NUL byte (no argv or script can carry one; it would fail later)."""
    if "\0" in command:
        raise _Invalid(f"{command.split(chr(0))[0][:60]!r}… contains a NUL byte (\\0), which no command can "
                       "carry", _EXAMPLES[field])
    return command


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
    max_file_mb: float = Field(50, gt=0)
    """A changed file larger than this (in MiB) is not committed by a checkpoint; the model is told."""

    @property
    def max_file_bytes(self) -> int:
        """`max_file_mb` in bytes."""
        return int(self.max_file_mb * 1024 * 1024)


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


class VerifyPolicy(_Strict):
    """How the harness guards the files that define the verification surface (tests, configs, benchmarks)."""

    pins: list[str] = []
    """Globs pinned on top of the inferred test files, test configs and paths named in checks."""
    edits: Literal["review", "deny", "allow"] = "review"
    """review: edits allowed, but completion is re-verified with pinned files restored; deny: pinned files
    are read-only; allow: no guard, the report lists the changes."""


class Artifact(_Strict):
    """A file the goal promises to leave behind: a path, or a glob that must match at least `min` files."""

    path: str
    """A repository path or glob (`docs/MIGRATION.md`, `migrations/*.sql`, `reports/**/*.md`)."""
    min: int = Field(1, ge=1)
    """How many files the glob must match."""

    @field_validator("path")
    @classmethod
    def _path_in_repository(cls, path: str) -> str:
        parts = path.strip().replace("\\", "/").split("/")
        if not path.strip() or path.strip().startswith("/") or ".." in parts or "\0" in path:
            raise _Invalid(f"{path!r} is not a path inside the repository", _EXAMPLES["artifacts.path"])
        return path.strip()


def _non_blank_items(items: list[str], key: str) -> list[str]:
    blank = [number for number, item in enumerate(items, 1) if not item.strip()]
    if blank:
        raise _Invalid(f"item {blank[0]} is empty", _EXAMPLES[key])
    return items


class Review(_Strict):
    """Review points: where the harness pauses the goal for a person, and whether the model may ask for one."""

    pause_after: Literal["checkpoint", "turn"] | int | None = None
    """Pause after every checkpoint commit, after every turn, or after every N checkpoint commits."""
    pause_on_paths: list[str] = []
    """Pause after a checkpoint commit whose changes touch one of these globs."""
    model_may_pause: bool = False
    """Whether the model may pause the goal for review (`update_goal` with status "paused")."""

    @field_validator("pause_after", mode="before")
    @classmethod
    def _positive(cls, value: object) -> object:
        if isinstance(value, bool | float) or (isinstance(value, int) and value < 1):
            raise _Invalid(f"{value!r} is not a number of checkpoints", _EXAMPLES["review.pause_after"])
        return value

    @property
    def active(self) -> bool:
        """Whether the harness ever pauses the goal by itself."""
        return self.pause_after is not None or bool(self.pause_on_paths)


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
    verify: VerifyPolicy = Field(default_factory=VerifyPolicy)
    """Tamper-evidence for the verification surface."""
    checklist: tuple[str, ...] = ()
    """Ordered steps to work through (usually an adopted plan's); they guide the work, the checks still judge it."""
    non_goals: list[str] = []
    """What the goal must not do or attempt, told to the model with the contract."""
    read_first: list[str] = []
    """Repository paths or globs whose text the model is shown when the goal starts (from its starting commit,
    within a share of the context window)."""
    artifacts: list[Artifact] = []
    """Files that must exist at the end: checked by the harness with the checks; a missing one is a failure."""
    reviewer_notes: str = ""
    """Notes for the person reviewing the result: in the report, never shown to the model."""
    review: Review = Field(default_factory=Review)
    """Review points: where the goal pauses for a person."""

    @field_validator("outcome")
    @classmethod
    def _outcome_not_blank(cls, outcome: str) -> str:
        if not outcome.strip():
            raise _Invalid("is empty", _EXAMPLES["outcome"])
        return outcome

    @field_validator("checklist")
    @classmethod
    def _items_not_blank(cls, checklist: tuple[str, ...]) -> tuple[str, ...]:
        blank = [number for number, item in enumerate(checklist, 1) if not item.strip()]
        if blank:
            raise _Invalid(f"item {blank[0]} is empty", _EXAMPLES["checklist"])
        return checklist

    @field_validator("non_goals")
    @classmethod
    def _non_goals_not_blank(cls, non_goals: list[str]) -> list[str]:
        return _non_blank_items(non_goals, "non_goals")

    @field_validator("read_first")
    @classmethod
    def _read_first_in_repository(cls, paths: list[str]) -> list[str]:
        for path in _non_blank_items(paths, "read_first"):
            Artifact(path=path)  # the same rule: a repository path or glob
        return [path.strip() for path in paths]

    @field_validator("artifacts", mode="before")
    @classmethod
    def _bare_paths(cls, artifacts: object) -> object:
        if isinstance(artifacts, list):
            return [{"path": item} if isinstance(item, str) else item for item in artifacts]
        return artifacts

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
