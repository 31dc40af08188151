"""The tool registry: which tools a turn may use, and how one call is dispatched.

Dispatch turns every model mistake (unknown tool, bad JSON) into a tool error the model can read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from goalkeeper.models.base import ToolCall, ToolSpec
from goalkeeper.tools.base import Tool, ToolContext, ToolResult
from goalkeeper.tools.files import ReadFileTool, WriteFileTool
from goalkeeper.tools.goal import Checkpoint, GetGoal, UpdateGoal
from goalkeeper.tools.patch import ApplyPatchTool
from goalkeeper.tools.search import SearchTool
from goalkeeper.tools.shell import ShellTool

GOAL_TOOL_NAMES = ("get_goal", "update_goal", "checkpoint")


class ToolRegistry:
    """A named set of tools."""

    def __init__(self, tools: Iterable[Tool]) -> None:
        self.tools: dict[str, Tool] = {tool.spec.name: tool for tool in tools}

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        """The tool definitions sent to the model, in a stable order (cache-stable requests)."""
        return tuple(tool.spec for tool in self.tools.values())

    def only(self, names: Iterable[str]) -> ToolRegistry:
        """A registry restricted to `names` (e.g. the goal tools for the wrap-up turn)."""
        wanted = set(names)
        return ToolRegistry(tool for name, tool in self.tools.items() if name in wanted)

    async def execute(self, call: ToolCall, context: ToolContext) -> ToolResult:
        """Run one call. Unknown tools and malformed arguments come back as tool errors."""
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
        return await tool.run(arguments, context)


def default_registry() -> ToolRegistry:
    """Every tool a goal turn may use."""
    return ToolRegistry([ShellTool(), ReadFileTool(), WriteFileTool(), ApplyPatchTool(), SearchTool(),
                         GetGoal(), UpdateGoal(), Checkpoint()])
