"""The `spawn_agent` tool: its arguments, where a child may write, and the pool that bounds running children.

The tool checks what it can check alone (the paths name places inside the workspace, the tool names are
known) and hands the rest to the `Spawner` its context carries; run/subagents.py supplies it and runs the
child. Nothing here runs a model or touches the store.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from goalkeeper.tools.base import Tool, ToolArgs, ToolContext, ToolResult
from goalkeeper.tools.paths import BoundaryRefused, PathRefused, check_write, resolve_in_workspace

GLOB_CHARS = frozenset("*?[")


class SpawnArgs(ToolArgs):
    """`spawn_agent`'s arguments."""

    task: str = Field(min_length=1)
    paths: list[str] = Field(min_length=1)
    tools: list[str] | None = None


@dataclass(frozen=True)
class ChildRequest:
    """A `spawn_agent` call, checked: the task, where it may write, and the tools asked for."""

    task: str
    paths: tuple[str, ...]
    """As given, each anchored at the workspace root (`/docs/`): a bare `docs` glob would match at any depth."""
    roots: tuple[Path, ...]
    """Each path's fixed part (the folder before any glob character), resolved: what the sandbox binds writable."""
    folders: tuple[Path, ...]
    """The roots that are folders (a glob's, one written with a trailing `/`, or an existing directory): made
    when missing, so the sandbox can bind them. A file the child creates is the file tools' to write."""
    tools: tuple[str, ...] | None


Spawner = Callable[[ChildRequest], Awaitable[ToolResult]]
"""Runs a child agent for a request and returns the parent's tool result (run/subagents.py)."""


@dataclass
class AgentPool:
    """The children of one goal running now (at every depth), by thread id, with the places they write."""

    running: dict[str, tuple[Path, ...]] = field(default_factory=dict)

    def refusal(self, request: ChildRequest, max_threads: int) -> str | None:
        """Why `request` may not start now: the pool is full, or its paths overlap a running child's."""
        if len(self.running) >= max_threads:
            return (f"refused: {len(self.running)} child agents are running and [agents] max_threads is "
                    f"{max_threads}; wait for one to end (spawn fewer at once), or do this part yourself")
        for thread_id, roots in self.running.items():
            shared = [str(a) for a in request.roots for b in roots if a.is_relative_to(b) or b.is_relative_to(a)]
            if shared:
                return (f"refused: paths {json.dumps(list(request.paths))} overlap those of child {thread_id}, "
                        f"running now (at {shared[0]}); children share the workspace, so give each its own folders")
        return None


class SpawnAgentTool(Tool[SpawnArgs]):
    """Starts a child agent through `context.spawn`; ok means the child ended its task with a summary."""

    name = "spawn_agent"
    description = ("Start a child agent on a self-contained part of the job: `task` says all it needs (it does "
                   "not see this conversation); it may write only inside `paths` (workspace-relative folders like "
                   "`docs/`, files, or globs like `src/*.py`); `tools` narrows the tools it gets from yours. "
                   "Several calls in one response run at once, on paths that must not overlap. Returns its "
                   "summary and the files it changed; only your checks decide whether its work counts.")
    Args = SpawnArgs

    async def run(self, args: SpawnArgs, context: ToolContext) -> ToolResult:
        if context.spawn is None:
            return ToolResult("spawn_agent is not available here; do the work yourself", ok=False)
        try:
            places = [writable_root(context.workspace, path) for path in args.paths]
        except (PathRefused, BoundaryRefused) as error:
            return ToolResult(f"spawn_agent {error}", ok=False)
        paths = tuple("/" + path.strip().lstrip("/") for path in args.paths)
        roots = tuple(root for root, _ in places)
        folders = tuple(root for root, folder in places if folder)
        tools = tuple(args.tools) if args.tools is not None else None
        return await context.spawn(ChildRequest(args.task, paths, roots, folders, tools))


def writable_root(workspace: Path, path: str) -> tuple[Path, bool]:
    """The resolved place a child's `path` lets it write: the path itself, or for a glob the folder before its
    first glob character, and whether it is a folder. Refused (PathRefused, BoundaryRefused) outside the
    workspace, in `.git/` or `.goalkeeper/`, or when that place is the whole workspace: a child gets a part."""
    segments = [part for part in path.strip().strip("/").split("/") if part not in ("", ".")]
    fixed: list[str] = []
    for part in segments:
        if GLOB_CHARS & set(part):
            break
        fixed.append(part)
    if not fixed:
        raise PathRefused(path, "it names the whole workspace; give the child a folder or files (`docs/`, "
                                "`src/*.py`)")
    prefix = "/".join(fixed)
    root = resolve_in_workspace(workspace, prefix)
    if root == workspace.resolve():
        raise PathRefused(path, "it names the whole workspace; give the child a folder or files")
    check_write(workspace, prefix, root, None)
    folder = len(fixed) < len(segments) or path.strip().endswith("/") or root.is_dir()
    return root, folder


def child_tool_names(offered: Sequence[str], asked: Sequence[str] | None, can_spawn: bool) -> list[str] | str:
    """The tools a child gets: `asked` (default: all `offered`), never more than offered, spawn_agent only
    when `can_spawn`; or why the request is refused (a name the parent does not have)."""
    kept = [name for name in offered if name != SpawnAgentTool.name or can_spawn]
    if asked is None:
        return kept
    unknown = [name for name in asked if name not in offered]
    if unknown:
        return (f"refused: unknown tool(s) {', '.join(unknown)} for a child; it may have only tools you have: "
                f"{', '.join(kept)}")
    if SpawnAgentTool.name in asked and not can_spawn:
        return "refused: [agents] max_depth lets this child spawn no agents of its own; leave spawn_agent out"
    return [name for name in kept if name in asked]
