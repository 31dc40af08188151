"""The batches of the HTTP API (`gk batch`): every batch with its totals, and one batch with a row per goal.

Read-only, through goals/batch.py: `batch_rows` is the one read model of a batch, the same rows `gk batch`'s
live table and the TUI's batch view show. The dashboard's batch view polls these and follows /events/stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

from fastapi import Path as PathParam

from goalkeeper.goals.batch import Batch, BatchRow, all_batches, batch_rows, batch_totals, find_batch
from goalkeeper.server.api import StoreDep, data_router
from goalkeeper.server.models import BatchCapsOut, BatchDetailOut, BatchOut, BatchRowOut, BatchTotalsOut, ErrorOut

if TYPE_CHECKING:
    from goalkeeper.store import Store

router = data_router()

BatchId = Annotated[str, PathParam(description="A batch id (`GET /batches` lists them).")]
NO_BATCH: dict[int | str, dict[str, object]] = {404: {"model": ErrorOut, "description": "No such batch"}}


@router.get("/batches", response_model=list[BatchOut], tags=["batches"])
def list_batches(store: StoreDep) -> list[BatchOut]:
    """Every batch, newest first, each with its totals: its goals by status, tokens, cost and running time."""
    return [batch_out(batch, batch_rows(store, batch.batch_id)) for batch in all_batches(store)]


@router.get("/batches/{batch_id}", response_model=BatchDetailOut, responses=NO_BATCH, tags=["batches"])
def get_batch(batch_id: BatchId, store: StoreDep) -> BatchDetailOut:
    """The batch, its totals against its caps, and one row per goal (status, checks, tokens, cost, elapsed)."""
    batch = find_batch(store, batch_id, "`GET /batches` lists them")
    rows = batch_rows(store, batch_id)
    return BatchDetailOut(**batch_out(batch, rows).model_dump(), rows=[row_out(store, row) for row in rows])


def batch_out(batch: Batch, rows: Sequence[BatchRow]) -> BatchOut:
    totals = batch_totals(batch, rows)
    caps = batch.caps
    return BatchOut(batch_id=batch.batch_id, repository=batch.repository, created_at=batch.created_at,
                    parallel=batch.parallel, caps=BatchCapsOut(tokens=caps.tokens, usd=caps.usd, time_s=caps.time_s),
                    totals=BatchTotalsOut(goals=totals.goals, ended=totals.ended, counts=totals.counts,
                                          tokens=totals.tokens, usd=totals.usd, elapsed_s=totals.elapsed_s))


def row_out(store: Store, row: BatchRow) -> BatchRowOut:
    """The row with its goal's thread, which the dashboard links to the goal page."""
    thread_id = store.get_goal_by_id(row.goal_id).thread_id if row.goal_id is not None else None
    return BatchRowOut(**row.model_dump(), thread_id=thread_id)
