"""What the harness measured of a goal's trees, read from its events: the checks passing on each tree, the
checkpoints a check run measured, and the best and the last green of them (`gk rollback`, `gk report`).

Plain folds over stored events as rows of plain data (kind and payload), apart from the goal's git side
(goal.py), so that reading a goal's report never loads git (tests/test_startup.py) or an event model.
"""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]
"""A stored event as the report reads it: its `kind` and `payload` (events.payload_of), with `seq` and `actor`."""


def measured_trees(rows: list[Row]) -> dict[str, int]:
    """Tree hash → how many checks passed when the harness ran them on that tree (the newest run wins).

    Read from the baseline and evidence events, which carry the tree they measured.
    """
    measured: dict[str, int] = {}
    for row in rows:
        payload = row["payload"]
        if row["kind"] in _CHECK_RUNS and payload.get("tree_hash"):
            measured[payload["tree_hash"]] = sum(1 for e in payload["evidence"] if e["kind"] == "check" and e["passed"])
    return measured


def measured_checkpoints(rows: list[Row]) -> list[dict[str, Any]]:
    """Every checkpoint the harness measured, with its value: the baseline as turn 0, then each checkpoint commit
    whose tree a later check run measured (the run names the tree, so a run never credits an older commit).

    Each is `{"turn", "commit", "tree_hash", "passing", "all_passed", "metric"}`; `commit` is None for turn 0
    (the goal's base commit).
    """
    runs: dict[str, dict[str, Any]] = {}
    for row in rows:
        payload = row["payload"]
        if row["kind"] in _CHECK_RUNS and payload.get("tree_hash"):
            checks = [e for e in payload["evidence"] if e["kind"] == "check"]
            runs[payload["tree_hash"]] = {"passing": sum(e["passed"] for e in checks),
                                          "all_passed": all(e["passed"] for e in payload["evidence"]),
                                          "metric": next((e["metric"] for e in checks if e.get("metric") is not None),
                                                         None)}
    found: dict[int, dict[str, Any]] = {}
    baseline = next((row["payload"] for row in rows if row["kind"] == "baseline"), None)
    if baseline and baseline.get("tree_hash") in runs:
        found[0] = {"turn": 0, "commit": None, "tree_hash": baseline["tree_hash"], **runs[baseline["tree_hash"]]}
    for row in rows:
        payload = row["payload"]
        if row["kind"] == "checkpoint" and payload.get("commit") and payload.get("tree_hash") in runs:
            found[payload["turn"]] = {"turn": payload["turn"], "commit": payload["commit"],
                                      "tree_hash": payload["tree_hash"], **runs[payload["tree_hash"]]}
    return [found[turn] for turn in sorted(found)]


_CHECK_RUNS = ("baseline", "evidence")


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
