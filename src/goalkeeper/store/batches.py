"""Batches in the store: a batch of goals run together (`gk batch`), and the goals it holds.

A batch row keeps what `gk batch --resume` needs to carry it on: the repository, the files, `--parallel`, the
global caps, the model chosen at the start and the engine that runs its goals (with the Temporal engine, the
server, queue, namespace, repository and ref it submits them to); a batch goal row keeps each goal's contract
(as read when the batch began), its worktree, and its goal id once it has started. It records; the fleet runner decides.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from goalkeeper.errors import GoalkeeperError
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import ModelSettings
from goalkeeper.store.records import dumps, new_id
from goalkeeper.store.store import Store


class BatchNotFoundError(GoalkeeperError):
    """No batch has that id (or the repository has no batch yet)."""


@dataclass(frozen=True)
class Caps:
    """The batch's global budget: the sum over its goals (tokens, USD) and its running time; None: no cap."""

    tokens: int | None = None
    usd: float | None = None
    time_s: float | None = None


@dataclass(frozen=True)
class Target:
    """Where a Temporal batch submits its goals: the server, its task queue and namespace, and the repository
    (URL or path) and ref the workers clone."""

    address: str
    task_queue: str
    namespace: str
    repo: str
    ref: str


@dataclass(frozen=True)
class Batch:
    """One batch as stored."""

    batch_id: str
    repository: str
    commit: str
    """The commit every goal of the batch starts from (the repository's HEAD when the batch was made)."""
    files: tuple[str, ...]
    parallel: int
    caps: Caps
    model: ModelSettings | None
    elapsed_s: float
    """The batch's running time so far, over every run of it (the time cap reads it)."""
    created_at: float
    target: Target | None = None
    """Where the Temporal engine's workers are; None: this process runs the goals."""

    @property
    def engine(self) -> str:
        """`local` or `temporal`: what runs the goals."""
        return "local" if self.target is None else "temporal"


@dataclass(frozen=True)
class BatchGoal:
    """One goal of a batch: its name (the file's stem), its contract, its worktree, its goal id once started,
    and the error that crashed its runner, if one did."""

    batch_id: str
    name: str
    position: int
    file: str
    contract: Contract
    worktree: str
    goal_id: str | None
    crashed: str | None


@dataclass(frozen=True)
class NewGoal:
    """A goal to put in a new batch."""

    name: str
    file: str
    contract: Contract
    worktree: str


def put_batch(store: Store, repository: str, commit: str, files: Sequence[str], parallel: int, caps: Caps,
              model: ModelSettings | None, goals: Sequence[NewGoal], batch_id: str | None = None,
              target: Target | None = None) -> Batch:
    """Record a new batch and its goals (none started) in one transaction; with a `target`, the Temporal
    engine runs its goals."""
    batch = Batch(batch_id or new_id("batch"), repository, commit, tuple(files), parallel, caps, model, 0.0,
                  time.time(), target)
    with store._db.write() as conn:
        conn.execute("INSERT INTO batches (batch_id, repository, commit_id, files, parallel, caps, model, "
                     "elapsed_s, created_at, target) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                     (batch.batch_id, repository, commit, json.dumps(list(files)), parallel, dumps(_caps_json(caps)),
                      model.model_dump_json() if model is not None else None, batch.created_at,
                      json.dumps(asdict(target)) if target is not None else None))
        conn.executemany("INSERT INTO batch_goals (batch_id, name, position, file, contract, worktree) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         [(batch.batch_id, goal.name, position, goal.file, goal.contract.model_dump_json(),
                           goal.worktree) for position, goal in enumerate(goals)])
    return batch


def get_batch(store: Store, batch_id: str) -> Batch:
    """The batch `batch_id`, or BatchNotFoundError."""
    with store._db.read() as conn:
        row = conn.execute("SELECT * FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
    if row is None:
        raise BatchNotFoundError(f"no batch {batch_id} in the store", "gk batch --resume with no id takes the "
                                                                      "repository's latest batch")
    return _batch_of(row)


def latest_batch(store: Store, repository: str) -> Batch:
    """The newest batch of `repository`, or BatchNotFoundError."""
    with store._db.read() as conn:
        row = conn.execute("SELECT * FROM batches WHERE repository = ? ORDER BY created_at DESC, rowid DESC "
                           "LIMIT 1", (repository,)).fetchone()
    if row is None:
        raise BatchNotFoundError(f"the repository {repository} has no batch to resume",
                                 "start one: gk batch FILE... or gk batch DIR")
    return _batch_of(row)


def batch_goals(store: Store, batch_id: str) -> list[BatchGoal]:
    """The batch's goals in the order they were given."""
    with store._db.read() as conn:
        rows = conn.execute("SELECT * FROM batch_goals WHERE batch_id = ? ORDER BY position", (batch_id,)).fetchall()
    return [BatchGoal(row["batch_id"], row["name"], row["position"], row["file"],
                      Contract.model_validate_json(row["contract"]), row["worktree"], row["goal_id"], row["crashed"])
            for row in rows]


def batch_progress(store: Store, batch_id: str) -> list[tuple[str, str | None, str | None]]:
    """Each goal's name, goal id and crash, in the order given: what the batch's polling needs, without parsing
    every goal's contract twice a second."""
    with store._db.read() as conn:
        rows = conn.execute("SELECT name, goal_id, crashed FROM batch_goals WHERE batch_id = ? ORDER BY position",
                            (batch_id,)).fetchall()
    return [(row["name"], row["goal_id"], row["crashed"]) for row in rows]


def set_goal_id(store: Store, batch_id: str, name: str, goal_id: str) -> None:
    """The goal `name` has started as `goal_id`."""
    _update(store, "UPDATE batch_goals SET goal_id = ?, crashed = NULL WHERE batch_id = ? AND name = ?",
            (goal_id, batch_id, name))


def set_crashed(store: Store, batch_id: str, name: str, error: str | None) -> None:
    """The goal's runner crashed with `error` (None: a resume runs it again)."""
    _update(store, "UPDATE batch_goals SET crashed = ? WHERE batch_id = ? AND name = ?", (error, batch_id, name))


def add_elapsed(store: Store, batch_id: str, seconds: float) -> None:
    """Count `seconds` more of the batch's running time."""
    _update(store, "UPDATE batches SET elapsed_s = elapsed_s + ? WHERE batch_id = ?", (seconds, batch_id))


def _update(store: Store, sql: str, values: tuple[Any, ...]) -> None:
    with store._db.write() as conn:
        conn.execute(sql, values)


def _caps_json(caps: Caps) -> dict[str, Any]:
    return {"tokens": caps.tokens, "usd": caps.usd, "time_s": caps.time_s}


def _batch_of(row: Any) -> Batch:
    model, target = row["model"], row["target"]
    return Batch(row["batch_id"], row["repository"], row["commit_id"], tuple(json.loads(row["files"])), row["parallel"],
                 Caps(**json.loads(row["caps"])), ModelSettings.model_validate_json(model) if model else None,
                 row["elapsed_s"], row["created_at"], Target(**json.loads(target)) if target else None)


def list_batches(store: Store) -> list[Batch]:
    """Every batch, newest first (the faces' batch views list them)."""
    with store._db.read() as conn:
        rows = conn.execute("SELECT * FROM batches ORDER BY created_at DESC, rowid DESC").fetchall()
    return [_batch_of(row) for row in rows]
