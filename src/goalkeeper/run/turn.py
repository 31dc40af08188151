"""One turn: model request ↔ tool calls until the model yields (answers with no tool call).

Every tool call is committed as an intent before it runs and as a result after, so a crash can never
run a finished call twice nor lose one. The budget and stuck rules are consulted before every model
request and after every tool call, not only at the end of the turn. A turn left in the middle (a budget
runs out, a nudge, a pause) still gets its checkpoint commit, so a resume continues from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Protocol

from goalkeeper.context.history import Conversation, OpenTurn
from goalkeeper.core.decide import tree_due
from goalkeeper.core.lifecycle import TurnKind
from goalkeeper.core.outcomes import (
    Action,
    Decision,
    GoalState,
    ModelResponded,
    Outcome,
    Proceed,
    RequestDue,
    Stop,
    ToolStepped,
    TurnEnded,
)
from goalkeeper.events import (
    CallMade,
    CheckpointEvent,
    Event,
    MessageEvent,
    ModelResponseEvent,
    ToolIntentEvent,
    ToolResultEvent,
    TurnEndedEvent,
    Usage,
)
from goalkeeper.models.base import ModelRequest, ModelResponse, ToolCall
from goalkeeper.tools.base import ToolResult
from goalkeeper.tools.registry import GOAL_TOOL_NAMES, ToolRegistry
from goalkeeper.tools.shell import command_of

#: Tools that can change the working tree.
WRITING_TOOLS = frozenset({"shell", "write_file", "apply_patch"})

#: How a tool result says its call was cut short; the same word a crash's unfinished intent gets.
INTERRUPTED = "interrupted"


class TurnHost(Protocol):
    """What a turn needs from the runner that drives it."""

    conversation: Conversation
    tools: ToolRegistry
    state: GoalState
    on_text: Callable[[str], None] | None
    """Receives the model's text as it streams (a UI shows it as it arrives)."""

    def steer(self, outcome: Outcome, extra: list[Event] | None = None) -> Decision: ...
    def record(self, events: list[Event]) -> None: ...
    def elapsed(self) -> float: ...
    def poll_controls(self) -> Action | None: ...
    def opening(self, kind: TurnKind) -> dict[str, Any]: ...
    async def compact_if_due(self, tools: ToolRegistry) -> Action | None: ...
    def request_due(self, tools: ToolRegistry) -> RequestDue: ...
    async def sample(self, request: ModelRequest, deadline_s: float | None) -> ModelResponse | Action: ...
    async def call_tool(self, call: ToolCall, tools: ToolRegistry) -> ToolResult: ...
    async def tree_hash(self) -> str | None: ...
    async def commit_checkpoint(self, turn: int, message: str) -> dict[str, Any]: ...
    def known_tree_hash(self) -> str | None: ...
    def price(self, response: ModelResponse) -> float: ...


async def run_turn(host: TurnHost) -> Action:
    """Drive the open turn (just started, or left open by a crash) to its end; return the next action."""
    turn = host.conversation.turn
    action = await _drive(host, turn)
    if not turn.ended:
        await _leave(host, turn, action)
    return action


async def _drive(host: TurnHost, turn: OpenTurn) -> Action:
    if not turn.opened:
        host.record([MessageEvent(role="user", turn_kind=turn.kind, **host.opening(turn.kind))])
    # The wrap-up offers only the goal tools, and runs only those: any other call is an unknown tool.
    tools = host.tools.only(GOAL_TOOL_NAMES) if turn.kind == "wrap_up" else host.tools
    while True:
        action = await _answer_open_calls(host, tools)
        if not isinstance(action, Proceed):
            return action
        if (signal := _signal_of(host.conversation)) is not None:
            return await _end_turn(host, signal)
        if (control := host.poll_controls()) is not None:
            return control
        if (stopped := await host.compact_if_due(tools)) is not None:
            return stopped
        due = host.steer(host.request_due(tools))
        if not isinstance(due.action, Proceed):
            return due.action
        request = ModelRequest(host.conversation.messages(), tools.specs, due.action.max_output_tokens,
                               on_text=host.on_text)
        response = await host.sample(request, due.action.deadline_s)
        if isinstance(response, Proceed):
            continue  # cut at the time limit and charged its estimate: the next check decides
        if not isinstance(response, ModelResponse):
            return response
        host.steer(ModelResponded(response.usage.charged_tokens, response.usage.cached_input_tokens,
                                  host.price(response), host.elapsed()), [_response_event(response, host)])
        if not response.tool_calls:
            return await _end_turn(host, None)


async def _answer_open_calls(host: TurnHost, tools: ToolRegistry) -> Action:
    """Run the newest response's calls that have no result yet, one by one, each a tool boundary."""
    turn = host.conversation.turn
    for call in list(turn.unanswered):
        if _signal_of(host.conversation) is not None:
            host.record([_result_event(call, ToolResult("skipped: the turn ended with update_goal", ok=False))])
            continue
        if call.id in turn.intended:
            # Started before a crash and never finished: tell the model instead of running it twice.
            skipped = ToolResult(f"{INTERRUPTED}: the harness stopped while this call ran; it may have partly run. "
                                 "Inspect the workspace before repeating it.", ok=False, interrupted="crash")
            host.record([_result_event(call, skipped)])
            continue
        if (control := host.poll_controls()) is not None:
            return control
        host.record([ToolIntentEvent(call_id=call.id, name=call.name, arguments=call.arguments)])
        result = await host.call_tool(call, tools)
        # A pause, Ctrl-C or clear that cut the call short is applied before the step is judged.
        control = host.poll_controls() if result.interrupted is not None else None
        tree = await host.tree_hash() if tree_due(host.state) else None
        step = host.steer(ToolStepped(_signature(call), host.elapsed(), tree), [_result_event(call, result)])
        if control is not None:
            return control
        if not isinstance(step.action, Proceed):
            return step.action
    return Proceed()


async def _leave(host: TurnHost, turn: OpenTurn, action: Action) -> None:
    """The turn is left before its end. Unless it is only paused (a resume continues the same turn), the
    calls it will never run get a result, and a goal that stops closes the turn (a resume starts afresh,
    not inside an old wrap-up). What it wrote gets its checkpoint commit, so a raise and resume go on
    from there instead of meeting the goal's own changes as foreign ones."""
    paused = isinstance(action, Stop) and action.status == "paused"
    if not paused and turn.unanswered:
        host.record([_result_event(call, ToolResult("skipped: the harness ended this turn before the call ran",
                                                    ok=False)) for call in turn.unanswered])
    closes = isinstance(action, Stop) and not paused and turn is host.conversation.turn
    wrote = _wrote(turn)
    if not (wrote or closes):
        return
    left_at = action.reason.value if isinstance(action, Stop) else type(action).__name__
    checkpoint = _checkpoint_event(turn, None).model_copy(update={"left_at": left_at})
    if wrote:
        committed = await host.commit_checkpoint(turn.number, _message_of(checkpoint))
        checkpoint = checkpoint.model_copy(update={**committed, "tree_hash": await host.tree_hash()})
    ended = TurnEndedEvent(turn=turn.number, turn_kind=turn.kind, tool_calls=_calls(turn), signal=None,
                           left_at=left_at)
    host.record([ended, checkpoint] if closes else [checkpoint])


def _wrote(turn: OpenTurn) -> bool:
    return any(isinstance(r.event, ToolIntentEvent) and r.event.name in WRITING_TOOLS for r in turn.records)


def _calls(turn: OpenTurn) -> int:
    return sum(len(r.event.tool_calls) for r in turn.records if isinstance(r.event, ModelResponseEvent))


async def _end_turn(host: TurnHost, signal: dict[str, str | None] | None) -> Action:
    """Close the turn with its checkpoint; the decision says what comes next."""
    calls, wrote = _calls(host.conversation.turn), _wrote(host.conversation.turn)
    checkpoint = _checkpoint_event(host.conversation.turn, None)
    committed = await host.commit_checkpoint(host.conversation.turn.number, _message_of(checkpoint)) if wrote else {}
    # Only these tools can change the tree; skipping git for read-only turns keeps the turn gap small.
    tree = await host.tree_hash() if wrote else host.known_tree_hash()
    checkpoint = checkpoint.model_copy(update={**committed, "tree_hash": tree})
    ended = TurnEnded(calls, signal=signal["status"] if signal else None,  # type: ignore[arg-type]
                      blocker=signal.get("blocker") if signal else None, tree_hash=tree, elapsed_s=host.elapsed())
    turn = host.conversation.turn
    events: list[Event] = [TurnEndedEvent(turn=turn.number, turn_kind=turn.kind, tool_calls=calls, signal=signal),
                           checkpoint]
    return host.steer(ended, events).action


def _signal_of(conversation: Conversation) -> dict[str, str | None] | None:
    """The update_goal report made in this turn, if any (it ends the turn)."""
    return conversation.turn.signal


def _signature(call: ToolCall) -> str:
    """Equal for the same call (name and arguments), whatever it printed: output that varies from run to
    run (`date +%N`) must not hide a spin."""
    text = f"{call.name}\0{call.arguments}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _response_event(response: ModelResponse, host: TurnHost) -> ModelResponseEvent:
    return ModelResponseEvent(
        content=response.content,
        tool_calls=[CallMade(id=c.id, name=c.name, arguments=c.arguments) for c in response.tool_calls],
        usage=Usage.of(response.usage), usd=host.price(response), model=response.model,
        finish_reason=response.finish_reason)


def _result_event(call: ToolCall, result: ToolResult) -> ToolResultEvent:
    return ToolResultEvent(call_id=call.id, name=call.name, output=result.output, ok=result.ok, signal=result.signal,
                           data=result.event_data(), files_touched=list(result.files_touched),
                           full_output_chars=len(result.full_output) if result.full_output else None)


def _checkpoint_event(turn: OpenTurn, tree: str | None) -> CheckpointEvent:
    """The turn's progress record: the model's note, files touched, commands run, usage, tree."""
    note: dict[str, Any] = {}
    files: set[str] = set()
    commands: list[str] = []
    tokens = 0
    for record in turn.records:
        match record.event:
            case ToolResultEvent(files_touched=touched, name=name, data=data):
                files.update(touched)
                note = data.get("note", note) if name == "checkpoint" else note
            case ToolIntentEvent(name="shell", arguments=arguments):
                commands.append(command_of(arguments))
            case ModelResponseEvent(usage=usage):
                tokens += usage.charged_tokens
    return CheckpointEvent(turn=turn.number, turn_kind=turn.kind, note=note, files_touched=sorted(files),
                           commands=commands, tokens=tokens, tree_hash=tree)


def _message_of(checkpoint: CheckpointEvent) -> str:
    """The checkpoint commit's subject: the model's note of what was done, or the turn's kind."""
    return str(checkpoint.note.get("done") or f"{checkpoint.turn_kind} turn")
