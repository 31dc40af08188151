"""The contract's command-line form: `gk goal` flags laid over an optional goal file.

Never reads a file itself and never prints; a bad flag is a ContractError naming the flag and what to write.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from goalkeeper.contract.toml import _describe, _problems
from goalkeeper.errors import ContractError
from goalkeeper.spec.contract import _NAME, Contract, Metric, parse_duration


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
    checklist: Sequence[str] = (),
) -> Contract:
    """A contract from command-line flags, laid over `base` (from --file) when given.

    The objective replaces the outcome, checks and lists are appended, scalar flags replace; a checklist
    (an adopted plan's steps) replaces the base's, since two ordered lists do not add up to one. A check
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
    if checklist:
        data["checklist"] = tuple(checklist)
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

