"""Review points: whether a turn's end is one of the contract's `[review]` points, and what changed since the last.

The decision to pause is `decide`'s (`TurnEnded.review_point`); this reads the facts it needs: the turn's
checkpoint commit and its files against `pause_after` and `pause_on_paths`.
"""

from __future__ import annotations

from typing import Any

from goalkeeper.context.replay import GoalFacts
from goalkeeper.core.outcomes import ReviewPoint
from goalkeeper.sandbox.globs import path_matches
from goalkeeper.spec.contract import Review

_NAMED = 5
"""Files a review point's reason names; the event lists them all."""


def review_point(review: Review, facts: GoalFacts, turn: int, committed: dict[str, Any]) -> ReviewPoint | None:
    """The review point this turn's end reaches, if any (`committed`: its checkpoint commit's fields)."""
    if not review.active:
        return None
    commit = committed.get("commit")
    files = list(committed.get("files_committed") or ())
    marks = facts.review
    count = marks.commits + (1 if commit else 0)
    why = None
    if review.pause_after == "turn":
        why = f'turn {turn} ended (pause_after = "turn")'
    elif review.pause_after == "checkpoint" and commit:
        why = f'turn {turn} committed a checkpoint (pause_after = "checkpoint")'
    elif isinstance(review.pause_after, int) and commit and count >= review.pause_after:
        why = f"{count} checkpoints since the last review point (pause_after = {review.pause_after})"
    touched = [path for path in files if any(path_matches(glob, path) for glob in review.pause_on_paths)]
    if why is None and commit and touched:
        named = ", ".join(touched[:_NAMED]) + (f" and {len(touched) - _NAMED} more" if len(touched) > _NAMED else "")
        why = f"turn {turn}'s checkpoint touched {named} (pause_on_paths)"
    if why is None:
        return None
    base = facts.branch.snapshot_commit or facts.branch.base_commit if facts.branch else None
    return ReviewPoint(why, tuple(sorted(marks.files | set(files))), marks.since or base)
