"""A goal's summary from its rows, as plain data: what `gk status` and `gk goal` show, read through a glance at
the store (store/glance.py) with no typed record, event model or pydantic.

`summary_of` returns the same dict as `views.summarize(...).as_json()` (tests/test_glance.py compares the two over
goals in many states), or None for a goal whose summary needs more than its rows: one whose settings allow child
agents (their events are read), or whose state was never saved. The caller then takes the full path.
"""

from __future__ import annotations

from typing import Any

from goalkeeper.goals.where import busy_timeout_s, store_url
from goalkeeper.store.glance import Glance, Row
from goalkeeper.store.home import goalkeeper_home

_NO_DIGEST: dict[str, Any] = {"evidence": [], "baseline": None, "last_checkpoint": None, "checklist_done": [],
                              "pinned": [], "run_surface": None, "observed_surface": None, "review_point": None,
                              "instructions": [], "waiting": None}
"""A goal with no digest row reads as core/digest.GoalDigest() does: empty."""


def open_glance() -> Glance | None:
    """A glance at the store file, or None when only the full `Store` can open it (a PostgreSQL store_url, or
    a file a glance does not read as it is: store/glance.py)."""
    if store_url() is not None:
        return None
    return Glance.open(goalkeeper_home().resolve() / "state.db", busy_timeout_s())


def summary_of(glance: Glance, goal: Row, workspace: str) -> dict[str, Any] | None:
    """The summary of the goal row `goal` (Glance.current_goal) in `workspace`, or None (see the module)."""
    contract, state, settings = goal["contract"], goal["state"], goal["settings"]
    agents = settings.get("run", {}).get("agents", {}).get("max_threads", 0)
    if not state or agents:
        return None
    digest = glance.digest(goal["goal_id"]) or _NO_DIGEST
    baseline = (digest["baseline"] or {}).get("payload", {})
    evidence = digest["evidence"]
    spent, limits, status, reason = state["spent"], state["limits"], state["status"], state["reason"]
    done = set(digest["checklist_done"])
    return {
        "goal_id": goal["goal_id"], "thread_id": goal["thread_id"], "workspace": workspace,
        "objective": contract["outcome"], "status": status, "reason": reason, "verified": bool(contract["checks"]),
        "checks_passing": sum(e["passed"] for e in evidence if e["kind"] == "check"),
        "checks_total": len(contract["checks"]), "tokens_used": spent["tokens"], "tokens_budget": limits["tokens"],
        "usd_used": spent["usd"], "usd_budget": limits["usd"], "elapsed_s": spent["time_s"],
        "time_budget_s": limits["time_s"], "turns": spent["turns"], "turns_budget": limits["turns"],
        "waiting": _waiting(digest.get("waiting")) if status == "pursuing" else None,
        "last_checkpoint": (digest["last_checkpoint"] or {}).get("payload"),
        "runner": glance.runner(goal["goal_id"]),
        "evidence": evidence, "baseline": baseline.get("evidence", []),
        "keep_green_dropped": baseline.get("keep_green_dropped", []), "pinned": digest["pinned"],
        "surface": digest["run_surface"], "observed_surface": digest["observed_surface"],
        "checklist": [{"number": number, "item": item, "done": number in done}
                      for number, item in enumerate(contract.get("checklist", []), 1)],
        "review_point": digest.get("review_point") if status == "paused" and reason.startswith("review_") else None,
        "instructions": digest.get("instructions") or [], "children": [],
    }


def _waiting(started: dict[str, Any] | None) -> dict[str, Any] | None:
    if started is None:
        return None
    payload = started["payload"]
    return {"until": payload["until"], "interval_s": payload["interval_s"], "deadline": payload["deadline"]}

