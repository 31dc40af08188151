"""The values the workflow and its activities pass each other: plain dataclasses, safe in the workflow sandbox."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepOutput:
    """What one step did: the next effect (the goal goes on), or the stop (`next` None)."""

    next: str | None
    status: str | None
    """The goal's status after the step; None once it was cleared."""
    reason: str
    turns: int = 0
    task_queue: str = ""
    """The queue of the worker that holds the workspace (set by every step that ran on a worker)."""


@dataclass(frozen=True)
class GoalArgs:
    """The workflow's input, carried over on continue-as-new."""

    goal_id: str
    shared_queue: str
    takeover_s: float = 30.0
    """A step's heartbeat timeout, and how long it may wait for its worker: after that the worker is taken for
    dead and the goal is claimed again on the shared queue."""
    step_timeout_s: float = 3600.0
    """The longest one step may run (a check run, a long tool call)."""
    continue_every: int = 200
    """Steps per workflow run before it continues as new (its history stays bounded)."""
    worker_queue: str | None = None
    next: str | None = None
    runs: int = 0
    """How many times the workflow has continued as new."""
