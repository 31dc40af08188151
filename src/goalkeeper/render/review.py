"""What a person reads at a review point (`[review]` in the contract, or the model's request): why the goal
paused, what changed since the last one, and how to go on. For `gk goal` and the TUI's `/goal`."""

from __future__ import annotations

from typing import Any


def review_lines(point: dict[str, Any] | None, resume: str) -> list[str]:
    """What a person reads at a review point: why the goal paused, what changed since the last one, how to go on."""
    if point is None:
        return []
    files: list[str] = point.get("files") or []
    asked = point.get("declared_by") == "model"
    lines = [f"review:    the model asked for one: {point.get('note') or '(no note)'}" if asked
             else f"review:    {point.get('why') or 'a review point of the contract'}"]
    shown = ", ".join(files[:8]) + (f" … (+{len(files) - 8})" if len(files) > 8 else "")
    since = f" (since {point['since'][:12]})" if point.get("since") else ""
    lines.append(f"  changed since the last review point{since}: {shown or 'no files'}")
    lines.append(f"  go on with: {resume}")
    return lines
