"""The verification surface for a person: the lines `gk status` and `gk lint` print from the stored dicts.

The surface itself is observed and judged in verify/ (observed.py at baseline, surface.py at each check run),
which loads git and the pins; showing what they recorded needs neither, so a reader never imports them.
"""

from __future__ import annotations

from typing import Any

#: How many notable paths of each kind a person is shown.
SHOWN = 6


def summary_lines(summary: dict[str, Any] | None) -> list[str]:
    """The surface recorded at baseline (`verify.observed.surface_summary`): a count line, then the notable
    paths of each kind (a few of each)."""
    if not summary:
        return []
    head = (f"verification surface ({summary['provenance']}): {_count(summary['paths'], 'path')}, "
            f"{_count(summary['tests'], 'test file')}; {_count(summary['code'], 'source file')} the checks "
            "import counted as code under test")
    lines = [head]
    for key, label in (("configs", "test configs"), ("inputs", "fixtures and inputs"), ("executed", "executed"),
                       ("missing", "probed, absent"), ("import_dirs", "shadow-prone dirs")):
        values = summary.get(key) or []
        if values:
            more = f" … (+{len(values) - SHOWN})" if len(values) > SHOWN else ""
            lines.append(f"  {label}: {', '.join(values[:SHOWN])}{more}")
    return lines


def surface_lines(payload: dict[str, Any] | None) -> list[str]:
    """The surface's state at a check run (`verify.surface.verify_goal`'s payload): unchanged, extended or
    modified (with the files), and what the clean room took and held back."""
    if not payload:
        return []
    lines = [f"verification surface: {payload['state']}"]
    for label in ("modified", "deleted", "added"):
        if payload.get(label):
            lines.append(f"  {label}: {', '.join(payload[label])}")
    room = payload.get("room")
    if room:
        lines.append(f"clean room: {room['taken']} change(s) taken, {len(room['held_back'])} held back")
        if room["held_back"]:
            lines.append(f"  held back: {', '.join(room['held_back'])}")
    return lines


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")
