"""Drafting a goal: a read-only session investigates the repository and submits a goal contract for review.

A draft is a file for a person to read, edit and then set with `gk goal --file`: this module writes it and
stores a `draft` event, and it never sets a goal. The model proposes every element; the harness validates
the contract, lints it (running its checks once in a scratch copy) and gives the model one chance to fix
what lint calls an error before the file is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from goalkeeper.config.resolve import choose_model
from goalkeeper.context.prompts import as_data, render
from goalkeeper.contract.lint import Finding, LintReport
from goalkeeper.contract.toml import dump_contract, parse_contract
from goalkeeper.errors import ConfigError, ContractError, ProviderError
from goalkeeper.events import DraftEvent
from goalkeeper.models.base import Message, ModelResponse, ToolSpec
from goalkeeper.sessions.defaults import DRAFT_MAX_REQUESTS
from goalkeeper.sessions.session import LastRequest, Session, SessionCost, ToolUse, open_session, run_session
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import GoalSettings, ModelSettings
from goalkeeper.store import Store
from goalkeeper.tools.base import Document, Tool, ToolContext, ToolResult
from goalkeeper.tools.registry import ToolRegistry, default_registry
from goalkeeper.verify.lint import lint_goal_async

DRAFT_TOOLS = ("read_file", "search", "read_output")
"""What the model may use to investigate: it reads, it never runs or writes anything."""
LINT_FIX_ROUNDS = 1
"""How many times lint errors go back to the model before the draft is written as it stands."""

_STRINGS = {"type": "array", "items": {"type": "string"}}
_FIELDS = ("outcome", "checks", "keep_green", "protect", "paths", "network", "iteration", "blocked_when", "budget")
_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "outcome": {"type": "string", "description": "What will be true when the goal is done: concrete, checkable."},
        "checks": {"type": "array", "description": "Commands the harness runs; each passes on exit 0 (and its metric).",
                   "items": {"type": "object", "properties": {
                       "name": {"type": "string", "description": "letters, digits, _ . -"},
                       "run": {"type": "string", "description": "a shell command, run at the repository root"},
                       "timeout": {"type": "string", "description": 'e.g. "10m"'},
                       "metric": {"type": "object", "description": "give regex or json_path, and target",
                                  "properties": {"regex": {"type": "string", "description": "one capture group"},
                                                 "json_path": {"type": "string"},
                                                 "target": {"type": "string", "description": 'e.g. "< 120"'}},
                                  "required": ["target"], "additionalProperties": False}},
                             "required": ["name", "run"], "additionalProperties": False}},
        "keep_green": {**_STRINGS, "description": "Commands that pass now and must still pass at the end."},
        "protect": {**_STRINGS, "description": "Globs that must never change (e.g. tests/**)."},
        "paths": {**_STRINGS, "description": "Globs that may change; empty means anything not protected."},
        "network": {"type": "boolean", "description": "Whether commands may reach the network (default false)."},
        "iteration": {"type": "object", "properties": {
            "policy": {"type": "string", "description": "How to choose the next step."},
            "max_attempts": {"type": "integer", "minimum": 1},
            "no_progress_turns": {"type": "integer", "minimum": 1}},
            "required": ["policy"], "additionalProperties": False},
        "blocked_when": {"type": "string", "description": "When to stop and report instead of guessing."},
        "budget": {"type": "object", "properties": {
            "tokens": {"type": "integer", "minimum": 1}, "usd": {"type": "number"},
            "time": {"type": "string", "description": 'e.g. "1h"'}, "turns": {"type": "integer", "minimum": 1}},
            "additionalProperties": False},
    },
    "required": ["outcome", "checks", "keep_green", "protect", "iteration", "blocked_when", "budget"],
    "additionalProperties": False,
}


def contract_from_arguments(arguments: dict[str, Any]) -> Contract:
    """The contract in `submit_goal`'s arguments, validated as goal.toml is; a ContractError says what to fix."""
    unknown = sorted(set(arguments) - set(_FIELDS))
    if unknown:
        raise ContractError(f"submit_goal: unknown field(s) {unknown}; use {list(_FIELDS)}")
    data: dict[str, Any] = {key: arguments[key] for key in ("outcome", "blocked_when", "checks", "iteration", "budget")
                            if arguments.get(key) is not None}
    data["constraints"] = {"keep_green": arguments.get("keep_green") or []}
    data["boundaries"] = {key: arguments[key] for key in ("protect", "paths", "network")
                          if arguments.get(key) is not None}
    try:  # through TOML, so the draft is exactly what goal.toml can hold, and errors read as they do there
        text = tomli_w.dumps(_without_nulls(data))
    except (TypeError, ValueError) as error:
        raise ContractError(f"submit_goal: the arguments cannot be written as goal.toml ({error})") from None
    return parse_contract(text, source="submit_goal")


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


class SubmitGoal(Tool[Document]):
    """The tool that ends a drafting session: its arguments are the goal, validated and linted before it counts.

    Lint errors go back to the model as this tool's result, `LINT_FIX_ROUNDS` times; after that the draft is
    kept as it stands, and its findings are shown to the person.
    """

    Args = Document
    spec = ToolSpec("submit_goal", "Submit the drafted goal. It is validated and linted (its checks are run once "
                                   "in a scratch copy); fix what comes back, or it is written for review.", _SCHEMA)

    def __init__(self, workspace: Path, run_checks: bool, key_env: str | None = None) -> None:
        self.workspace, self.run_checks, self.key_env = workspace, run_checks, key_env
        self.contract: Contract | None = None
        self.lint: LintReport | None = None
        self.fix_rounds = 0
        """Times lint errors went back to the model."""

    async def run(self, args: Document, context: ToolContext) -> ToolResult:
        try:
            contract = contract_from_arguments(args.fields())
        except ContractError as error:
            return ToolResult(f"{error.message}\nCall submit_goal again with the fix.", ok=False)
        report = await lint_goal_async(contract, self.workspace, run=self.run_checks, key_env=self.key_env)
        if report.errors and self.fix_rounds < LINT_FIX_ROUNDS:
            self.fix_rounds += 1
            return ToolResult("Lint found errors; the draft is not written yet. Fix them and call submit_goal "
                              "again:\n" + findings_text(report.errors), ok=False)
        self.contract, self.lint = contract, report
        return ToolResult("Goal draft recorded for the person to review.")


def findings_text(findings: list[Finding] | tuple[Finding, ...]) -> str:
    """One line per finding: severity, element, what is wrong and what to write."""
    return "\n".join(f"- {f.severity} [{f.element}] {f.message} (fix: {f.fix})" for f in findings)


@dataclass(frozen=True)
class DraftResult:
    """A written draft, what lint says about it, and what drafting cost."""

    contract: Contract
    path: Path
    lint: LintReport
    text: str
    """The file as written: the header comment, then goal.toml."""
    thread_id: str
    seq: int
    """The `draft` event's seq."""
    cost: SessionCost

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"path": str(self.path), "contract": self.contract.model_dump(mode="json"), "lint": self.lint.as_json(),
                "thread_id": self.thread_id, "seq": self.seq, **self.cost.payload()}


def draft_goal(store: Store, workspace: Path, description: str, output: Path, *, force: bool = False,
               thread_id: str | None = None, model: ModelSettings | None = None, run_checks: bool = True,
               max_requests: int = DRAFT_MAX_REQUESTS, on_text: Callable[[str], None] | None = None,
               on_tool: Callable[[ToolUse], None] | None = None) -> DraftResult:
    """Draft a goal for `description`, write it to `output` for review, and store a `draft` event. Never sets it.

    `model` overrides the thread's goal's model (which overrides config). Provider failures raise.
    """
    if not description.strip():
        raise ConfigError("the description is empty", 'write gk draft "make the checkout tests pass"')
    if output.exists() and not force:
        raise ConfigError(f"{output} already exists", "pass --force to overwrite it, or --output another path")
    thread = store.thread_for(workspace, thread_id, create=True)
    goal = store.get_goal(thread.thread_id)
    settings = goal.settings if goal else GoalSettings()
    chosen = choose_model(workspace, model, settings)
    submit = SubmitGoal(workspace, run_checks, chosen.api_key_env)  # the checks it runs never see the key
    tools = ToolRegistry([*default_registry().only(DRAFT_TOOLS).tools.values(), submit])
    messages = [Message("system", render("system")), Message("user", render("draft", description=as_data(description)))]
    opened = open_session(store, workspace, tools, settings, model=chosen, goal_view={"status": "drafting"},
                          on_text=on_text, on_tool=on_tool)
    session, (contract, lint) = run_session(opened, lambda session: _drafting_session(session, submit, messages,
                                                                                      max_requests))
    text = draft_text(contract, description, session.model_name, lint)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    draft = DraftEvent(description=description, output=str(output), contract=contract.model_dump(mode="json"),
                       lint=lint.as_json(), fix_rounds=submit.fix_rounds, **session.cost().payload())
    [record] = store.append_events(thread.thread_id, [draft])
    return DraftResult(contract, output, lint, text, thread.thread_id, record.seq, session.cost())


async def _drafting_session(session: Session, submit: SubmitGoal, messages: list[Message],
                            max_requests: int) -> tuple[Contract, LintReport]:
    """Requests and read-only calls until `submit_goal` is accepted; a text-only answer is asked to submit."""
    def submitted(_: ModelResponse) -> tuple[Contract, LintReport] | None:
        return (submit.contract, submit.lint) if submit.contract is not None and submit.lint is not None else None

    async def last_answer(final: ModelResponse) -> tuple[Contract, LintReport]:
        submit.fix_rounds = LINT_FIX_ROUNDS  # the last request: whatever it submits is written, findings shown
        await session.run_calls([call for call in final.tool_calls if call.name == "submit_goal"][:1])
        if (done := submitted(final)) is None:
            raise ProviderError(f"the model submitted no valid goal in {session.requests} requests",
                                "try again, give a more specific description, or raise --max-requests")
        return done

    return await session.run(messages, max_requests, submitted,
                             LastRequest("drafting session", "goal: call `submit_goal` with it", last_answer,
                                         (SubmitGoal.spec,)), nudge=render("draft_submit"))


def draft_text(contract: Contract, description: str, model: str, lint: LintReport) -> str:
    """The draft file: a header comment for the person, then the contract as goal.toml."""
    said = [f"#   {line}" for line in description.strip().splitlines()]
    counts = f"{len(lint.errors)} error(s), {len(lint.warnings)} warning(s), score {lint.total}/{2 * len(lint.scores)}"
    header = [f"# Drafted by {model or 'the model'} from this description:", *said,
              "# This is a draft for review. goalkeeper never sets it: read it, edit it, then",
              "#   gk lint --file <this file>   and   gk goal --file <this file>",
              f"# Lint when drafted: {counts}" + (" (checks run once)" if lint.ran else " (checks not run)")]
    header += [f"#   {f.severity} [{f.element}] {' '.join(f.message.split())}" for f in lint.findings
               if f.severity != "info"]
    body = dump_contract(contract)
    if parse_contract(body, source="the draft") != contract:  # never write a file that reads back differently
        raise ContractError("the drafted contract does not survive its TOML form", "report this as a bug")
    return "\n".join(header) + "\n\n" + body
