"""A duration in a person's words ("1h 30m", "12m", "2.5s"): shown by every face, so it lives where reading a
goal needs nothing else (spec/contract.py parses durations back; it loads pydantic, which a glance never does)."""

from __future__ import annotations


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
