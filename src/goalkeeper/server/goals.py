"""The write side of the HTTP API: set a goal, pause, resume, clear, raise the budget.

Every change goes through the goal service, as the CLI's and the TUI's do: a live runner applies it at its
next boundary; with none, it is applied at once. The server never starts a runner (`gk run` does).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Response

from goalkeeper.config.load import load_config
from goalkeeper.config.resolve import model_if_configured
from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.contract.toml import parse_contract
from goalkeeper.goals import service
from goalkeeper.goals.control import ControlResult
from goalkeeper.server.api import CONFLICT, NOT_FOUND, StoreDep, Thread, current_goal, data_router
from goalkeeper.server.build import goal_out
from goalkeeper.server.models import BudgetIn, ControlOut, GoalOut, ResumeIn, SetGoalIn
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import GoalSettings

router = data_router()
NEXT_HEADER = "X-Goalkeeper-Next"
"""Set on a goal the server has set: the command that runs it (the server only records it)."""


@router.put("/threads/{thread_id}/goal", response_model=GoalOut, responses={**NOT_FOUND, **CONFLICT},
            tags=["goals"])
def set_goal(thread_id: Thread, body: SetGoalIn, store: StoreDep, response: Response) -> GoalOut:
    """Set the thread's goal, as `gk goal` does: the repository is preflighted, every check's program must exist
    (422 otherwise), the contract is linted without running anything (errors refuse it unless `force`), and an
    existing goal is replaced only with `replace` (409 otherwise). The goal is recorded as pursuing but NOT
    run: the server is a window on the store; `gk run --thread ID` runs it (see the X-Goalkeeper-Next header)."""
    workspace = Path(store.get_thread(thread_id).workspace)
    contract = _contract(body)
    settings = GoalSettings(model=model_if_configured(workspace, contract.budget.usd),
                            run=load_config(workspace).run, allow_dirty=body.allow_dirty)
    record = service.set_goal(store, workspace, contract, settings, lint="static", force=body.force,
                              unverified=body.unverified, replace=body.replace, thread_id=thread_id).goal
    response.headers[NEXT_HEADER] = f"gk run --thread {thread_id}"
    return goal_out(store, record)


def _contract(body: SetGoalIn) -> Contract:
    base = parse_contract(body.toml, "toml") if body.toml is not None else None
    return contract_from_flags(body.objective, base=base, checks=body.checks, keep_green=body.keep_green,
                               protect=body.protect, paths=body.paths, budget_tokens=body.budget_tokens,
                               budget_usd=body.budget_usd, budget_time=body.budget_time,
                               budget_turns=body.budget_turns)


@router.post("/threads/{thread_id}/goal/pause", response_model=ControlOut, responses={**NOT_FOUND, **CONFLICT},
             tags=["goals"])
def pause_goal(thread_id: Thread, store: StoreDep) -> ControlOut:
    """Pause: a running runner finishes its current tool call and starts no new model request."""
    return _out(service.pause(store, current_goal(store, thread_id)))


@router.post("/threads/{thread_id}/goal/resume", response_model=ControlOut, responses={**NOT_FOUND, **CONFLICT},
             tags=["goals"])
def resume_goal(thread_id: Thread, store: StoreDep, body: ResumeIn | None = None) -> ControlOut:
    """Resume a paused or budget_limited goal (`force` re-opens an achieved or unmet one), raising the budget
    first if asked. It does not run the goal: `gk run` does."""
    body = body or ResumeIn()
    return _out(service.resume(store, current_goal(store, thread_id), body.force, body.raise_by(), note=body.note))


@router.post("/threads/{thread_id}/goal/clear", response_model=ControlOut, responses={**NOT_FOUND, **CONFLICT},
             tags=["goals"])
def clear_goal(thread_id: Thread, store: StoreDep) -> ControlOut:
    """Clear the goal: the thread has no goal afterwards (its history stays readable)."""
    return _out(service.clear(store, current_goal(store, thread_id)))


@router.post("/threads/{thread_id}/goal/budget", response_model=ControlOut, responses={**NOT_FOUND, **CONFLICT},
             tags=["goals"])
def raise_budget(thread_id: Thread, body: BudgetIn, store: StoreDep) -> ControlOut:
    """Raise the budget by the amounts given (at least one); a budget_limited goal is resumed as well."""
    return _out(service.raise_budget(store, current_goal(store, thread_id), body.raise_by()))


def _out(result: ControlResult) -> ControlOut:
    return ControlOut(status=result.status, applied=result.applied_by != "queued",
                      applied_by=result.applied_by)
