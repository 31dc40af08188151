"""The `Tool` base, the arguments a tool takes, the context it runs in, and what it returns.

A tool declares its arguments as one pydantic model (`ToolArgs`); that model is both the JSON schema the
model sees (`Tool.spec`) and the validation its call goes through (`Tool.parse`). A refusal or failure inside
a tool is a `ToolResult(ok=False)` the model can read, never an exception: the goal keeps running.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, ValidationError
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import CoreSchema

from goalkeeper.context.tokens import EstimatedTokens
from goalkeeper.events import ApprovalEvent, ApprovalRuleEvent, Event
from goalkeeper.models.base import ToolSpec
from goalkeeper.sandbox.policy import SandboxPolicy

if TYPE_CHECKING:
    from goalkeeper.tools.agents import Spawner

GoalSignal = Literal["complete", "blocked", "paused"]


def _whole_number(value: object) -> object:
    """5.0 is the integer 5, as JSON Schema says (models send it); a bool or 5.5 is left to fail."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Integer arguments are strict (no "5", no true), but a float with no fractional part counts.
Count = Annotated[int, Field(ge=1), BeforeValidator(_whole_number)]
"""An integer argument of 1 or more (a line count, a timeout)."""
Offset = Annotated[int, Field(ge=0), BeforeValidator(_whole_number)]
"""An integer argument of 0 or more (a char position)."""


class ToolArgs(BaseModel):
    """The base of every tool's arguments: strict types, and unknown names refused.

    The schemas say `additionalProperties: false`, but models still invent arguments; silently ignoring
    one (a misspelt `timeout`) would run something other than what the model asked for.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Document(ToolArgs):
    """The arguments of a tool whose arguments are a document that its own parser checks (a drafted goal is
    checked as goal.toml is): taken whole, and such a tool writes its `spec` by hand."""

    model_config = ConfigDict(extra="allow")

    def fields(self) -> dict[str, Any]:
        """The document's fields, as sent."""
        return dict(self.model_extra or {})


class ArgumentError(ValueError):
    """A tool argument is missing, unknown or of the wrong type; the message names it and what to send."""


A = TypeVar("A", bound=ToolArgs)


@dataclass(frozen=True)
class ToolContext:
    """Where and how a tool runs."""

    workspace: Path
    """Absolute, resolved workspace root. File tools never touch anything outside it."""
    default_timeout_s: float = 120.0
    """Timeout for a shell command that does not name its own."""
    max_timeout_s: float = 1800.0
    output_token_limit: int = 4_000
    """Output longer than this many tokens is cut to head + tail with a marker naming the stored full text."""
    counter: EstimatedTokens | None = None
    """Counts the model's tokens; None counts with a fresh estimate."""
    read_blob: Callable[[str], str] | None = None
    """Reads a stored full output by id (`read_output`); None where no store is at hand."""
    env: dict[str, str] | None = None
    """Environment for child processes; None inherits the runner's."""
    goal_view: dict[str, Any] = field(default_factory=dict)
    """A snapshot of the goal for `get_goal`: objective, status, checks, usage, budget."""
    sandbox: SandboxPolicy | None = None
    """How shell commands are confined; None runs them unconfined (tests of the tools themselves)."""
    headless: bool = True
    """No person is there to approve a command: rules that say "ask" deny instead."""
    spawn: Spawner | None = None
    """Starts a child agent (`spawn_agent`) and returns its result; None where children cannot be spawned."""

    def token_counter(self) -> EstimatedTokens:
        """The counter to size output with: the context's own, else a fresh estimate."""
        return self.counter or EstimatedTokens()


@dataclass(frozen=True)
class CommandApproval:
    """How the approval rules (and perhaps a person) judged one `shell` command."""

    command: str
    action: str
    reason: str
    rule: str | None
    asked: bool = False
    """A person was asked."""
    matches: tuple[str, ...] | None = None
    """With an approval the person asked to remember: the prefixes now allowed (None: nothing to remember)."""

    def events(self, call_id: str | None, goal_id: str | None) -> list[Event]:
        """The `approval` event, then one `approval_rule` per remembered prefix (goal-scoped: a remembered
        approval is an event of this goal, or of the chat with no goal, never config; a restart reloads it)."""
        approval = ApprovalEvent(call_id=call_id, **self.payload())
        rules = [ApprovalRuleEvent(match=match, action="allow", command=self.command, goal_id=goal_id)
                 for match in self.matches or ()]
        return [approval, *rules]

    def payload(self) -> dict[str, Any]:
        """The `approval` event's payload (less the call id)."""
        shown: dict[str, Any] = {"command": self.command, "action": self.action, "reason": self.reason,
                                 "rule": self.rule, "asked": self.asked}
        if self.matches is not None:
            shown.update(remembered=bool(self.matches), matches=list(self.matches))
        return shown


@dataclass(frozen=True)
class ToolResult:
    """What a tool call produced: text for the model, and typed side channels for the harness."""

    output: str
    """Text for the model (already cut to the limit)."""
    ok: bool = True
    full_output: str | None = None
    """The uncut output when `output` was cut; stored under `blob_id_of(full_output)`, the id the cut's marker
    names, so nothing is lost and the model can page through it."""
    signal: GoalSignal | None = None
    """Set by `update_goal`: the model requests completion or declares blocked."""
    report: Mapping[str, str | None] | None = None
    """With `signal`: update_goal's report (status, summary, blocker, next_input)."""
    note: Mapping[str, JsonValue] | None = None
    """Set by `checkpoint`: the model's progress note for this turn."""
    approval: CommandApproval | None = None
    """Set for a judged `shell` call: what the rules and the person decided."""
    interrupted: str | None = None
    """Why the harness cut this call short (a pause, a crash, a clear); None when it ran to its end."""
    blob_id: str | None = None
    """Where the runner stored `full_output` once it took it out of the result."""
    facts: Mapping[str, JsonValue] = field(default_factory=dict)
    """What the tool measured, for the record only (exit code, bytes written, matches): nothing branches on it."""
    files_touched: tuple[str, ...] = ()
    """Workspace-relative paths this call wrote or deleted."""

    def event_data(self) -> dict[str, JsonValue]:
        """The `data` of the `tool_result` event: the facts and the side channels under their keys."""
        data: dict[str, JsonValue] = dict(self.facts)
        if self.report is not None:
            data.update(self.report)
        if self.note is not None:
            data["note"] = dict(self.note)
        if self.approval is not None:
            data["approval"] = self.approval.payload()
        if self.interrupted is not None:
            data["interrupted"] = self.interrupted
        if self.blob_id is not None:
            data["blob_id"] = self.blob_id
        return data


class Tool(ABC, Generic[A]):
    """A capability the model may call by name; its `Args` model is its schema and its validation."""

    name: ClassVar[str]
    description: ClassVar[str]
    Args: type[A]
    spec: ToolSpec
    """The definition sent to the model, derived from `name`, `description` and `Args` (an MCP tool's is its
    instance's own, tools/mcp.py)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Args" in cls.__dict__ and "spec" not in cls.__dict__:
            cls.spec = ToolSpec(cls.name, cls.description, tool_schema(cls.Args))

    def parse(self, arguments: Mapping[str, Any]) -> A:
        """The call's arguments, validated; ArgumentError names the argument and what to send.

        A null counts as a left-out argument, as the models mean it.
        """
        given = {key: value for key, value in arguments.items() if value is not None}
        try:
            return self.Args.model_validate(given)
        except ValidationError as error:
            raise ArgumentError(explain(error, self.spec, given)) from None

    async def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        """Validate `arguments`, then run; bad arguments are `ok=False` with what to fix."""
        try:
            args = self.parse(arguments)
        except ArgumentError as error:
            return ToolResult(str(error), ok=False)
        return await self.run(args, context)

    @abstractmethod
    async def run(self, args: A, context: ToolContext) -> ToolResult:
        """Run once. A refusal comes back as `ok=False`, not as an exception."""


def tool_schema(args: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of `args` as the providers take it: no titles, no `$defs`, no null branches."""
    generated = args.model_json_schema(schema_generator=_ProviderSchema)
    properties = {name: _plain(schema) for name, schema in generated.get("properties", {}).items()}
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if generated.get("required"):
        schema["required"] = generated["required"]
    schema["additionalProperties"] = False
    return schema


class _ProviderSchema(GenerateJsonSchema):
    """An optional argument's schema is its type's: leaving it out is how a model says "none"."""

    def nullable_schema(self, schema: CoreSchema) -> JsonSchemaValue:
        inner: CoreSchema = schema["schema"]
        return self.generate_inner(inner)


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """One property's schema, `type` first and `description` last, without what pydantic adds for Python's
    sake (a title, a default the harness fills in)."""
    kept = {key: _plain(value) if isinstance(value, dict) else value
            for key, value in schema.items() if key not in ("title", "default")}
    return dict(sorted(kept.items(), key=lambda item: {"type": 0, "description": 2}.get(item[0], 1)))


def explain(error: ValidationError, spec: ToolSpec, given: Mapping[str, Any]) -> str:
    """One sentence for the model: the first problem with the arguments, and what to send instead."""
    problems = error.errors()
    properties: dict[str, Any] = spec.parameters["properties"]
    unknown = sorted(str(p["loc"][0]) for p in problems if p["type"] == "extra_forbidden")
    if unknown:
        listed = ", ".join(f"'{name}'" for name in unknown)
        return f"unknown argument {listed}; {spec.name} takes: {', '.join(properties) or 'no arguments'}"
    problem = next((p for p in problems if p["type"] == "missing"), problems[0])
    name = str(problem["loc"][0])
    wanted = _kind(properties.get(name, {}))
    if problem["type"] == "missing":
        return f"missing required argument '{name}' ({wanted})"
    value = given.get(name)
    if problem["type"] == "greater_than_equal":
        return f"argument '{name}' must be at least {problem.get('ctx', {})['ge']}, got {value}"
    if problem["type"] == "literal_error":
        wanted = f"one of {problem.get('ctx', {})['expected']}"
    return f"argument '{name}' must be {wanted}, got {_describe(value)}"


def _kind(schema: Mapping[str, Any]) -> str:
    """`a string`, `an integer`, `an array of integers`: what a property's schema asks for."""
    kind = str(schema.get("type", "value"))
    if kind == "array" and "items" in schema:
        return f"an array of {_kind(schema['items']).split(' ', 1)[1]}s"
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _describe(value: Any) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{shown} ({type(value).__name__})"
