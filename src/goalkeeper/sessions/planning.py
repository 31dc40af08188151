"""Plan mode: one planning turn with read-only tools that ends in a stored `plan` event, never in a continuation.

A plan is a proposal for a person: `gk goal --from-plan` adopts its objective and its steps (as the
contract's checklist); its suggested checks are adopted only through the command printed for the person
to review and run, never silently.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from goalkeeper.context.prompts import as_data, render
from goalkeeper.errors import ConfigError
from goalkeeper.events import PlanEvent
from goalkeeper.models.base import Message, ModelResponse, ToolCall, ToolSpec
from goalkeeper.sessions.defaults import PLAN_MAX_REQUESTS
from goalkeeper.sessions.session import (
    LastRequest,
    Session,
    SessionCost,
    ToolUse,
    open_session,
    read_only_tools,
    run_session,
)
from goalkeeper.spec.settings import GoalSettings, ModelSettings
from goalkeeper.store import Store
from goalkeeper.tools.base import Document, Tool, ToolContext, ToolResult
from goalkeeper.tools.registry import ToolRegistry

_CHECK_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*+])\s+(?:\[[ xX]\]\s+)?(.*\S)\s*$")
_PLAN_FIELDS = ("objective", "steps", "checks", "risks", "questions")


@dataclass(frozen=True)
class SuggestedCheck:
    """A verification command the plan suggests; it becomes a check only if the person adds it."""

    name: str
    run: str


@dataclass(frozen=True)
class Plan:
    """What a planning turn proposes."""

    objective: str
    """The objective restated so that it is concrete and checkable."""
    steps: tuple[str, ...]
    """The ordered checklist to work through."""
    checks: tuple[SuggestedCheck, ...] = ()
    risks: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()
    """What the person should answer before (or while) the goal runs."""
    text: str = ""
    """The model's own text with the plan (all of it, for a plan given as text)."""
    source: Literal["submit_plan", "text"] = "submit_plan"

    def payload(self) -> dict[str, Any]:
        """The plan as stored in a `plan` event."""
        return {"objective": self.objective, "steps": list(self.steps),
                "checks": [{"name": check.name, "run": check.run} for check in self.checks],
                "risks": list(self.risks), "questions": list(self.questions), "text": self.text,
                "source": self.source}

    @classmethod
    def of(cls, event: PlanEvent) -> Plan:
        """The plan stored in a `plan` event."""
        return cls(event.objective, tuple(event.steps), tuple(SuggestedCheck(c.name, c.run) for c in event.checks),
                   tuple(event.risks), tuple(event.questions), event.text,
                   "text" if event.source == "text" else "submit_plan")


@dataclass(frozen=True)
class PlanResult:
    """A stored plan and what making it cost."""

    plan: Plan
    thread_id: str
    seq: int
    """The `plan` event's seq."""
    cost: SessionCost

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**self.plan.payload(), "thread_id": self.thread_id, "seq": self.seq, **self.cost.payload()}


class SubmitPlan(Tool[Document]):
    """The tool that ends a planning turn: its arguments are the plan."""

    Args = Document

    spec = ToolSpec(
        "submit_plan",
        "Submit the plan. Ends the planning turn; nothing runs after it.",
        {
            "type": "object",
            "properties": {
                "objective": {"type": "string", "description": "The objective restated: concrete and checkable."},
                "steps": {"type": "array", "items": {"type": "string"}, "description": "The ordered checklist."},
                "checks": {"type": "array", "description": "Commands that would verify the objective.",
                           "items": {"type": "object", "properties": {"name": {"type": "string"},
                                                                      "run": {"type": "string"}},
                                     "required": ["name", "run"], "additionalProperties": False}},
                "risks": {"type": "array", "items": {"type": "string"}},
                "questions": {"type": "array", "items": {"type": "string"},
                              "description": "What the person should decide or answer."},
            },
            "required": ["objective", "steps"],
            "additionalProperties": False,
        },
    )

    async def run(self, args: Document, context: ToolContext) -> ToolResult:
        try:
            plan = plan_from_arguments(args.fields())
        except ValueError as error:
            return ToolResult(f"submit_plan: {error}; call it again with the fix", ok=False)
        return ToolResult("Plan recorded.", facts={"plan": plan.payload()})


def plan_from_arguments(arguments: dict[str, Any], text: str = "") -> Plan:
    """The plan in `submit_plan`'s arguments; ValueError says what is wrong."""
    unknown = sorted(set(arguments) - set(_PLAN_FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; use {list(_PLAN_FIELDS)}")
    objective = arguments.get("objective")
    if not isinstance(objective, str) or not objective.strip():
        raise ValueError("`objective` must be a non-empty string")
    steps = _strings(arguments, "steps")
    if not steps:
        raise ValueError("`steps` must list at least one step")
    checks = arguments.get("checks") or []
    if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
        raise ValueError('`checks` must be an array of {"name": ..., "run": ...}')
    suggested = tuple(_suggested_check(check) for check in checks)
    names = [check.name for check in suggested]
    if len(set(names)) != len(names):
        raise ValueError("check names must be unique")
    return Plan(objective.strip(), steps, suggested, _strings(arguments, "risks"), _strings(arguments, "questions"),
                text)


def plan_from_text(text: str, objective: str) -> Plan:
    """A plan the model wrote as text: its list items are the steps; the objective is the one given."""
    steps = tuple(match.group(1) for line in text.splitlines() if (match := _LIST_ITEM.match(line)))
    return Plan(objective.strip(), steps, text=text, source="text")


def _strings(arguments: dict[str, Any], name: str) -> tuple[str, ...]:
    value = arguments.get(name) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"`{name}` must be an array of strings")
    return tuple(item.strip() for item in value if item.strip())


def _suggested_check(check: dict[str, Any]) -> SuggestedCheck:
    name, run = check.get("name"), check.get("run")
    if not isinstance(name, str) or not _CHECK_NAME.fullmatch(name):
        raise ValueError(f"check name {name!r} must be letters, digits, `_`, `.` or `-`")
    if not isinstance(run, str) or not run.strip():
        raise ValueError(f"check `{name}` needs a `run` command")
    return SuggestedCheck(name, run.strip())


def make_plan(store: Store, workspace: Path, objective: str, *, thread_id: str | None = None,
              model: ModelSettings | None = None, max_requests: int = PLAN_MAX_REQUESTS,
              on_text: Callable[[str], None] | None = None,
              on_tool: Callable[[ToolUse], None] | None = None) -> PlanResult:
    """Run one planning turn for `objective` and store its plan on the thread (made if there is none).

    `model` overrides the thread's goal's model (which overrides config). Provider failures raise.
    """
    if not objective.strip():
        raise ConfigError("the objective is empty", 'write gk plan "make the tests pass"')
    thread = store.thread_for(workspace, thread_id, create=True)
    goal = store.get_goal(thread.thread_id)
    settings = goal.settings if goal else GoalSettings()
    contract = goal.contract if goal else None
    tools = ToolRegistry([*read_only_tools().tools.values(), SubmitPlan()])
    messages = [Message("system", render("system")), Message("user", render("plan", objective=as_data(objective)))]
    opened = open_session(store, workspace, tools, settings, model=model, contract=contract,
                          goal_view={"objective": objective, "status": "planning"}, on_text=on_text, on_tool=on_tool)
    session, plan = run_session(opened, lambda session: _planning_turn(session, messages, objective, max_requests))
    recorded = PlanEvent(**plan.payload(), given_objective=objective, **session.cost().payload())
    [record] = store.append_events(thread.thread_id, [recorded])
    return PlanResult(plan, thread.thread_id, record.seq, session.cost())


async def _planning_turn(session: Session, messages: list[Message], objective: str, max_requests: int) -> Plan:
    """Requests and read-only calls until `submit_plan` or a text-only answer. Nothing is sent after that."""
    async def last_answer(final: ModelResponse) -> Plan:
        if (submitted := _submitted(final, objective)) is None:
            return plan_from_text(final.content, objective)
        plan, call = submitted
        session.note(ToolUse(call.name, call.arguments, True))  # not run: its valid arguments are the plan
        return plan

    return await session.run(messages, max_requests, lambda response: _ended(response, objective),
                             LastRequest("planning turn", "plan: call `submit_plan` with it", last_answer,
                                         (SubmitPlan.spec,)))


def _ended(response: ModelResponse, objective: str) -> Plan | None:
    """The plan, when this response ends the turn: a valid `submit_plan` call, or text with no call."""
    if not response.tool_calls:
        return plan_from_text(response.content, objective)
    submitted = _submitted(response, objective)
    return submitted[0] if submitted is not None else None


def _submitted(response: ModelResponse, objective: str) -> tuple[Plan, ToolCall] | None:
    """The plan in the response's first valid `submit_plan` call, with that call."""
    for call in response.tool_calls:
        if call.name != "submit_plan":
            continue
        try:
            arguments = json.loads(call.arguments or "{}")
            return plan_from_arguments(arguments if isinstance(arguments, dict) else {}, response.content), call
        except (json.JSONDecodeError, ValueError):
            continue  # run like any call: the tool's error tells the model what to fix
    return None


def newest_plan(store: Store, workspace: Path, thread_id: str | None = None) -> Plan:
    """The newest plan of the workspace's current thread (or the thread named), for `gk goal --from-plan`."""
    thread = store.get_thread(thread_id) if thread_id else store.current_thread(workspace)
    records = store.events(thread.thread_id, kinds=[PlanEvent]) if thread is not None else []
    plans = [record.event for record in records if isinstance(record.event, PlanEvent)]
    if not plans:
        raise ConfigError("no plan in this workspace", 'run `gk plan "<objective>"` first, then adopt it with '
                                                       "`gk goal --from-plan`")
    return Plan.of(plans[-1])


def plan_markdown(plan: Plan) -> str:
    """The plan as Markdown for a person."""
    parts = ["# Plan", "", f"**Objective:** {plan.objective}", "", "## Steps"]
    parts += [f"{number}. {step}" for number, step in enumerate(plan.steps, 1)] or ["(none listed)"]
    for title, lines in (("Suggested checks", [f"- `{c.name}`: `{c.run}`" for c in plan.checks]),
                         ("Risks", [f"- {risk}" for risk in plan.risks]),
                         ("Questions for you", [f"- {question}" for question in plan.questions])):
        if lines:
            parts += ["", f"## {title}", *lines]
    if plan.source == "text" and plan.text.strip():
        parts += ["", "## As the model wrote it", "", plan.text.strip()]
    return "\n".join(parts)


def adopt_command(plan: Plan, cwd: str | None = None) -> str:
    """The command that adopts the plan with its suggested checks, for the person to review and run."""
    words = ["gk", "goal", "--from-plan"]
    for check in plan.checks:
        words += ["--check", shlex.quote(f"{check.name}={check.run}")]
    if cwd:
        words += ["--cwd", shlex.quote(cwd)]
    return " ".join(words)
