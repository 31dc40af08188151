"""One turn: model request ↔ tool calls until the model yields (answers with no tool call).

Every tool call is committed as an intent before it runs and as a result after, so a crash can never
run a finished call twice nor lose one. A step's events share one commit where that allows: a response
with its first call's intent, a result with the next intent or with what comes before the next request.
The budget and stuck rules are consulted before every model request and after every tool call, not only
at the end of the turn. A turn left in the middle (a budget runs out, a nudge, a pause) still gets its
checkpoint commit, so a resume continues from it.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from goalkeeper.context.replay import OpenTurn
from goalkeeper.core.decide import tree_due
from goalkeeper.core.outcomes import Action, ModelResponded, Proceed, Stop, ToolStepped, TurnEnded
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
from goalkeeper.run.calls import INTERRUPTED
from goalkeeper.run.compaction import compact_if_due, compact_now
from goalkeeper.run.goal_run import GoalRun
from goalkeeper.run.hooks import hooked_call
from goalkeeper.run.review import review_point
from goalkeeper.run.sampling import request_due, sample
from goalkeeper.run.waiting import wait_call
from goalkeeper.tools.base import ToolResult
from goalkeeper.tools.registry import GOAL_TOOL_NAMES, ToolRegistry
from goalkeeper.tools.shell_call import command_of
from goalkeeper.tools.wait import WaitTool
from goalkeeper.workspace.goal import commit_turn

#: Tools that can change the working tree.
WRITING_TOOLS = frozenset({"shell", "write_file", "apply_patch", "spawn_agent"})

async def run_turn(run: GoalRun) -> Action:
    """Drive the open turn (just started, or left open by a crash) to its end; return the next action."""
    turn = run.facts.turn
    action = await _drive(run, turn)
    if not turn.ended:
        await _leave(run, turn, action)
    return action


async def _drive(run: GoalRun, turn: OpenTurn) -> Action:
    if not turn.opened:
        run.record([MessageEvent(role="user", turn_kind=turn.kind, **run.opening(turn.kind))], hold=True)
    # The wrap-up offers only the goal tools, and runs only those: any other call is an unknown tool.
    tools = run.tools.only(GOAL_TOOL_NAMES) if turn.kind == "wrap_up" else run.tools
    while True:
        action = await _answer_open_calls(run, tools)
        if not isinstance(action, Proceed):
            return action
        if (signal := _signal_of(run)) is not None:
            return await _end_turn(run, signal)
        if _yielded(run):  # the turn's last response was text only, and its end was not written yet
            return await _end_turn(run, None)
        if (control := run.poll_controls()) is not None:
            return control
        if (stopped := await compact_if_due(run, tools)) is not None:
            return stopped
        due = run.steer(request_due(run, tools.specs))
        if not isinstance(due.action, Proceed):
            return due.action
        request = ModelRequest(run.conversation.messages(), tools.specs, due.action.max_output_tokens,
                               on_text=run.on_text)
        response = await sample(run, request, due.action.deadline_s, lambda: compact_now(run, tools))
        if isinstance(response, Proceed):
            continue  # cut at the time limit (charged its estimate), or compacted: the next check decides
        if not isinstance(response, ModelResponse):
            return response
        # Written with the first call's intent (or the turn's end): nothing acts on it before then.
        run.steer(ModelResponded(response.usage.charged_tokens, response.usage.cached_input_tokens,
                                 run.price(response), run.elapsed()), [_response_event(response, run)], hold=True)
        if not response.tool_calls:
            return await _end_turn(run, None)


async def _answer_open_calls(run: GoalRun, tools: ToolRegistry) -> Action:
    """Run the newest response's calls that have no result yet, one by one, each a tool boundary."""
    turn = run.facts.turn
    for call in list(turn.unanswered):
        if call not in turn.unanswered:
            continue  # answered already, with the spawn_agent calls it ran beside
        if _signal_of(run) is not None:
            run.record([_result_event(call, ToolResult("skipped: the turn ended with update_goal", ok=False))])
            continue
        # A wait a crash left open is carried on (same deadline): waiting again costs no model request.
        resumed = turn.waiting if turn.waiting is not None and turn.waiting.call_id == call.id else None
        if call.id in turn.intended and resumed is None:
            # Started before a crash and never finished: tell the model instead of running it twice.
            skipped = ToolResult(f"{INTERRUPTED}: the harness stopped while this call ran; it may have partly run. "
                                 "Inspect the workspace before repeating it.", ok=False, interrupted="crash")
            run.record([_result_event(call, skipped)])
            continue
        if (control := run.poll_controls()) is not None:
            return control
        if len(together := _spawns_from(turn, call)) > 1:
            action = await _answer_together(run, together, tools)
            if not isinstance(action, Proceed):
                return action
            continue
        run.before("tool")  # before the intent: a step that stops here has started nothing
        if resumed is None:
            run.record([ToolIntentEvent(call_id=call.id, name=call.name, arguments=call.arguments)])
        # A wait probes through the registry itself; any other call runs between its pre_tool and post_tool hooks.
        result = await (wait_call(run, call, tools, resumed) if call.name == WaitTool.name
                        else hooked_call(run, call, tools))
        # A pause, Ctrl-C or clear that cut the call short is applied before the step is judged.
        control = run.poll_controls() if result.interrupted is not None else None
        tree = await run.tree_hash() if tree_due(run.state) else None
        # Written with the next intent or before the next request: the result is durable before either.
        step = run.steer(ToolStepped(_signature(call), run.elapsed(), tree), [_result_event(call, result)], hold=True)
        if control is not None:
            return control
        if not isinstance(step.action, Proceed):
            return step.action
    return Proceed()


def _spawns_from(turn: OpenTurn, call: ToolCall) -> list[ToolCall]:
    """The run of unanswered spawn_agent calls starting at `call` (none begun before a crash): run at once."""
    calls = turn.unanswered[turn.unanswered.index(call):]
    together = []
    for each in calls:
        if each.name != "spawn_agent" or each.id in turn.intended:
            break
        together.append(each)
    return together


async def _answer_together(run: GoalRun, calls: list[ToolCall], tools: ToolRegistry) -> Action:
    """Several spawn_agent calls of one response, run at once (each child on its own paths; the pool refuses
    what max_threads or an overlap forbids): all intents committed first, then each result as one step."""
    run.before("tool")
    run.record([ToolIntentEvent(call_id=call.id, name=call.name, arguments=call.arguments) for call in calls])
    results = await asyncio.gather(*(hooked_call(run, call, tools) for call in calls))
    control = run.poll_controls() if any(result.interrupted is not None for result in results) else None
    tree = await run.tree_hash() if tree_due(run.state) else None
    action: Action = Proceed()
    for call, result in zip(calls, results, strict=True):
        if not isinstance(action, Proceed):  # the goal stopped or began its wrap-up: the rest are only recorded
            run.record([_result_event(call, result)], hold=True)
            continue
        action = run.steer(ToolStepped(_signature(call), run.elapsed(), tree), [_result_event(call, result)],
                           hold=True).action
    return control or action


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
    ended = TurnEndedEvent(turn=turn.number, turn_kind=turn.kind, tool_calls=turn.calls, signal=None,
                           left_at=left_at)
    run.record([ended, checkpoint] if closes else [checkpoint])


async def _commit_checkpoint(run: GoalRun, turn: int, message: str) -> dict[str, Any]:
    """The turn's checkpoint commit on the goal branch (boundary violations are reverted first), and the
    tree hash of the working tree it leaves: hashed once, again only if a violation was reverted."""
    branch = run.facts.branch
    tree = await run.tree_hash()
    if branch is None:
        return {"tree_hash": tree}
    run.flush()  # the turn's events are in the store before its commit is
    # The Checks trailer states the result for the tree being committed, or `unmeasured`: never the last run's
    passing = run.measured.get(tree) if tree else None
    boundaries = run.contract.boundaries
    committed = await asyncio.to_thread(commit_turn, run.workspace, branch, run.goal.goal_id, turn, passing,
                                        len(run.contract.checks), message, list(run.sandbox.protect),
                                        list(boundaries.paths), boundaries.max_file_bytes)
    return {**committed, "tree_hash": await run.tree_hash() if committed["violations"] else tree}


def _yielded(run: GoalRun) -> bool:
    """The newest message is a response with no tool call: the turn ended there (a step or a crash stopped
    before its end was written), so it is closed rather than sampled again."""
    history = run.conversation.history
    return bool(history) and history[-1].role == "assistant" and not history[-1].tool_calls


def _wrote(turn: OpenTurn) -> bool:
    return not WRITING_TOOLS.isdisjoint(turn.tools_intended)


async def _end_turn(run: GoalRun, signal: dict[str, str | None] | None) -> Action:
    """Close the turn with its checkpoint; the decision says what comes next."""
    calls, wrote = run.facts.turn.calls, _wrote(run.facts.turn)
    checkpoint = _checkpoint_event(run.facts.turn, None)
    if wrote:
        run.before("checkpoint")
    # Only these tools can change the tree; skipping git for read-only turns keeps the turn gap small.
    committed = await _commit_checkpoint(run, run.facts.turn.number, _message_of(checkpoint)) if wrote else {}
    tree = committed["tree_hash"] if wrote else run.state.tree_hash
    checkpoint = checkpoint.model_copy(update={**committed, "tree_hash": tree})
    turn = run.facts.turn
    point = review_point(run.contract.review, run.facts, turn.number, committed) if signal is None else None
    ended = TurnEnded(calls, signal=signal["status"] if signal else None,  # type: ignore[arg-type]
                      blocker=signal.get("blocker") if signal else None, tree_hash=tree, elapsed_s=run.elapsed(),
                      review_point=point)
    events: list[Event] = [TurnEndedEvent(turn=turn.number, turn_kind=turn.kind, tool_calls=calls, signal=signal),
                           checkpoint]
    return run.steer(ended, events, hold=True).action  # a next turn writes it with its opening


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
    return CheckpointEvent(turn=turn.number, turn_kind=turn.kind, note=turn.note,
                           files_touched=sorted(turn.files_touched),
                           commands=[command_of(arguments) for arguments in turn.shell_arguments],
                           tokens=turn.tokens, tree_hash=tree)


def _message_of(checkpoint: CheckpointEvent) -> str:
    """The checkpoint commit's subject: the model's note of what was done, or the turn's kind."""
    return str(checkpoint.note.get("done") or f"{checkpoint.turn_kind} turn")
