"""The goal tools: `get_goal`, `update_goal` and `checkpoint`.

They change nothing themselves: they hand the harness a signal or a note, and the harness decides.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from goalkeeper.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from goalkeeper.tools.replies import refusal

CHECKPOINT_FIELDS = ("done", "verified", "remaining", "next", "assumptions", "failed")


class GetGoalArgs(ToolArgs):
    """`get_goal` takes no arguments."""


class GetGoal(Tool[GetGoalArgs]):
    """Shows the goal contract, its status, the checks passing and the budget."""

    name = "get_goal"
    description = "Show the goal, its status, which checks pass, and budget used/left."
    Args = GetGoalArgs

    async def run(self, args: GetGoalArgs, context: ToolContext) -> ToolResult:
        return ToolResult(json.dumps(context.goal_view, indent=1, sort_keys=True))


class GoalReport(ToolArgs):
    """`update_goal`'s arguments, which are the report the harness records."""

    status: Literal["complete", "blocked", "paused"]
    summary: str = Field("", description="What was done and the evidence for it.")
    blocker: str | None = Field(None, description="blocked only: what blocks you.")
    next_input: str | None = Field(None, description="blocked only: the input that would unblock.")
    reason: str | None = Field(None, description="paused only: what the person should review, and why now.")


_REPLIES = {"complete": "Completion requested. The harness will now run the checks; do not call more tools.",
            "blocked": "Blocked report recorded. The goal stops here.",
            "paused": "Pause for review recorded. The goal waits for the person; their feedback comes with the "
                      "resume."}


class UpdateGoal(Tool[GoalReport]):
    """Requests completion (the harness then verifies), declares the goal blocked, or (when the contract allows)
    pauses it for a person's review."""

    name = "update_goal"
    description = ('Request completion ("complete"; the harness then runs the checks), declare "blocked" with a '
                   'report, or pause for a person\'s review ("paused" with a reason; only if the contract allows '
                   "it). Ends your turn.")
    Args = GoalReport

    async def run(self, args: GoalReport, context: ToolContext) -> ToolResult:
        if args.status == "blocked" and not args.blocker:
            return refusal("update_goal: a blocked report needs `blocker` (what blocks you)")
        if args.status == "paused" and not context.goal_view.get("model_may_pause"):
            return refusal("update_goal: this goal's contract does not let you pause it ([review] model_may_pause "
                           "is off); keep working, or report blocked if you truly are")
        if args.status == "paused" and not (args.reason or "").strip():
            return refusal("update_goal: a pause needs `reason` (what the person should review)")
        report = args.model_dump(exclude={"reason"} if args.reason is None else set())
        if args.status == "paused":
            report["blocker"] = args.reason  # the note the decision records (TurnEnded.blocker)
        return ToolResult(_REPLIES[args.status], signal=args.status, report=report)


class CheckpointNote(ToolArgs):
    """`checkpoint`'s arguments, which are the turn's progress note."""

    done: str
    verified: str = ""
    remaining: str
    next: str
    assumptions: str = ""
    failed: str = ""
    checklist_done: list[int] | None = Field(
        None, description="Numbers of the checklist items now finished (1-based).",
        json_schema_extra={"items": {"type": "integer", "minimum": 1}})


class Checkpoint(Tool[CheckpointNote]):
    """Records the model's progress note for this turn, and which checklist items are finished."""

    name = "checkpoint"
    description = ("Record progress: done, verified (how), remaining, next step, assumptions, approaches that "
                   "failed and why (kept through compaction), finished checklist items.")
    Args = CheckpointNote

    async def run(self, args: CheckpointNote, context: ToolContext) -> ToolResult:
        note: dict[str, Any] = args.model_dump(exclude={"checklist_done"})
        if args.checklist_done is not None:
            try:
                note["checklist_done"] = _checklist_numbers(args.checklist_done, context.goal_view)
            except ValueError as error:
                return refusal(f"checkpoint: {error}")
        return ToolResult("Checkpoint recorded.", note=note)


def _checklist_numbers(value: list[int], goal_view: dict[str, Any]) -> list[int]:
    """Finished checklist items as sorted 1-based numbers; in range when the goal view lists the checklist."""
    checklist = goal_view.get("checklist")
    if isinstance(checklist, list) and not checklist and value:
        raise ValueError("this goal has no checklist; leave `checklist_done` out")
    highest = len(checklist) if isinstance(checklist, list) else None
    wrong = [n for n in value if n < 1 or (highest is not None and n > highest)]
    if wrong:
        allowed = f"1 to {highest}" if highest is not None else "1 or more"
        raise ValueError(f"`checklist_done` has {wrong}, not checklist item numbers ({allowed})")
    return sorted(set(value))
