"""What the harness measured of a goal's trees, read from its events: the checks passing on each tree, the
checkpoints a check run measured, and the best and the last green of them (`gk rollback`, `gk report`).

Plain folds over stored events, apart from the goal's git side (goal.py), so that reading a goal's report or
status never loads git (tests/test_startup.py).
"""

from __future__ import annotations

from typing import Any

from goalkeeper.events import BaselineEvent, CheckpointEvent, EvidenceEvent
from goalkeeper.store import EventRecord


def measured_trees(records: list[EventRecord]) -> dict[str, int]:
    """Tree hash → how many checks passed when the harness ran them on that tree (the newest run wins).

    Read from the baseline and evidence events, which carry the tree they measured.
    """
    measured: dict[str, int] = {}
    for record in records:
        event = record.event
        if isinstance(event, (BaselineEvent, EvidenceEvent)) and event.tree_hash:
            measured[event.tree_hash] = sum(1 for e in event.evidence if e.is_check and e.passed)
    return measured


def measured_checkpoints(records: list[EventRecord]) -> list[dict[str, Any]]:
    """Every checkpoint the harness measured, with its value: the baseline as turn 0, then each checkpoint commit
    whose tree a later check run measured (the run names the tree, so a run never credits an older commit).

    Each is `{"turn", "commit", "tree_hash", "passing", "all_passed", "metric"}`; `commit` is None for turn 0
    (the goal's base commit).
    """
    events = [record.event for record in records]
    runs: dict[str, dict[str, Any]] = {}
    for event in events:
        if isinstance(event, (BaselineEvent, EvidenceEvent)) and event.tree_hash:
            checks = [e for e in event.evidence if e.is_check]
            runs[event.tree_hash] = {"passing": sum(e.passed for e in checks),
                                     "all_passed": all(e.passed for e in event.evidence),
                                     "metric": next((e.metric for e in checks if e.metric is not None), None)}
    found: dict[int, dict[str, Any]] = {}
    baseline = next((e for e in events if isinstance(e, BaselineEvent)), None)
    if baseline and baseline.tree_hash in runs:
        found[0] = {"turn": 0, "commit": None, "tree_hash": baseline.tree_hash, **runs[baseline.tree_hash]}
    for event in events:
        if isinstance(event, CheckpointEvent) and event.commit and event.tree_hash in runs:
            found[event.turn] = {"turn": event.turn, "commit": event.commit, "tree_hash": event.tree_hash,
                                 **runs[event.tree_hash]}
    return [found[turn] for turn in sorted(found)]


def best_and_green(measured: list[dict[str, Any]], lower_is_better: bool) -> tuple[int | None, int | None]:
    """The best measured checkpoint's turn (most checks passing, then the best metric; the earliest of equals)
    and the last one whose checks all passed, for `gk rollback --to best | last-green`."""
    best: dict[str, Any] | None = None
    for point in measured:
        if best is None or point["passing"] > best["passing"] or (
                point["passing"] == best["passing"] and _better(point["metric"], best["metric"], lower_is_better)):
            best = point
    green = [point["turn"] for point in measured if point["all_passed"]]
    return (best["turn"] if best else None), (green[-1] if green else None)


def _better(value: float | None, than: float | None, lower_is_better: bool) -> bool:
    if value is None:
        return False
    if than is None:
        return True
    return value < than if lower_is_better else value > than
