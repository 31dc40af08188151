"""The goal tools: `get_goal`, `update_goal` and `checkpoint`.

They change nothing themselves: they hand the harness a signal or a note, and the harness decides.
"""

from __future__ import annotations

import json
from typing import Any

from goalkeeper.models.base import ToolSpec
from goalkeeper.tools.base import ToolContext, ToolResult

CHECKPOINT_FIELDS = ("done", "verified", "remaining", "next", "assumptions", "failed")


def _text_field(arguments: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = arguments.get(name)
    if value is None:
        if required:
            raise ValueError(f"`{name}` is required (a string)")
        return None
    if not isinstance(value, str):
        raise ValueError(f"`{name}` must be a string, got {type(value).__name__}")
    return value


class GetGoal:
    """Shows the goal contract, its status, the checks passing and the budget."""

    spec = ToolSpec(
        "get_goal",
        "Show the goal, its status, which checks pass, and budget used/left.",
        {"type": "object", "properties": {}, "additionalProperties": False},
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        return ToolResult(json.dumps(context.goal_view, indent=1, sort_keys=True))


class UpdateGoal:
    """Requests completion (the harness then verifies) or declares the goal blocked."""

    spec = ToolSpec(
        "update_goal",
        'Request completion ("complete"; the harness then runs the checks) or declare "blocked" with a '
        "report. Ends your turn.",
        {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["complete", "blocked"]},
                "summary": {"type": "string", "description": "What was done and the evidence for it."},
                "blocker": {"type": "string", "description": "blocked only: what blocks you."},
                "next_input": {"type": "string", "description": "blocked only: the input that would unblock."},
            },
            "required": ["status", "summary"],
            "additionalProperties": False,
        },
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        status = arguments.get("status")
        try:
            summary = _text_field(arguments, "summary", required=True)
            blocker = _text_field(arguments, "blocker")
            next_input = _text_field(arguments, "next_input")
        except ValueError as error:
            return ToolResult(f"update_goal: {error}", ok=False)
        if status not in ("complete", "blocked"):
            return ToolResult('update_goal: `status` must be "complete" or "blocked"', ok=False)
        if status == "blocked" and not blocker:
            return ToolResult("update_goal: a blocked report needs `blocker` (what blocks you)", ok=False)
        data = {"status": status, "summary": summary, "blocker": blocker, "next_input": next_input}
        reply = ("Completion requested. The harness will now run the checks; do not call more tools."
                 if status == "complete" else "Blocked report recorded. The goal stops here.")
        return ToolResult(reply, signal="complete" if status == "complete" else "blocked", data=data)


class Checkpoint:
    """Records the model's progress note for this turn, and which checklist items are finished."""

    spec = ToolSpec(
        "checkpoint",
        "Record progress: done, verified (how), remaining, next step, assumptions, approaches that failed "
        "and why (kept through compaction), finished checklist items.",
        {
            "type": "object",
            "properties": {
                **{name: {"type": "string"} for name in CHECKPOINT_FIELDS},
                "checklist_done": {"type": "array", "items": {"type": "integer", "minimum": 1},
                                   "description": "Numbers of the checklist items now finished (1-based)."},
            },
            "required": ["done", "remaining", "next"],
            "additionalProperties": False,
        },
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        note: dict[str, Any] = {}
        try:
            for name in CHECKPOINT_FIELDS:
                value = _text_field(arguments, name, required=name in ("done", "remaining", "next"))
                note[name] = value or ""
            if "checklist_done" in arguments:
                note["checklist_done"] = _checklist_numbers(arguments["checklist_done"], context.goal_view)
        except ValueError as error:
            return ToolResult(f"checkpoint: {error}", ok=False)
        unknown = sorted(set(arguments) - {*CHECKPOINT_FIELDS, "checklist_done"})
        if unknown:
            fields = [*CHECKPOINT_FIELDS, "checklist_done"]
            return ToolResult(f"checkpoint: unknown field(s) {unknown}; use {fields}", ok=False)
        return ToolResult("Checkpoint recorded.", data={"note": note})


def _checklist_numbers(value: object, goal_view: dict[str, Any]) -> list[int]:
    """Finished checklist items as sorted 1-based numbers; in range when the goal view lists the checklist."""
    if not isinstance(value, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in value):
        raise ValueError("`checklist_done` must be an array of item numbers, e.g. [1, 2]")
    checklist = goal_view.get("checklist")
    if isinstance(checklist, list) and not checklist and value:
        raise ValueError("this goal has no checklist; leave `checklist_done` out")
    highest = len(checklist) if isinstance(checklist, list) else None
    wrong = [n for n in value if n < 1 or (highest is not None and n > highest)]
    if wrong:
        allowed = f"1 to {highest}" if highest is not None else "1 or more"
        raise ValueError(f"`checklist_done` has {wrong}, not checklist item numbers ({allowed})")
    return sorted(set(value))
