"""Child agents: what `spawn_agent` starts, run as a bounded loop of requests and tool calls on a thread of its own.

A child gets a fresh conversation (the goal's prefix, so the cache holds, then its task), the goal's tools
narrowed to what it was given, and may write only inside its `paths`: the file tools refuse anything else and
its shell sees the workspace read-only but for them. Before each of its requests the parent goal's budget
rule is asked (the same `decide` the parent's requests pass), and each response is charged to the parent goal
at once, so the goal's spending is its own plus its children's, exactly. A pause, clear or Ctrl-C stops a child
at its next boundary (and the parent's watch of the `spawn_agent` call cuts a request in flight).

A child has no checks of its own: it ends when it answers with text alone, at its request bound, or when
stopped. Its summary and the files it changed (a diff stat against the tree when it started) come back as the
parent's tool result, never as verified work: only the parent goal's checks decide.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from goalkeeper.context.history import counted_chars, tool_schema_text
from goalkeeper.context.prompts import as_data, render
from goalkeeper.core.decide import decide
from goalkeeper.core.outcomes import ModelResponded, Proceed, RequestDue
from goalkeeper.errors import ProviderError, WorkspaceError
from goalkeeper.events import (
    CallMade,
    Event,
    ModelResponseEvent,
    SubagentEndedEvent,
    SubagentStartedEvent,
    SubagentUsageEvent,
    ToolIntentEvent,
    ToolResultEvent,
    Usage,
)
from goalkeeper.models.base import Message, ModelRequest, ModelResponse, ToolCall
from goalkeeper.models.retry import RetryPolicy, complete_with_retries
from goalkeeper.run.goal_run import GoalRun
from goalkeeper.run.sampling import charge_failed
from goalkeeper.spec.settings import ModelSettings
from goalkeeper.tools.agents import ChildRequest, Spawner, child_tool_names
from goalkeeper.tools.base import ToolContext, ToolResult
from goalkeeper.tools.registry import GOAL_TOOL_NAMES, ToolRegistry
from goalkeeper.workspace.git import git, toplevel

CHILD_MAX_REQUESTS = 40
"""A child that has not ended its task with a summary after this many requests is stopped."""

ChildStatus = Literal["done", "stopped", "failed"]


@dataclass
class Child:
    """One running child agent: its thread, tools and context, and what it has spent."""

    thread_id: str
    depth: int
    request: ChildRequest
    tools: ToolRegistry
    context: ToolContext
    start_tree: str
    requests: int = 0
    charged_tokens: int = 0
    usd: float = 0.0


def spawner_of(run: GoalRun, context: ToolContext, depth: int, tools: Sequence[str]) -> Spawner | None:
    """`spawn_agent`'s callback for an agent at `depth` (0: the goal's own model) whose `tools` run in `context`;
    None where `[agents]` allows it no children, or where no sandbox policy could hold a child to its paths."""
    agents = run.settings.run.agents
    if agents.max_threads == 0 or depth >= agents.max_depth or context.sandbox is None:
        return None
    offered = [name for name in tools if name not in GOAL_TOOL_NAMES]
    if context.sandbox.mode == "danger-full-access":
        offered = [name for name in offered if name != "shell"]  # nothing would hold a child's shell to its paths

    async def spawn(request: ChildRequest) -> ToolResult:
        return await run_child(run, context, request, depth + 1, offered)

    return spawn


async def run_child(run: GoalRun, context: ToolContext, request: ChildRequest, depth: int,
                    offered: Sequence[str]) -> ToolResult:
    """Run one child to its end and return the parent's tool result; a refusal (a tool it may not have, the
    pool is full, its paths overlap a running child's) is a tool error and starts nothing."""
    agents = run.settings.run.agents
    names = child_tool_names(offered, request.tools, depth < agents.max_depth)
    if isinstance(names, str):
        return ToolResult(names, ok=False)
    if (refused := run.agents.refusal(request, agents.max_threads)) is not None:
        return ToolResult(refused, ok=False)
    thread_id = run.store.create_thread(run.workspace, current=False).thread_id
    run.agents.running[thread_id] = request.roots  # before any await: the calls started beside it see it
    try:
        child = await _open(run, context, request, depth, names, thread_id)
        return await _finish(run, child)
    finally:
        run.agents.running.pop(thread_id, None)


async def _finish(run: GoalRun, child: Child) -> ToolResult:
    """Run the opened child to its end, and write that end (a cancelled child's too, then re-raised)."""
    roots = child.request.roots
    try:
        status, summary = await _converse(run, child)
    except ProviderError as error:
        status, summary = "failed", f"the model provider failed: {error.message}"
    except asyncio.CancelledError:
        files, note = _listed(run.workspace, roots, child.start_tree)
        _end(run, child, "stopped", "the goal was paused, cleared or out of time while the child ran" + note, files)
        raise
    files, note = await asyncio.to_thread(_listed, run.workspace, roots, child.start_tree)
    return _end(run, child, status, summary + note, files)


def _listed(workspace: Path, roots: tuple[Path, ...], start_tree: str) -> tuple[list[dict[str, Any]], str]:
    """The files changed under `roots`, or none and a note saying why git could not list them (the child's
    end is still reported)."""
    try:
        return changed_files(workspace, roots, start_tree), ""
    except WorkspaceError as error:
        return [], f"\n\n(the harness could not list the files it changed: {error.message})"


async def _open(run: GoalRun, context: ToolContext, request: ChildRequest, depth: int, names: list[str],
                thread_id: str) -> Child:
    """The child on its thread (`thread_id`, not the workspace's current one): its folders, sandbox and tools,
    and the tree it starts from; its start is written in its thread and in the parent goal's."""
    for folder in request.folders:
        folder.mkdir(parents=True, exist_ok=True)  # the sandbox can only bind a folder that exists
    assert context.sandbox is not None  # spawner_of gives no spawner without one
    sandbox = replace(context.sandbox, paths=request.paths,
                      writable_only=tuple(root for root in request.roots if root.exists()))
    child_context = replace(context, sandbox=sandbox, headless=True, goal_view={})
    child_context = replace(child_context, spawn=spawner_of(run, child_context, depth, names))
    start_tree = await asyncio.to_thread(snapshot, run.workspace, request.roots)
    started = SubagentStartedEvent(child_thread_id=thread_id, parent_thread_id=run.goal.thread_id,
                                   parent_goal_id=run.goal.goal_id, depth=depth, task=request.task,
                                   paths=list(request.paths), tools=names)
    run.store.append_events(thread_id, [started])
    run.record([started])
    return Child(thread_id, depth, request, run.tools.only(names), child_context, start_tree)


async def _converse(run: GoalRun, child: Child) -> tuple[ChildStatus, str]:
    """Requests and their tool calls until the child answers with text alone, is stopped, or reaches its bound."""
    paths = ", ".join(f"`{path.lstrip('/')}`" for path in child.request.paths)
    messages = [*run.conversation.prefix,
                Message("user", render("subagent", task=as_data(child.request.task), paths=paths))]
    specs = child.tools.specs
    for _ in range(CHILD_MAX_REQUESTS):
        if (why := _stop_reason(run)) is not None:
            return "stopped", why
        room = _room(run, messages, child)
        if isinstance(room, str):
            return "stopped", room
        response = await _request(run, child, ModelRequest(tuple(messages), specs, room))
        messages.append(Message("assistant", response.content, tool_calls=response.tool_calls))
        if not response.tool_calls:
            return "done", response.content
        for call in response.tool_calls:
            if (why := _stop_reason(run)) is not None:
                return "stopped", why
            messages.append(await _call(run, child, call))
    return "stopped", f"it made {CHILD_MAX_REQUESTS} requests without ending its task with a summary"


def _stop_reason(run: GoalRun) -> str | None:
    """Why the child must stop at this boundary: the parent's pause or clear waits in its inbox, or the run is
    being interrupted (the parent applies the request itself, after the `spawn_agent` call ends)."""
    if run.interrupted or run.lease_lost:
        return "the harness is stopping the goal"
    if any(request.action in ("pause", "clear") for _, request in run.controls()):
        return "a person paused or cleared the goal"
    return None


def _room(run: GoalRun, messages: list[Message], child: Child) -> int | str | None:
    """The parent's budget rule for the child's next request, priced as the parent's are (every input token
    uncached): the output it may produce, or why there is no room. Nothing is committed: the parent's own
    next step meets the same limit and starts its wrap-up."""
    counter = run.conversation.counter
    tokens = counter.of_chars(sum(map(counted_chars, messages)) + len(tool_schema_text(child.tools.specs)))
    price = run.unit_price
    due = RequestDue(tokens, run.elapsed(), tokens * price.input / 1_000_000 if price else 0.0,
                     price.output / 1_000_000 if price else 0.0)
    action = decide(run.state, due).action
    if isinstance(action, Proceed):
        return action.max_output_tokens
    return "the goal's budget has no room for the child's next request"


async def _request(run: GoalRun, child: Child, request: ModelRequest) -> ModelResponse:
    """One request with the goal model's retries; its usage (and a failed attempt's) charged to the goal."""
    model = run.settings.model or ModelSettings()
    policy = RetryPolicy(max_retries=model.max_retries, max_total_s=model.retry_max_total_s)
    response = await complete_with_retries(run.model, request, policy,
                                           lambda _attempt, error, _delay: charge_failed(run, error))
    usage, usd = response.usage, run.price(response)
    child.requests += 1
    child.charged_tokens += usage.charged_tokens
    child.usd += usd
    run.steer(ModelResponded(usage.charged_tokens, usage.cached_input_tokens, usd, run.elapsed()),
              [SubagentUsageEvent(child_thread_id=child.thread_id, usage=Usage.of(usage), usd=usd)])
    _record(run, child, [ModelResponseEvent(
        content=response.content, tool_calls=[CallMade(id=c.id, name=c.name, arguments=c.arguments)
                                              for c in response.tool_calls],
        usage=Usage.of(usage), usd=usd, model=response.model, finish_reason=response.finish_reason)])
    return response


async def _call(run: GoalRun, child: Child, call: ToolCall) -> Message:
    """Run one of the child's tool calls in its context; the result as the next request's tool message."""
    _record(run, child, [ToolIntentEvent(call_id=call.id, name=call.name, arguments=call.arguments)])
    result = await child.tools.execute(call, child.context)
    if result.full_output is not None:
        run.store.put_blob(result.full_output)  # under the id the cut's marker names, for read_output
    full = len(result.full_output) if result.full_output else None
    _record(run, child, [ToolResultEvent(call_id=call.id, name=call.name, output=result.output, ok=result.ok,
                                         signal=None, data=result.event_data(),
                                         files_touched=list(result.files_touched), full_output_chars=full)])
    return Message("tool", result.output, tool_call_id=call.id, name=call.name)


def _record(run: GoalRun, child: Child, events: list[Event]) -> None:
    run.store.append_events(child.thread_id, events)


def _end(run: GoalRun, child: Child, status: ChildStatus, summary: str,
         files: list[dict[str, Any]]) -> ToolResult:
    """Write the child's end in its thread and the parent goal's, and make the parent's tool result."""
    ended = SubagentEndedEvent(child_thread_id=child.thread_id, status=status, summary=summary,
                               files_changed=files, requests=child.requests, charged_tokens=child.charged_tokens,
                               usd=round(child.usd, 6))
    run.store.append_events(child.thread_id, [ended])
    run.record([ended])
    return ToolResult(_result_text(ended), ok=status == "done",
                      facts={"child_thread_id": child.thread_id, "status": status},
                      files_touched=tuple(str(change["path"]) for change in files))


def _result_text(ended: SubagentEndedEvent) -> str:
    """What the parent's model reads: the child's outcome, its summary, and what it changed."""
    head = {"done": "finished", "stopped": "was stopped", "failed": "failed"}[ended.status]
    lines = [f"child agent {ended.child_thread_id} {head} after {ended.requests} request(s), "
             f"{ended.charged_tokens:,} tokens charged to the goal.", "", ended.summary.strip() or "(no summary)", ""]
    if ended.files_changed:
        lines.append("files changed since it started:")
        lines += [f"  {change['path']}  " + ("(binary)" if change["added"] is None
                                             else f"+{change['added']} -{change['removed']}")
                  for change in ended.files_changed]
    else:
        lines.append("it changed no files.")
    lines.append("Its work is not verified: inspect it, and let the goal's checks decide.")
    return "\n".join(lines)


def snapshot(workspace: Path, roots: tuple[Path, ...]) -> str:
    """The git tree of what lies under `roots` now (untracked files included, ignored ones not), written with
    a scratch index so the goal's own index is never touched."""
    top = toplevel(workspace)
    present = [str(root.relative_to(top)) for root in roots if root.exists()]
    with tempfile.TemporaryDirectory() as scratch:
        env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
        if present:
            git(top, "add", "-A", "--", *present, env=env)
        return git(top, "write-tree", env=env).strip()


def changed_files(workspace: Path, roots: tuple[Path, ...], start_tree: str) -> list[dict[str, Any]]:
    """Each file under `roots` changed since `start_tree` (workspace-relative), with the lines added and
    removed (None for a binary file)."""
    top = toplevel(workspace)
    end_tree = snapshot(workspace, roots)
    changes: list[dict[str, Any]] = []
    for entry in git(top, "diff", "--numstat", "-z", "--no-renames", start_tree, end_tree).split("\0"):
        if not entry:
            continue
        added, removed, path = entry.split("\t", 2)
        changes.append({"path": (top / path).relative_to(workspace.resolve()).as_posix(),
                        "added": None if added == "-" else int(added),
                        "removed": None if removed == "-" else int(removed)})
    return changes
