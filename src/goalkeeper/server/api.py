"""The read side of the HTTP API: threads, goals, events (paged and streamed), checkpoints, evidence, report, diff.

Every route here reads the store (and, for the diff, the workspace's git); none writes.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sse_starlette import EventSourceResponse

from goalkeeper.errors import GoalNotFoundError
from goalkeeper.events import BaselineEvent, CheckpointEvent, EvidenceEvent
from goalkeeper.goals import service
from goalkeeper.goals.report import build_report, render_markdown, render_pr
from goalkeeper.goals.views import goal_events
from goalkeeper.server.auth import require_token
from goalkeeper.server.build import checkpoint_out, event_out, evidence_run_out, goal_out, thread_out
from goalkeeper.server.models import (
    CheckpointOut,
    DiffOut,
    ErrorOut,
    EventPage,
    EvidenceRunOut,
    GoalOut,
    ThreadOut,
)
from goalkeeper.server.sse import Broadcaster

if TYPE_CHECKING:
    from goalkeeper.store import Goal, Store

SEQ_MAX = 2**63 - 1
"""SQLite's largest integer: a bigger cursor could not be compared with a seq."""

ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut, "description": "Missing or wrong bearer token"},
                                           422: {"model": ErrorOut, "description": "The request is not valid"}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "No such thread or goal"}}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": ErrorOut,
                                                   "description": "The goal or workspace does not allow it"}}



def data_router() -> APIRouter:
    """A router whose every route needs the bearer token and may answer 401 or 422."""
    return APIRouter(dependencies=[Depends(require_token)], responses=ERRORS)


router = data_router()

Thread = Annotated[str, PathParam(description="A thread id (`GET /threads` lists them).")]
GoalId = Annotated[str | None, Query(description="A goal of this thread (default: its current goal).")]
Seq = Annotated[int, Query(ge=0, le=SEQ_MAX, description="Only events with a larger seq.")]


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


# A string: the store's type is named for the type checker only; FastAPI needs just the dependency.
StoreDep = Annotated["Store", Depends(store_of)]


def current_goal(store: Store, thread_id: str, goal_id: str | None = None) -> Goal:
    """The thread's current goal, or the goal named (which must be the thread's); 404 otherwise."""
    store.get_thread(thread_id)
    if goal_id is not None:
        goal = store.get_goal_by_id(goal_id)
        if goal.thread_id != thread_id:
            raise GoalNotFoundError(f"goal {goal_id} is not in thread {thread_id}", "`GET /threads` lists them")
        return goal
    found = store.get_goal(thread_id)
    if found is None:
        raise GoalNotFoundError(f"thread {thread_id} has no goal", "set one with `PUT /threads/{id}/goal` or `gk goal`")
    return found


@router.get("/openapi.json", include_in_schema=False)
def openapi(request: Request) -> JSONResponse:
    """The OpenAPI spec (also committed as docs/openapi.json)."""
    return JSONResponse(request.app.openapi())


@router.get("/threads", response_model=list[ThreadOut], tags=["threads"])
def list_threads(store: StoreDep) -> list[ThreadOut]:
    """Every thread, newest first, each with its current goal."""
    return [thread_out(store, thread) for thread in store.list_threads()]


@router.get("/threads/{thread_id}", response_model=ThreadOut, responses=NOT_FOUND, tags=["threads"])
def get_thread(thread_id: Thread, store: StoreDep) -> ThreadOut:
    return thread_out(store, store.get_thread(thread_id))


@router.get("/threads/{thread_id}/goal", response_model=GoalOut, responses=NOT_FOUND, tags=["goals"])
def get_goal(thread_id: Thread, store: StoreDep) -> GoalOut:
    """The thread's current goal: status, checks, budget use, checklist, newest evidence, metric trend."""
    return goal_out(store, current_goal(store, thread_id))


@router.get("/threads/{thread_id}/events", response_model=EventPage, responses=NOT_FOUND, tags=["events"])
def list_events(thread_id: Thread, store: StoreDep, after: Seq = 0,
                limit: Annotated[int, Query(ge=1, le=500)] = 100) -> EventPage:
    """The thread's events after seq `after`, oldest first, at most `limit`."""
    store.get_thread(thread_id)
    events = [event_out(record) for record in store.events(thread_id, after_seq=after, limit=limit)]
    return EventPage(events=events, next_after=events[-1].seq if events else after)


@router.get("/threads/{thread_id}/checkpoints", response_model=list[CheckpointOut], responses=NOT_FOUND,
            tags=["goals"])
def list_checkpoints(thread_id: Thread, store: StoreDep, goal_id: GoalId = None) -> list[CheckpointOut]:
    """The goal's checkpoints, one per turn, oldest first."""
    records = goal_events(store, current_goal(store, thread_id, goal_id), [CheckpointEvent])
    return [checkpoint_out(r, r.event) for r in records if isinstance(r.event, CheckpointEvent)]


@router.get("/threads/{thread_id}/evidence", response_model=list[EvidenceRunOut], responses=NOT_FOUND,
            tags=["goals"])
def list_evidence(thread_id: Thread, store: StoreDep, goal_id: GoalId = None) -> list[EvidenceRunOut]:
    """Every run of the goal's checks, the baseline first."""
    records = goal_events(store, current_goal(store, thread_id, goal_id), [BaselineEvent, EvidenceEvent])
    return [evidence_run_out(r, r.event) for r in records if isinstance(r.event, (BaselineEvent, EvidenceEvent))]


REPORT_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {"description": "The report: JSON, or Markdown for `markdown` and `pr`",
          "content": {"application/json": {"schema": {"type": "object"}},
                      "text/markdown": {"schema": {"type": "string"}}}}}


@router.get("/threads/{thread_id}/report", response_model=None, responses={**NOT_FOUND, **REPORT_CONTENT},
            tags=["goals"])
def get_report(thread_id: Thread, store: StoreDep, goal_id: GoalId = None,
               format: Annotated[Literal["json", "markdown", "pr"], Query()] = "json") -> Response:
    """The goal's report as `gk report` prints it: JSON, Markdown, or a pull-request description (`pr`)."""
    report = build_report(store, current_goal(store, thread_id, goal_id))
    if format == "json":
        return JSONResponse(report)
    text = render_markdown(report) if format == "markdown" else render_pr(report)
    return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")


@router.get("/threads/{thread_id}/diff", response_model=DiffOut, responses={**NOT_FOUND, **CONFLICT},
            tags=["goals"])
def get_diff(thread_id: Thread, store: StoreDep, goal_id: GoalId = None,
             turn: Annotated[int | None, Query(ge=0, le=SEQ_MAX, description="Only this turn's checkpoint.")] = None,
             ) -> DiffOut:
    """The goal branch's changes, as `gk diff` shows them; empty before the goal first ran."""
    changes = service.goal_diff(store, current_goal(store, thread_id, goal_id), turn)
    if changes.branch is None:
        return DiffOut(branch=None, base=None, head=None, diff="")
    branch = changes.branch
    return DiffOut(branch=branch.name, base=branch.snapshot_commit or branch.base_commit, head=changes.head,
                   diff=changes.text)


SSE_EVENT = {"type": "object", "required": ["id", "event", "data"],
             "properties": {"id": {"type": "string", "description": "The event's seq"},
                            "event": {"type": "string", "description": "The event's kind"},
                            "data": {"type": "string", "contentMediaType": "application/json",
                                     "contentSchema": {"$ref": "#/components/schemas/EventOut"}}}}
"""One event of a stream, as schemathesis and OpenAPI 3.2's itemSchema read it (comment lines aside)."""
STREAM: dict[int | str, dict[str, Any]] = {
    200: {"description": "Server-sent events: `id: <seq>`, `event: <kind>`, `data: <EventOut JSON>`",
          "content": {"text/event-stream": {"schema": SSE_EVENT}}}}
LastEventId = Annotated[int | None, Header(ge=0, le=SEQ_MAX, description="Resume after this seq (browsers send "
                                                                         "it when they reconnect).")]
After = Annotated[int | None, Query(ge=0, le=SEQ_MAX, description="Resume after this seq, for clients that "
                                                                  "cannot set headers (Last-Event-ID wins).")]


def broadcaster_of(request: Request) -> Broadcaster:
    broadcaster: Broadcaster = request.app.state.broadcaster
    return broadcaster


@router.get("/threads/{thread_id}/events/stream", response_class=EventSourceResponse,
            responses={**NOT_FOUND, **STREAM}, tags=["events"])
async def stream_thread(thread_id: Thread, store: StoreDep,
                        broadcaster: Annotated[Broadcaster, Depends(broadcaster_of)], last_event_id: LastEventId = None,
                        after: After = None) -> EventSourceResponse:
    """The thread's events in store order: its whole history (or what follows `Last-Event-ID` / `after`), then
    each new event as it is committed. A comment line every 15 s keeps idle connections open."""
    await asyncio.to_thread(store.get_thread, thread_id)
    return _stream(broadcaster, thread_id, last_event_id if last_event_id is not None else after)


@router.get("/events/stream", response_class=EventSourceResponse, responses=STREAM, tags=["events"])
async def stream_all(broadcaster: Annotated[Broadcaster, Depends(broadcaster_of)],
                     last_event_id: LastEventId = None, after: After = None) -> EventSourceResponse:
    """Every thread's events in store order, from now (or after `Last-Event-ID` / `after`): the goals table
    follows this to stay current."""
    return _stream(broadcaster, None, last_event_id if last_event_id is not None else after)


def _stream(broadcaster: Broadcaster, thread_id: str | None, after: int | None) -> EventSourceResponse:
    """An SSE response that ends cleanly (not cancelled mid-write) when the server shuts down. Made on the event
    loop: the stop event belongs to it."""
    stop = anyio.Event()
    return EventSourceResponse(broadcaster.stream(thread_id, after, stop), ping=broadcaster.keep_alive_s,
                               shutdown_event=stop, shutdown_grace_period=1.0)
