"""The tool registry: which tools a turn may use, how one call is dispatched, and the approval of shell commands.

Dispatch turns every model mistake (unknown tool, bad JSON) into a tool error the model can read. A
`shell` call is judged by sandbox/rules.py first; a denial is a tool error too, and the goal continues.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from goalkeeper.models.base import ToolCall, ToolSpec
from goalkeeper.sandbox.rules import ApprovalPolicy, CommandDecision, Rule, decide_command
from goalkeeper.tools.base import Tool, ToolContext, ToolResult
from goalkeeper.tools.files import ReadFileTool, WriteFileTool
from goalkeeper.tools.goal import Checkpoint, GetGoal, UpdateGoal
from goalkeeper.tools.outputs import ReadOutputTool
from goalkeeper.tools.patch import ApplyPatchTool
from goalkeeper.tools.search import SearchTool
from goalkeeper.tools.shell import ShellTool

GOAL_TOOL_NAMES = ("get_goal", "update_goal", "checkpoint")

READ_ONLY_TOOL_NAMES = ("read_file", "search", "read_output", "get_goal")
"""Tools that cannot change the workspace or the goal: all a side question or a planning turn gets."""

Approver = Callable[[str, CommandDecision], Awaitable[bool]]
"""Asks a person whether a command the rules say "ask" about may run (the TUI supplies it); True runs it."""

NO_PROMPT_YET = "approval prompts arrive with the TUI"
"""Why an ask is denied in an attended run that has no approver."""


class ToolRegistry:
    """A named set of tools, and the command rules a `shell` call must pass."""

    def __init__(self, tools: Iterable[Tool], *, rules: Sequence[Rule] = (),
                 approval_policy: ApprovalPolicy = "on-request", goal_branch: str | None = None,
                 approver: Approver | None = None) -> None:
        self.tools: dict[str, Tool] = {tool.spec.name: tool for tool in tools}
        self.rules: tuple[Rule, ...] = tuple(rules)
        """The user's `[[rules]]`, consulted before the default rules."""
        self.approval_policy: ApprovalPolicy = approval_policy
        self.goal_branch = goal_branch
        """The branch the goal works on; checking out any other is denied."""
        self.approver = approver
        """Asks a person about "ask" commands; None denies them (and headless runs never ask)."""

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        """The tool definitions sent to the model, in a stable order (cache-stable requests)."""
        return tuple(tool.spec for tool in self.tools.values())

    def only(self, names: Iterable[str]) -> ToolRegistry:
        """A registry restricted to `names` (e.g. the goal tools for the wrap-up turn), same approvals."""
        wanted = set(names)
        return ToolRegistry((tool for name, tool in self.tools.items() if name in wanted), rules=self.rules,
                            approval_policy=self.approval_policy, goal_branch=self.goal_branch,
                            approver=self.approver)

    def with_approvals(self, *, rules: Sequence[Rule] | None = None,
                       approval_policy: ApprovalPolicy | None = None, goal_branch: str | None = None,
                       approver: Approver | None = None) -> ToolRegistry:
        """The same tools with the approval settings given replaced (those left None are kept)."""
        return ToolRegistry(self.tools.values(), rules=self.rules if rules is None else rules,
                            approval_policy=approval_policy or self.approval_policy,
                            goal_branch=self.goal_branch if goal_branch is None else goal_branch,
                            approver=approver or self.approver)

    async def execute(self, call: ToolCall, context: ToolContext) -> ToolResult:
        """Run one call. Unknown tools, malformed arguments and denied commands come back as tool errors."""
        tool = self.tools.get(call.name)
        if tool is None:
            return ToolResult(f"unknown tool `{call.name}`; available: {', '.join(self.tools)}", ok=False)
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError as error:
            return ToolResult(f"{call.name}: arguments are not valid JSON ({error.msg} at char {error.pos}); "
                              "send a JSON object", ok=False)
        if not isinstance(arguments, dict):
            return ToolResult(f"{call.name}: arguments must be a JSON object", ok=False)
        command = arguments.get("command")
        if call.name != "shell" or not isinstance(command, str) or not command.strip():
            return await tool.run(arguments, context)  # the shell tool refuses a missing command itself
        return await self._run_approved(tool, arguments, command, context)

    async def _run_approved(self, tool: Tool, arguments: dict[str, Any], command: str,
                            context: ToolContext) -> ToolResult:
        """Judge `command`, ask when the rules say so and someone can answer, then run it or refuse it."""
        decision = decide_command(command, self.rules, self.approval_policy, self.goal_branch, context.headless)
        asked = False
        if decision.action == "ask":
            if self.approver is None:
                decision = CommandDecision("deny", f"needs approval, and {NO_PROMPT_YET}: {decision.reason}",
                                           decision.rule)
            else:
                asked = True
                approved = await self.approver(command, decision)
                decision = CommandDecision("allow" if approved else "deny",
                                           f"{'approved' if approved else 'refused'} by the person: "
                                           f"{decision.reason}", decision.rule)
        approval = {**decision.as_event(command), "asked": asked}
        if decision.action == "deny":
            by = f"by rule `{decision.rule}`" if decision.rule else "by the approval policy"
            return ToolResult(f"denied {by}: {decision.reason}; the goal continues — choose another approach",
                              ok=False, data={"approval": approval})
        result = await tool.run(arguments, context)
        return dataclasses.replace(result, data={**result.data, "approval": approval})


def default_registry() -> ToolRegistry:
    """Every tool a goal turn may use."""
    return ToolRegistry([ShellTool(), ReadFileTool(), WriteFileTool(), ApplyPatchTool(), SearchTool(),
                         ReadOutputTool(), GetGoal(), UpdateGoal(), Checkpoint()])
