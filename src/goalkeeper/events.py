"""The event catalogue: one frozen model per kind of event in a thread's log, and the evidence they carry.

Everything a goal's history says is one of these. The store writes an event as its `kind`, its `actor` and a
JSON payload of the other fields (`payload_of`), and reads rows back through `parse_event`, the one place a
stored payload becomes a typed event. The payload keys are the ones stores have always held, so a store
written before this module existed reads back unchanged, and an event written again gives the same payload.
The two top-level keys Python cannot name a field (`kind` for a turn's kind, `from` for a status change's old
status) are renamed here, and only here.

Class names are the kind in CamelCase plus `Event`, so they never clash with the outcomes `decide` reads
(`core/outcomes.py` has a `TurnEnded`, a `ModelResponded`, a `BudgetRaised`) and one grep finds both spellings.
Imports only pydantic, the standard library and errors: every layer may read events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from goalkeeper.errors import StoreError

EventActor = Literal["user", "model", "harness"]
"""Who caused an event (DESIGN §2). None on the few older records that named nobody."""

EvidenceKind = Literal["check", "constraint", "artifact", "hook"]
"""A contract check, a keep_green constraint, a promised artifact (verify/artifacts.py), or a completion hook's
refusal (run/hooks.py)."""

_RENAMED = {"kind": "turn_kind", "from": "from_status"}
"""Payload keys that are not field names: the discriminator owns `kind`, and `from` is a keyword."""


class _Frozen(BaseModel):
    # Each model's validator is built on its first use: a command that reads a few kinds of event (or none)
    # does not pay for the whole catalogue at import.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Evidence(_Frozen):
    """The result of running one check (or one keep_green constraint) once, or of looking for an artifact."""

    name: str
    kind: EvidenceKind
    command: str
    exit_code: int
    duration_s: float
    output_tail: str
    """The last part of the output (a few KB), enough for a person or the model to see why."""
    passed: bool
    metric: float | None = None
    """The parsed metric value, when the check has a metric and it could be read."""
    target: str | None = None
    """The metric target as written, e.g. "< 120"."""
    timed_out: bool = False
    error: str | None = None
    """Why the check could not be judged normally (command not found, metric not found...)."""
    tests: dict[str, Any] | None = None
    """Per-test evidence from goalkeeper's reporter (verify/tests.py): counts, canary, problems, the ids that
    matter (every id at baseline). None when no reporter understood the check."""
    basis: str = "exit code"
    """What the verdict rests on: "tests" (a reporter's per-test records) or "exit code only"."""
    room: str = ""
    """Where the evidence was taken: "clean room" or "workspace" (empty in events older than the clean room)."""

    @property
    def is_check(self) -> bool:
        """A contract check (what the goal is judged on), not a keep_green constraint."""
        return self.kind == "check"


class Usage(_Frozen):
    """A model's reported token usage, as events keep it."""

    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int = 0
    charged_tokens: int

    @classmethod
    def of(cls, usage: object) -> Usage:
        """The counts of a provider's usage (models.base.Usage), read by attribute."""
        return cls.model_validate(usage, from_attributes=True)


class CallMade(_Frozen):
    """A tool call as the model sent it."""

    id: str
    name: str
    arguments: str
    """The raw JSON text of the arguments."""


class ToolUsed(_Frozen):
    """A tool call a side session made, and whether it worked."""

    name: str
    arguments: Any
    ok: bool


class SuggestedCheckRecord(_Frozen):
    name: str
    run: str


# ---------------------------------------------------------------- the goal's lifecycle


class GoalSetEvent(_Frozen):
    """A person set the goal: its outcome and its whole contract as set."""

    kind: Literal["goal_set"] = "goal_set"
    actor: EventActor | None = "user"
    outcome: str
    verified: bool
    contract: dict[str, Any]


class GoalClearedEvent(_Frozen):
    """The goal was cleared (by a person, or by the harness when it could not be started)."""

    kind: Literal["goal_cleared"] = "goal_cleared"
    actor: EventActor | None = "user"
    why: str | None = None


class StatusChangedEvent(_Frozen):
    """The goal moved from one status to another, with the reason and what the decision saw."""

    kind: Literal["status_changed"] = "status_changed"
    actor: EventActor | None
    from_status: str | None
    to: str
    reason: str
    turn: int | None = None
    error: str | None = None
    checks: list[str] | None = None
    max_attempts: int | None = None
    why: str | None = None
    wrap_up: str | None = None
    blocker: str | None = None
    declared_by: str | None = None
    note: str | None = None
    """A resume's note from the person (the model reads it), or the model's note when it asked for a review."""
    files: list[str] | None = None
    """At a review point: the files changed since the last one."""
    since: str | None = None
    """At a review point: the commit those changes are counted from."""


class BudgetRaisedEvent(_Frozen):
    """A person raised the budget; the fields are the new limits (None: unlimited)."""

    kind: Literal["budget_raised"] = "budget_raised"
    actor: EventActor | None = "user"
    tokens: int | None
    usd: float | None
    time_s: float | None
    turns: int | None


class BudgetExhaustedEvent(_Frozen):
    """A budget ran out; the wrap-up turn `turn` starts."""

    kind: Literal["budget_exhausted"] = "budget_exhausted"
    actor: EventActor | None = "harness"
    reason: str
    turn: int


class BudgetCappedEvent(_Frozen):
    """A cap over several goals (a batch's global budget) was reached: the goal's limit on that budget dropped
    to what it had spent; the fields are the new limits (None: unlimited)."""

    kind: Literal["budget_capped"] = "budget_capped"
    actor: EventActor | None = "harness"
    reason: str
    tokens: int | None
    usd: float | None
    time_s: float | None


class AttemptCountedEvent(_Frozen):
    """Checks failed after a completion claim; each failing check's attempts so far."""

    kind: Literal["attempt_counted"] = "attempt_counted"
    actor: EventActor | None = "harness"
    failing: list[str]
    attempts: dict[str, int]


class NudgeEvent(_Frozen):
    """No progress for too long: the next turn is a nudge, and this is why."""

    kind: Literal["nudge"] = "nudge"
    actor: EventActor | None = "harness"
    why: str


class ChecksRequestedEvent(_Frozen):
    """The checks are due (the model claimed completion, or a turn had no tool calls)."""

    kind: Literal["checks_requested"] = "checks_requested"
    actor: EventActor | None = "harness"
    trigger: Literal["completion", "text_only"]


class TurnStartedEvent(_Frozen):
    """A turn of `turn_kind` started."""

    kind: Literal["turn_started"] = "turn_started"
    actor: EventActor | None = "harness"
    turn_kind: str
    turn: int


class TurnEndedEvent(_Frozen):
    """A turn ended: how many tool calls it made, its update_goal report, or where it was left."""

    kind: Literal["turn_ended"] = "turn_ended"
    actor: EventActor | None = "harness"
    turn: int
    turn_kind: str
    tool_calls: int
    signal: dict[str, str | None] | None
    left_at: str | None = None


class ControlRequestEvent(_Frozen):
    """A person asked a live runner to pause, resume, clear or raise the budget (`add_*` amounts); or the harness
    asked it to stop at a batch's global cap (`cap`)."""

    kind: Literal["control_request"] = "control_request"
    actor: EventActor | None = "user"
    action: Literal["pause", "resume", "clear", "budget", "cap"]
    add_tokens: int | None = None
    add_usd: float | None = None
    add_time_s: float | None = None
    add_turns: int | None = None
    force: bool | None = None
    cap: Literal["tokens", "usd", "time"] | None = None
    """For `cap` (a batch's global budget, asked by the harness): which budget the cap reached."""
    note: str | None = None
    """For `resume`: the person's feedback to the model."""


class ControlAppliedEvent(_Frozen):
    """The control request `request_seq` was applied."""

    kind: Literal["control_applied"] = "control_applied"
    actor: EventActor | None
    request_seq: int | None
    rejected: str | None = None
    """Why `decide` refused the request (the person who asked is told it, on either path)."""


# ---------------------------------------------------------------- inside a turn


class MessageEvent(_Frozen):
    """The harness's hidden message that opens a turn, and the evidence it showed."""

    kind: Literal["message"] = "message"
    actor: EventActor | None = None
    role: Literal["user"] = "user"
    turn_kind: str
    content: str
    evidence_shown: dict[str, list[Any]] | None = None


class ModelResponseEvent(_Frozen):
    """One model response: its text, its tool calls, its usage and price."""

    kind: Literal["model_response"] = "model_response"
    actor: EventActor | None = "model"
    content: str
    tool_calls: list[CallMade]
    usage: Usage
    usd: float
    model: str
    finish_reason: str | None


class ToolIntentEvent(_Frozen):
    """A tool call is about to run (recorded first, so a crash never runs it twice)."""

    kind: Literal["tool_intent"] = "tool_intent"
    actor: EventActor | None = "model"
    call_id: str
    name: str
    arguments: str


class ToolResultEvent(_Frozen):
    """A tool call's result as the model sees it, with what it touched."""

    kind: Literal["tool_result"] = "tool_result"
    actor: EventActor | None = "harness"
    call_id: str
    name: str
    output: str
    ok: bool
    signal: str | None
    data: dict[str, Any]
    files_touched: list[str]
    full_output_chars: int | None


class ApprovalEvent(_Frozen):
    """How a shell command's approval went: the rule or policy, and whether a person was asked."""

    kind: Literal["approval"] = "approval"
    actor: EventActor | None = "harness"
    call_id: str | None
    command: str
    action: str
    reason: str
    rule: str | None
    asked: bool
    remembered: bool | None = None
    matches: list[str] | None = None


class ApprovalRuleEvent(_Frozen):
    """A person's approval to remember: an allow rule for the goal (or, with no goal, the chat)."""

    kind: Literal["approval_rule"] = "approval_rule"
    actor: EventActor | None = "user"
    match: str
    action: Literal["allow"] = "allow"
    command: str
    goal_id: str | None


class CheckpointEvent(_Frozen):
    """A turn's progress record: the model's note, files, commands, tokens, and its commit on the goal branch."""

    kind: Literal["checkpoint"] = "checkpoint"
    actor: EventActor | None = "harness"
    turn: int
    turn_kind: str
    note: dict[str, Any]
    """The turn's last `checkpoint` note: done, verified, remaining, next, assumptions, checklist_done."""
    files_touched: list[str]
    commands: list[str]
    tokens: int
    tree_hash: str | None
    commit: str | None = None
    files_committed: list[str] | None = None
    violations: list[dict[str, Any]] | None = None
    oversized: list[str] | None = None
    left_branch: str | None = None
    notice: str | None = None
    left_at: str | None = None


class RecoveryCheckpointEvent(_Frozen):
    """A restart committed what an interrupted turn left in the workspace."""

    kind: Literal["recovery_checkpoint"] = "recovery_checkpoint"
    actor: EventActor | None = "harness"
    commit: str
    files: list[str]
    turn: int | None
    violations: list[dict[str, Any]]
    notice: str | None = None


class ProviderRetryEvent(_Frozen):
    """A model request failed and is tried again after `delay_s`."""

    kind: Literal["provider_retry"] = "provider_retry"
    actor: EventActor | None = "harness"
    attempt: int
    error: str
    status_code: int | None
    delay_s: float


class UsageChargedEvent(_Frozen):
    """Usage charged without a response: a failed attempt's report, or a cut request's estimate."""

    kind: Literal["usage_charged"] = "usage_charged"
    actor: EventActor | None = "harness"
    why: str
    charged_tokens: int
    usd: float | None = None


class ContextTrimmedEvent(_Frozen):
    """Long tool outputs before message `upto_message` were cut to `keep_chars`."""

    kind: Literal["context_trimmed"] = "context_trimmed"
    actor: EventActor | None = "harness"
    upto_message: int
    keep_chars: int
    why: str | None = None


class CompactedEvent(_Frozen):
    """The conversation was replaced by the model's summary and the harness's hand-off."""

    kind: Literal["compacted"] = "compacted"
    actor: EventActor | None = "harness"
    summary: str
    handoff: str
    responses: int
    turn: int
    request_tokens: int
    missing_sections: list[str]
    evidence_shown: dict[str, list[Any]] | None
    usage: Usage
    model: str


class CompactionFailedEvent(_Frozen):
    """The compaction's summary request failed or came back unusable; the harness's own hand-off follows."""

    kind: Literal["compaction_failed"] = "compaction_failed"
    actor: EventActor | None = "harness"
    why: str
    request_tokens: int


# ---------------------------------------------------------------- the workspace and verification


class SandboxEvent(_Frozen):
    """How this run confines commands."""

    kind: Literal["sandbox"] = "sandbox"
    actor: EventActor | None = "harness"
    mode: str
    network: bool
    processes: str


class GoalBranchEvent(_Frozen):
    """The goal's branch was created from `base_commit` (and the snapshot of a dirty tree, if any)."""

    kind: Literal["goal_branch"] = "goal_branch"
    actor: EventActor | None = "harness"
    name: str
    base_commit: str
    snapshot_commit: str | None = None
    notice: str | None = None


class InstructionFile(_Frozen):
    """One project-instructions file a goal found (AGENTS.md, CLAUDE.md): where, how big, how much it read."""

    path: str
    """`$GOALKEEPER_HOME/AGENTS.md`, or the file's path in the repository (`AGENTS.md`, `src/api/AGENTS.md`)."""
    size: int
    """The file's size in bytes."""
    loaded: int
    """Bytes of its text in the prompt (0 for a file not read)."""
    cut: bool = False
    """`project_doc_max_bytes` cut it short (or left no room for it at all)."""
    skipped: str | None = None
    """Why it was not read, when it was not: a symbolic link, too big to read."""


class InstructionsLoadedEvent(_Frozen):
    """The project instructions read for this goal once, before its first request, from its base commit: the
    text is kept, so every request of the goal, after a compaction or a restart too, carries the same prefix."""

    kind: Literal["instructions_loaded"] = "instructions_loaded"
    actor: EventActor | None = "harness"
    commit: str
    """The commit the repository's files were read from (the goal's base, or its snapshot)."""
    workdir: str
    """The goal's working folder in the repository ('' for its root): files were read from the root down to it."""
    max_bytes: int
    """`project_doc_max_bytes` when they were read."""
    files: list[InstructionFile]
    """Every file found, in the order the model reads them (global first, the nearest folder's last)."""
    text: str
    """What the system prompt is followed by in every request of the goal."""


class BaselineMirrorEvent(_Frozen):
    """The clean room's sources: the base commit's mirror and the environment snapshot."""

    kind: Literal["baseline_mirror"] = "baseline_mirror"
    actor: EventActor | None = "harness"
    mirror: str
    base_commit: str
    env: str
    env_dirs: list[str]
    env_skipped: list[Any]
    resumed: bool
    remade: bool | None = None


class VerificationPinsEvent(_Frozen):
    """The verification surface pinned before the baseline (`pins` is Pins.to_json's text)."""

    kind: Literal["verification_pins"] = "verification_pins"
    actor: EventActor | None = "harness"
    pins: str
    edits: str
    files: list[str]


class VerificationSurfaceEvent(_Frozen):
    """The surface the baseline run was observed to read (`surface` is Surface.to_json's text)."""

    kind: Literal["verification_surface"] = "verification_surface"
    actor: EventActor | None = "harness"
    surface: str
    summary: dict[str, Any]


class BaselineEvent(_Frozen):
    """Every check and constraint run once before the first turn; red constraints are dropped."""

    kind: Literal["baseline"] = "baseline"
    actor: EventActor | None = "harness"
    evidence: list[Evidence]
    keep_green_active: list[str]
    keep_green_dropped: list[str]
    tree_hash: str | None


class EvidenceEvent(_Frozen):
    """The checks ran on tree `tree_hash` after turn `turn` (and what the clean room saw change)."""

    kind: Literal["evidence"] = "evidence"
    actor: EventActor | None = "harness"
    trigger: str
    turn: int
    evidence: list[Evidence]
    surface: dict[str, Any] | None = None
    tree_hash: str | None = None
    """The tree the checks measured; None in events written before it was recorded (unmeasured)."""


# ---------------------------------------------------------------- sessions beside the goal


class ChatMessageEvent(_Frozen):
    """A person's chat message."""

    kind: Literal["chat_message"] = "chat_message"
    actor: EventActor | None = "user"
    content: str


class ChatResponseEvent(_Frozen):
    """The model's chat answer and its tool calls."""

    kind: Literal["chat_response"] = "chat_response"
    actor: EventActor | None = "model"
    content: str
    tool_calls: list[CallMade]
    usage: Usage
    model: str


class ChatToolResultEvent(_Frozen):
    """A chat tool call's result."""

    kind: Literal["chat_tool_result"] = "chat_tool_result"
    actor: EventActor | None = "harness"
    call_id: str | None
    name: str | None
    output: str
    ok: bool


class _Session(_Frozen):
    """What a side session cost: usage, model, requests and the tools it used."""

    usage: Usage
    model: str
    requests: int
    tool_calls: list[ToolUsed]


class SideEvent(_Session):
    """A side question about the goal and its answer (never charged to the goal)."""

    kind: Literal["side"] = "side"
    actor: EventActor | None = "user"
    question: str
    answer: str
    events: int
    charged_to_goal: bool = False


class PlanEvent(_Session):
    """A plan the model submitted for an objective."""

    kind: Literal["plan"] = "plan"
    actor: EventActor | None = "model"
    objective: str
    steps: list[str]
    checks: list[SuggestedCheckRecord]
    risks: list[str]
    questions: list[str]
    text: str
    source: str
    given_objective: str | None = None


class DraftEvent(_Session):
    """A contract the model drafted from a description, with its lint."""

    kind: Literal["draft"] = "draft"
    actor: EventActor | None = "model"
    description: str
    output: str
    contract: dict[str, Any]
    lint: dict[str, Any]
    fix_rounds: int


class DistilledEvent(_Frozen):
    """A PRD distilled from a spike goal, written to `output`."""

    kind: Literal["distilled"] = "distilled"
    actor: EventActor | None = "model"
    output: str
    usage: Usage
    model: str
    branch: str
    base_commit: str
    charged_to_goal: bool = False


class RestatedEvent(_Frozen):
    """The model's restatement of the goal, and whether the goal was charged for it."""

    kind: Literal["restated"] = "restated"
    actor: EventActor | None = "model"
    text: str
    usage: Usage
    usd: float
    model: str
    charged_to_goal: bool


class ImplementsEvent(_Frozen):
    """This goal implements the PRD of a spike goal."""

    kind: Literal["implements"] = "implements"
    actor: EventActor | None = "user"
    spike_goal_id: str
    spike_branch: str | None
    base_commit: str
    prd: str
    spike_status: str | None


class NotifyAttemptEvent(_Frozen):
    """One delivery attempt of a status notification for event `event_seq`."""

    kind: Literal["notify_attempt"] = "notify_attempt"
    actor: EventActor | None = "harness"
    event_seq: int
    url: str
    status: str
    attempt: int | None
    """None for a delivery abandoned when the run ended."""
    max_attempts: int | None = None
    format: str | None = None
    delivered: bool
    status_code: int | None
    error: str | None
    duration_s: float | None = None


class EngineStartedEvent(_Frozen):
    """The goal was submitted to an engine other than the local runner: where its workflow and workspace live,
    so faces can find the workflow (to signal or show it) and workers the repository to clone."""

    kind: Literal["engine_started"] = "engine_started"
    actor: EventActor | None = "user"
    engine: Literal["temporal"]
    address: str
    namespace: str
    workflow_id: str
    task_queue: str
    remote: str
    ref: str | None = None
    takeover_s: float = 30.0
    continue_every: int = 200
    tls: bool = False
    """The submitter connected over TLS (the credentials themselves are never recorded)."""


class ReportPushedEvent(_Frozen):
    """The goal's report was pushed to its remote (a commit of REPORT.md and report.json at `ref`)."""

    kind: Literal["report_pushed"] = "report_pushed"
    actor: EventActor | None = "harness"
    remote: str
    ref: str
    commit: str
    status: str


class ForkedEvent(_Frozen):
    """This thread was forked from another (`gk fork`): its branch starts at the parent's checkpoint, and its goals
    open with the parent's conversation so far, as a hand-off."""

    kind: Literal["forked"] = "forked"
    actor: EventActor | None = "user"
    parent_thread_id: str
    parent_goal_id: str | None = None
    branch: str
    commit: str
    handoff: str
    """The message that stands for the parent's conversation (empty when the parent had no goal)."""


class HookRanEvent(_Frozen):
    """One `[[hooks]]` command ran (run/hooks.py): at which seam, how it ended, and whether it vetoed."""

    kind: Literal["hook_ran"] = "hook_ran"
    actor: EventActor | None = "harness"
    event: str
    """The hook's event: pre_tool, post_tool, post_turn, status_change or completion."""
    command: str
    exit_code: int
    """124 when it timed out (its process group was killed)."""
    duration_s: float
    output_tail: str
    """The end of what it printed, stdout then stderr."""
    timed_out: bool = False
    vetoed: bool = False
    """Exit 2 of a pre_tool hook (the call did not run) or a completion hook (the completion was refused)."""
    tool: str | None = None
    call_id: str | None = None


WaitEnd = Literal["done", "timeout", "paused", "cleared", "interrupted", "time_budget", "refused"]
"""Why a wait ended: its command exited 0, its deadline passed, a person paused or cleared the goal, Ctrl-C or
SIGTERM reached the harness, the goal's time budget ran out, or the approval rules refused its command."""


class WaitStartedEvent(_Frozen):
    """A `wait` call began: the command probed, how often, and the wall-clock deadline a restarted run keeps."""

    kind: Literal["wait_started"] = "wait_started"
    actor: EventActor | None = "harness"
    call_id: str
    until: str
    interval_s: float
    timeout_s: float
    """The timeout in force: the one asked for, cut to the goal's remaining time budget and the maximum."""
    started_at: float
    deadline: float
    """Epoch seconds: after this the wait ends as a timeout (one probe still runs when a restart comes later)."""
    note: str = ""
    """How the asked interval or timeout was adjusted, told to the model with the result."""


class WaitEndedEvent(_Frozen):
    """A wait ended: why, after how many probes (those of the run that ended it: a restart counts afresh), and the
    last probe's exit code (None when none finished)."""

    kind: Literal["wait_ended"] = "wait_ended"
    actor: EventActor | None = "harness"
    call_id: str
    reason: WaitEnd
    probes: int
    exit_code: int | None
    waited_s: float
    """Wall-clock seconds since the wait started (across restarts)."""


class SubagentStartedEvent(_Frozen):
    """A child agent started (`spawn_agent`): written in its own thread, first, and in the parent goal's."""

    kind: Literal["subagent_started"] = "subagent_started"
    actor: EventActor | None = "model"
    child_thread_id: str
    parent_thread_id: str
    parent_goal_id: str
    call_id: str | None = None
    """The parent's `spawn_agent` call that started it."""
    depth: int
    """1 for a child of the goal's own model, 2 for a grandchild."""
    task: str
    paths: list[str]
    """Where it may write: workspace-relative globs or folders."""
    tools: list[str]


class SubagentUsageEvent(_Frozen):
    """One of a child's model responses, charged to the parent goal's budget (written in the parent's thread)."""

    kind: Literal["subagent_usage"] = "subagent_usage"
    actor: EventActor | None = "harness"
    child_thread_id: str
    usage: Usage
    usd: float = 0.0


class SubagentEndedEvent(_Frozen):
    """A child agent ended: written in its own thread and in the parent goal's."""

    kind: Literal["subagent_ended"] = "subagent_ended"
    actor: EventActor | None = "harness"
    child_thread_id: str
    status: Literal["done", "stopped", "failed"]
    """done: it ended its turn with a summary; stopped: a bound, the budget or a pause; failed: the provider."""
    summary: str
    """Its final text (done), or why it stopped."""
    files_changed: list[dict[str, Any]] = []
    """{path, added, removed} per file it changed, against the tree when it started."""
    requests: int = 0
    charged_tokens: int = 0
    usd: float = 0.0


# ---- issue 18: MCP client
class McpServersEvent(_Frozen):
    """The MCP servers this run started (config.toml's `[mcp_servers]`), each with how many tools it added."""

    kind: Literal["mcp_servers"] = "mcp_servers"
    actor: EventActor | None = "harness"
    servers: dict[str, int]


Event = Annotated[
    GoalSetEvent | GoalClearedEvent | StatusChangedEvent | BudgetRaisedEvent | BudgetCappedEvent |
    BudgetExhaustedEvent | AttemptCountedEvent | NudgeEvent | ChecksRequestedEvent | TurnStartedEvent | TurnEndedEvent |
    ControlRequestEvent | ControlAppliedEvent | MessageEvent | ModelResponseEvent | ToolIntentEvent |
    ToolResultEvent | ApprovalEvent | ApprovalRuleEvent | CheckpointEvent | RecoveryCheckpointEvent |
    ProviderRetryEvent | UsageChargedEvent | ContextTrimmedEvent | CompactedEvent | CompactionFailedEvent |
    SandboxEvent | GoalBranchEvent | BaselineMirrorEvent | VerificationPinsEvent | VerificationSurfaceEvent |
    BaselineEvent | EvidenceEvent | ChatMessageEvent | ChatResponseEvent | ChatToolResultEvent | SideEvent |
    PlanEvent | DraftEvent | DistilledEvent | RestatedEvent | ImplementsEvent | NotifyAttemptEvent |
    EngineStartedEvent | ReportPushedEvent | ForkedEvent | InstructionsLoadedEvent | HookRanEvent |
    WaitStartedEvent | WaitEndedEvent | SubagentStartedEvent | SubagentUsageEvent | SubagentEndedEvent |
    McpServersEvent,
    Field(discriminator="kind"),
]
"""Any event of a thread's log."""

_BY_KIND: dict[str, type[_Frozen]] = {model.model_fields["kind"].default: model
                                      for model in get_args(get_args(Event)[0])}
"""The model of each kind, as `Event`'s discriminator picks it, without building a validator for the union."""


def event_types(kinds: Iterable[str]) -> list[type[Event]]:
    """The event classes of `kinds` (each a known kind), for the store's reads by class."""
    return [_BY_KIND[kind] for kind in kinds]  # type: ignore[misc]


def parse_event(kind: str, actor: str | None, payload: dict[str, Any]) -> Event:
    """The typed event of a stored row; a row no model accepts is one StoreError that names it."""
    fields = {_RENAMED.get(key, key): value for key, value in payload.items()}
    model = _BY_KIND.get(kind)
    if model is None:
        raise StoreError(f"a stored `{kind}` event is of no kind this goalkeeper knows",
                         hint="the store was written by a newer goalkeeper; upgrade to read it")
    try:
        return model.model_validate({**fields, "kind": kind, "actor": actor})  # type: ignore[return-value]
    except ValidationError as error:
        raise StoreError(f"a stored `{kind}` event does not read as one: {error.errors()[0]['msg']}",
                         hint="the store was written by another goalkeeper version; open it with that version, "
                              "or move it aside to start a new one") from None


def payload_of(event: Event) -> dict[str, Any]:
    """The event as its stored payload, under the keys stores have always used: the fields that were given
    (an optional field left out stays out, so a payload reads back as it was written), less kind and actor."""
    fields = event.model_dump(mode="json", include=event.model_fields_set - {"kind", "actor"})
    back = {field: key for key, field in _RENAMED.items()}
    return {back.get(key, key): value for key, value in fields.items()}
