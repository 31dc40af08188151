"""A goal's figures in plain form: a duration in a person's words ("1h 30m", "12m", "2.5s"), a check run's metric
point. Every face shows them, so they live where reading a goal needs nothing else (spec/contract.py parses
durations back; it loads pydantic, which a glance at the store never does).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


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


def metric_point(turn: int, metrics: Iterable[tuple[str, float | None]]) -> dict[str, Any] | None:
    """One check run's metric values, given as (check name, metric) pairs, as `{"turn": N, name: value, ...}`;
    None when it read no metric."""
    values = {name: metric for name, metric in metrics if metric is not None}
    return {"turn": turn, **values} if values else None
