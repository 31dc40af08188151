"""The tool registry: which tools a turn may use, how one call is dispatched, and the approval of shell commands.

Dispatch turns every model mistake (unknown tool, bad JSON) into a tool error the model can read. A
`shell` call (and a `wait`'s `until` command) is judged by sandbox/rules.py first, an MCP tool's call by the
tool's name (`decide_tool`); a denial is a tool error too, and the goal continues. An "ask" goes to the person
through the `Approver`; an approval they ask to remember becomes an allow rule of this registry at once
(`remembered`), which only ever turns a later ask into an allow.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from goalkeeper.models.base import ToolCall, ToolSpec
from goalkeeper.sandbox.globs import command_matches
from goalkeeper.sandbox.rules import (
    ApprovalPolicy,
    CommandDecision,
    Rule,
    asked_commands,
    command_prefix,
    decide_command,
    decide_tool,
)
from goalkeeper.tools.agents import SpawnAgentTool
from goalkeeper.tools.base import ArgumentError, CommandApproval, Document, Tool, ToolArgs, ToolContext, ToolResult
from goalkeeper.tools.files import ReadFileTool, WriteFileTool
from goalkeeper.tools.goal import Checkpoint, GetGoal, UpdateGoal
from goalkeeper.tools.mcp import McpTool
from goalkeeper.tools.patch import ApplyPatchTool
from goalkeeper.tools.read_output import ReadOutputTool
from goalkeeper.tools.search import SearchTool
from goalkeeper.tools.shell import ShellArgs, ShellTool
from goalkeeper.tools.wait import WaitArgs, WaitTool

GOAL_TOOL_NAMES = ("get_goal", "update_goal", "checkpoint")

READ_ONLY_TOOL_NAMES = ("read_file", "search", "read_output", "get_goal")
"""Tools that cannot change the workspace or the goal: all a side question or a planning turn gets."""

RUNNER_TOOL_NAMES = ("wait",)
"""Tools only a goal's runner carries out whole (a wait is durable across restarts): never in a chat."""



@dataclass(frozen=True)
class Approval:
    """A person's answer to an "ask"."""

    approved: bool
    remember: bool = False
    """With `approved`: allow this command's prefix (`command_prefix`) for the rest of the goal (or chat)."""
    reason: str = ""
    """With a refusal: told to the model as "refused by the person: <reason>"."""


Approver = Callable[[str, CommandDecision], Awaitable[Approval]]
"""Asks a person whether a command the rules say "ask" about may run (the TUI supplies it)."""

REMEMBERED_TOOL = "approved earlier in this run and remembered"
"""The reason of the allow rule a remembered approval of an MCP tool becomes (for the rest of the run)."""

NO_PROMPT_YET = "approval prompts arrive with the TUI"
"""Why an ask is denied in an attended run that has no approver."""


class ToolRegistry:
    """A named set of tools, and the command rules a `shell` call must pass."""

    def __init__(self, tools: Iterable[Tool[Any]], *, rules: Sequence[Rule] = (),
                 approval_policy: ApprovalPolicy = "on-request", goal_branch: str | None = None,
                 approver: Approver | None = None, remembered: list[Rule] | None = None) -> None:
        self.tools: dict[str, Tool[Any]] = {tool.spec.name: tool for tool in tools}
        self.rules: tuple[Rule, ...] = tuple(rules)
        """The user's `[[rules]]`, consulted before the default rules."""
        self.approval_policy: ApprovalPolicy = approval_policy
        self.goal_branch = goal_branch
        """The branch the goal works on; checking out any other is denied."""
        self.approver = approver
        """Asks a person about "ask" commands; None denies them (and headless runs never ask)."""
        self.remembered: list[Rule] = remembered if remembered is not None else []
        """Allow rules from approvals the person asked to remember. Shared (the same list) with every registry
        derived from this one, so a remembered approval holds at once in the wrap-up turn's registry too."""

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        """The tool definitions sent to the model, in a stable order (cache-stable requests)."""
        return tuple(tool.spec for tool in self.tools.values())

    def only(self, names: Iterable[str]) -> ToolRegistry:
        """A registry restricted to `names` (e.g. the goal tools for the wrap-up turn), same approvals."""
        wanted = set(names)
        return ToolRegistry((tool for name, tool in self.tools.items() if name in wanted), rules=self.rules,
                            approval_policy=self.approval_policy, goal_branch=self.goal_branch,
                            approver=self.approver, remembered=self.remembered)

    def without(self, names: Iterable[str]) -> ToolRegistry:
        """A registry without `names` (e.g. chat has no goal tools), same approvals."""
        unwanted = set(names)
        return self.only(name for name in self.tools if name not in unwanted)

    def with_approvals(self, *, rules: Sequence[Rule] | None = None,
                       approval_policy: ApprovalPolicy | None = None, goal_branch: str | None = None,
                       approver: Approver | None = None) -> ToolRegistry:
        """The same tools with the approval settings given replaced (those left None are kept)."""
        return ToolRegistry(self.tools.values(), rules=self.rules if rules is None else rules,
                            approval_policy=approval_policy or self.approval_policy,
                            goal_branch=self.goal_branch if goal_branch is None else goal_branch,
                            approver=approver or self.approver, remembered=self.remembered)

    def adding(self, tools: Iterable[Tool[Any]]) -> ToolRegistry:
        """The same approvals with `tools` added after these (one of the same name takes its place)."""
        registry = self.with_approvals()
        registry.tools.update((tool.spec.name, tool) for tool in tools)
        return registry

    def remember(self, match: str) -> Rule:
        """Allow commands matching `match` from now on where the rules would ask (never where they deny)."""
        rule = Rule(match, "allow", "approved earlier and remembered")
        if rule not in self.remembered:
            self.remembered.append(rule)
        return rule

    async def execute(self, call: ToolCall, context: ToolContext) -> ToolResult:
        """Run one call. Unknown tools, malformed arguments and denied commands come back as tool errors."""
        parsed = self.parse(call)
        if isinstance(parsed, ToolResult):
            return parsed
        return await self.run(*parsed, context)

    def parse(self, call: ToolCall) -> tuple[Tool[Any], ToolArgs] | ToolResult:
        """The call's tool and its validated arguments, or the tool error that says what to fix."""
        tool = self.tools.get(call.name)
        if tool is None:
            return ToolResult(f"unknown tool `{call.name}`; available: {', '.join(self.tools)}", ok=False)
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError as error:
            why = error.msg.removesuffix(" at")  # json's "Invalid control character at" would read "at at"
            return ToolResult(f"{call.name}: arguments are not valid JSON ({why} at char {error.pos}); "
                              "send a JSON object", ok=False)
        if not isinstance(arguments, dict):
            return ToolResult(f"{call.name}: arguments must be a JSON object", ok=False)
        try:
            return tool, tool.parse(arguments)
        except ArgumentError as error:
            return ToolResult(str(error), ok=False)

    async def run(self, tool: Tool[Any], args: ToolArgs, context: ToolContext) -> ToolResult:
        """Run a parsed call; the command it would run (a shell command, a wait's `until`) is judged first, and an
        MCP tool's call by its name."""
        if isinstance(tool, McpTool) and isinstance(args, Document):
            return await self._run_judged_tool(tool, args, context)
        command = _command_of(args)
        if command is None or not command.strip():
            return await tool.run(args, context)  # the shell tool refuses an empty command itself
        return await self._run_approved(tool, args, command, context)

    async def _run_approved(self, tool: Tool[Any], args: ToolArgs, command: str,
                            context: ToolContext) -> ToolResult:
        """Judge the command, ask when the rules say so and someone can answer, then run it or refuse it."""
        decision, answer = await self._ask(command, self._judge(command, context.headless))
        remembered = answer is not None and answer.approved and answer.remember
        matches: tuple[str, ...] | None = None
        if remembered:
            # Only the parts that asked are remembered (they are all the approval covered), and never one
            # that only a user's ask rule saved from a default deny.
            parts = asked_commands(command, self.rules, self.approval_policy, self.goal_branch)
            matches = tuple(self.remember(command_prefix(part.command)).match for part in parts if part.rememberable)
        approval = CommandApproval(command, decision.action, decision.reason, decision.rule, answer is not None,
                                   matches)
        return await _run_or_refuse(tool, args, context, decision, approval)

    async def _run_judged_tool(self, tool: McpTool, args: Document, context: ToolContext) -> ToolResult:
        """An MCP tool's call, judged by its name (`tool` rules, then the policy; sandbox/rules.py), asked about
        when the rules say so and someone can answer. An approval the person asks to remember holds for this
        tool until the run ends (it is not stored: a resumed goal asks again)."""
        name = tool.spec.name
        decision = decide_tool(name, self.rules, self.approval_policy, headless=False)
        if decision.action == "ask" and Rule(name, "allow", REMEMBERED_TOOL, tool=True) in self.remembered:
            decision = CommandDecision("allow", "approved earlier in this run by the person (remembered)", name)
        elif decision.action == "ask":
            decision = decide_tool(name, self.rules, self.approval_policy, context.headless)
        decision, answer = await self._ask(_shown_call(name, args), decision)
        if answer is not None and answer.approved and answer.remember:
            self.remembered.append(Rule(name, "allow", REMEMBERED_TOOL, tool=True))
        approval = CommandApproval(_shown_call(name, args), decision.action, decision.reason, decision.rule,
                                   answer is not None)
        return await _run_or_refuse(tool, args, context, decision, approval)

    async def _ask(self, shown: str, decision: CommandDecision) -> tuple[CommandDecision, Approval | None]:
        """An "ask" put to the person (denied when nobody can answer); the decision after it, and their answer
        (None when nobody was asked)."""
        if decision.action != "ask":
            return decision, None
        if self.approver is None:
            return CommandDecision("deny", f"needs approval, and {NO_PROMPT_YET}: {decision.reason}",
                                   decision.rule), None
        answer = await self.approver(shown, decision)
        return _answered(decision, answer), answer

    def _judge(self, command: str, headless: bool) -> CommandDecision:
        """The rules' decision, with an ask turned into an allow when remembered approvals cover every part
        that asks (headless runs too: the person already said yes for this goal)."""
        decision = decide_command(command, self.rules, self.approval_policy, self.goal_branch, headless=False)
        if decision.action != "ask":
            return decision
        parts = asked_commands(command, self.rules, self.approval_policy, self.goal_branch)
        commands = [rule for rule in self.remembered if not rule.tool]  # an MCP tool's never covers a command
        covering = [next((rule.match for rule in commands if command_matches(rule.match, part.command)), None)
                    if part.rememberable else None for part in parts]
        if parts and all(covering):
            matches = ", ".join(f"`{match}`" for match in dict.fromkeys(covering) if match)
            return CommandDecision("allow", f"approved earlier by the person (remembered: {matches})",
                                   covering[0])
        return decide_command(command, self.rules, self.approval_policy, self.goal_branch, headless)


def _command_of(args: ToolArgs) -> str | None:
    """The shell command a call would run, which the approval rules judge: the shell's, or a wait's `until`."""
    if isinstance(args, ShellArgs):
        return args.command
    if isinstance(args, WaitArgs):
        return args.until
    return None



async def _run_or_refuse(tool: Tool[Any], args: ToolArgs, context: ToolContext, decision: CommandDecision,
                         approval: CommandApproval) -> ToolResult:
    """Run the call the rules (and the person) allowed, or tell the model it was denied and why."""
    if decision.action == "deny":
        by = f"by rule `{decision.rule}`" if decision.rule else "by the approval policy"
        return ToolResult(f"denied {by}: {decision.reason}; the goal continues — choose another approach",
                          ok=False, approval=approval)
    result = await tool.run(args, context)
    return dataclasses.replace(result, approval=approval)


def _answered(decision: CommandDecision, answer: Approval) -> CommandDecision:
    """The ask's decision once the person has answered it."""
    if answer.approved:
        return CommandDecision("allow", f"approved by the person: {decision.reason}", decision.rule)
    because = answer.reason.strip() or decision.reason
    return CommandDecision("deny", f"refused by the person: {because}", decision.rule)


def _shown_call(name: str, args: Document) -> str:
    """An MCP call as the person and the log see it: the tool's name and its arguments."""
    return f"{name} {json.dumps(args.fields(), ensure_ascii=False, sort_keys=True)}"


def default_registry() -> ToolRegistry:
    """Every tool a goal turn may use."""
    return ToolRegistry([ShellTool(), ReadFileTool(), WriteFileTool(), ApplyPatchTool(), SearchTool(),
                         ReadOutputTool(), GetGoal(), UpdateGoal(), Checkpoint(), WaitTool()])


def goal_registry(agents: bool) -> ToolRegistry:
    """Every tool a goal turn may use, with `spawn_agent` where `[agents]` allows children."""
    tools = default_registry()
    return ToolRegistry([*tools.tools.values(), SpawnAgentTool()]) if agents else tools
