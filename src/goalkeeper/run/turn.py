"""One turn: model request ↔ tool calls until the model yields (answers with no tool call).

Every tool call is committed as an intent before it runs and as a result after, so a crash can never
run a finished call twice nor lose one. The budget and stuck rules are consulted before every model
request and after every tool call, not only at the end of the turn. A turn left in the middle (a budget
runs out, a nudge, a pause) still gets its checkpoint commit, so a resume continues from it.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from goalkeeper.context.replay import OpenTurn
from goalkeeper.core.decide import tree_due
from goalkeeper.core.outcomes import Action, ModelResponded, Proceed, Stop, ToolStepped, TurnEnded
from goalkeeper.events import (
    BaselineEvent,
    CallMade,
    CheckpointEvent,
    Event,
    EvidenceEvent,
    MessageEvent,
    ModelResponseEvent,
    ToolIntentEvent,
    ToolResultEvent,
    TurnEndedEvent,
    Usage,
)
from goalkeeper.models.base import ModelRequest, ModelResponse, ToolCall
from goalkeeper.run.calls import INTERRUPTED, call_tool
from goalkeeper.run.compaction import compact_if_due
from goalkeeper.run.goal_run import GoalRun
from goalkeeper.run.sampling import request_due, sample
from goalkeeper.tools.base import ToolResult
from goalkeeper.tools.registry import GOAL_TOOL_NAMES, ToolRegistry
from goalkeeper.tools.shell import command_of
from goalkeeper.workspace.goal import commit_turn, measured_trees

#: Tools that can change the working tree.
WRITING_TOOLS = frozenset({"shell", "write_file", "apply_patch"})

async def run_turn(run: GoalRun) -> Action:
    """Drive the open turn (just started, or left open by a crash) to its end; return the next action."""
    turn = run.facts.turn
    action = await _drive(run, turn)
    if not turn.ended:
        await _leave(run, turn, action)
    return action


async def _drive(run: GoalRun, turn: OpenTurn) -> Action:
    if not turn.opened:
        run.record([MessageEvent(role="user", turn_kind=turn.kind, **run.opening(turn.kind))])
    # The wrap-up offers only the goal tools, and runs only those: any other call is an unknown tool.
    tools = run.tools.only(GOAL_TOOL_NAMES) if turn.kind == "wrap_up" else run.tools
    while True:
        action = await _answer_open_calls(run, tools)
        if not isinstance(action, Proceed):
            return action
        if (signal := _signal_of(run)) is not None:
            return await _end_turn(run, signal)
        if (control := run.poll_controls()) is not None:
            return control
        if (stopped := await compact_if_due(run, tools)) is not None:
            return stopped
        due = run.steer(request_due(run, tools.specs))
        if not isinstance(due.action, Proceed):
            return due.action
        request = ModelRequest(run.conversation.messages(), tools.specs, due.action.max_output_tokens,
                               on_text=run.on_text)
        response = await sample(run, request, due.action.deadline_s)
        if isinstance(response, Proceed):
            continue  # cut at the time limit and charged its estimate: the next check decides
        if not isinstance(response, ModelResponse):
            return response
        run.steer(ModelResponded(response.usage.charged_tokens, response.usage.cached_input_tokens,
                                  run.price(response), run.elapsed()), [_response_event(response, run)])
        if not response.tool_calls:
            return await _end_turn(run, None)


async def _answer_open_calls(run: GoalRun, tools: ToolRegistry) -> Action:
    """Run the newest response's calls that have no result yet, one by one, each a tool boundary."""
    turn = run.facts.turn
    for call in list(turn.unanswered):
        if _signal_of(run) is not None:
            run.record([_result_event(call, ToolResult("skipped: the turn ended with update_goal", ok=False))])
            continue
        if call.id in turn.intended:
            # Started before a crash and never finished: tell the model instead of running it twice.
            skipped = ToolResult(f"{INTERRUPTED}: the harness stopped while this call ran; it may have partly run. "
                                 "Inspect the workspace before repeating it.", ok=False, interrupted="crash")
            run.record([_result_event(call, skipped)])
            continue
        if (control := run.poll_controls()) is not None:
            return control
        run.record([ToolIntentEvent(call_id=call.id, name=call.name, arguments=call.arguments)])
        result = await call_tool(run, call, tools)
        # A pause, Ctrl-C or clear that cut the call short is applied before the step is judged.
        control = run.poll_controls() if result.interrupted is not None else None
        tree = await run.tree_hash() if tree_due(run.state) else None
        step = run.steer(ToolStepped(_signature(call), run.elapsed(), tree), [_result_event(call, result)])
        if control is not None:
            return control
        if not isinstance(step.action, Proceed):
            return step.action
    return Proceed()


async def _leave(run: GoalRun, turn: OpenTurn, action: Action) -> None:
    """The turn is left before its end. Unless it is only paused (a resume continues the same turn), the
    calls it will never run get a result, and a goal that stops closes the turn (a resume starts afresh,
    not inside an old wrap-up). What it wrote gets its checkpoint commit, so a raise and resume go on
    from there instead of meeting the goal's own changes as foreign ones."""
    paused = isinstance(action, Stop) and action.status == "paused"
    if not paused and turn.unanswered:
        run.record([_result_event(call, ToolResult("skipped: the harness ended this turn before the call ran",
                                                    ok=False)) for call in turn.unanswered])
    closes = isinstance(action, Stop) and not paused and turn is run.facts.turn
    wrote = _wrote(turn)
    if not (wrote or closes):
        return
    left_at = action.reason.value if isinstance(action, Stop) else type(action).__name__
    checkpoint = _checkpoint_event(turn, None).model_copy(update={"left_at": left_at})
    if wrote:
        committed = await _commit_checkpoint(run, turn.number, _message_of(checkpoint))
        checkpoint = checkpoint.model_copy(update=committed)
    ended = TurnEndedEvent(turn=turn.number, turn_kind=turn.kind, tool_calls=_calls(turn), signal=None,
                           left_at=left_at)
    run.record([ended, checkpoint] if closes else [checkpoint])


async def _commit_checkpoint(run: GoalRun, turn: int, message: str) -> dict[str, Any]:
    """The turn's checkpoint commit on the goal branch (boundary violations are reverted first), and the
    tree hash of the working tree it leaves: hashed once, again only if a violation was reverted."""
    branch = run.facts.branch
    tree = await run.tree_hash()
    if branch is None:
        return {"tree_hash": tree}
    # The Checks trailer states the result for the tree being committed, or `unmeasured`: never the last run's
    runs = run.store.events(run.goal.thread_id, goal_id=run.goal.goal_id, kinds=[BaselineEvent, EvidenceEvent])
    passing = measured_trees(runs).get(tree) if tree else None
    boundaries = run.contract.boundaries
    committed = await asyncio.to_thread(commit_turn, run.workspace, branch, run.goal.goal_id, turn, passing,
                                        len(run.contract.checks), message, list(run.sandbox.protect),
                                        list(boundaries.paths), boundaries.max_file_bytes)
    return {**committed, "tree_hash": await run.tree_hash() if committed["violations"] else tree}


def _wrote(turn: OpenTurn) -> bool:
    return any(isinstance(e, ToolIntentEvent) and e.name in WRITING_TOOLS for e in turn.events)


def _calls(turn: OpenTurn) -> int:
    return sum(len(e.tool_calls) for e in turn.events if isinstance(e, ModelResponseEvent))


async def _end_turn(run: GoalRun, signal: dict[str, str | None] | None) -> Action:
    """Close the turn with its checkpoint; the decision says what comes next."""
    calls, wrote = _calls(run.facts.turn), _wrote(run.facts.turn)
    checkpoint = _checkpoint_event(run.facts.turn, None)
    # Only these tools can change the tree; skipping git for read-only turns keeps the turn gap small.
    committed = await _commit_checkpoint(run, run.facts.turn.number, _message_of(checkpoint)) if wrote else {}
    tree = committed["tree_hash"] if wrote else run.state.tree_hash
    checkpoint = checkpoint.model_copy(update={**committed, "tree_hash": tree})
    ended = TurnEnded(calls, signal=signal["status"] if signal else None,  # type: ignore[arg-type]
                      blocker=signal.get("blocker") if signal else None, tree_hash=tree, elapsed_s=run.elapsed())
    turn = run.facts.turn
    events: list[Event] = [TurnEndedEvent(turn=turn.number, turn_kind=turn.kind, tool_calls=calls, signal=signal),
                           checkpoint]
    return run.steer(ended, events).action


def _signal_of(run: GoalRun) -> dict[str, str | None] | None:
    """The update_goal report made in this turn, if any (it ends the turn)."""
    return run.facts.turn.signal


def _signature(call: ToolCall) -> str:
    """Equal for the same call (name and arguments), whatever it printed: output that varies from run to
    run (`date +%N`) must not hide a spin."""
    text = f"{call.name}\0{call.arguments}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _response_event(response: ModelResponse, run: GoalRun) -> ModelResponseEvent:
    return ModelResponseEvent(
        content=response.content,
        tool_calls=[CallMade(id=c.id, name=c.name, arguments=c.arguments) for c in response.tool_calls],
        usage=Usage.of(response.usage), usd=run.price(response), model=response.model,
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
    for event in turn.events:
        match event:
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
