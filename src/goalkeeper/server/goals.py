"""The write side of the HTTP API: set a goal, pause, resume, clear, raise the budget.

Every change goes through control.py, the path the CLI and the TUI take: a live runner applies it at its
next boundary; with none, it is applied at once. The server never starts a runner (`gk run` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Response

from goalkeeper.cli.options import ModelFlags
from goalkeeper.config import GoalSettings, load_config
from goalkeeper.contract import Contract, contract_from_flags, parse_contract
from goalkeeper.errors import ConfigError, ContractError
from goalkeeper.goals import control
from goalkeeper.server.api import CONFLICT, NOT_FOUND, StoreDep, Thread, current_goal, data_router
from goalkeeper.server.build import goal_out
from goalkeeper.server.models import BudgetIn, ControlOut, GoalOut, ResumeIn, SetGoalIn
from goalkeeper.store import GoalRecord
from goalkeeper.verify.lint import lint_goal

router = data_router()
RAISES = ("add_tokens", "add_usd", "add_time_s", "add_turns")
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
    # what `gk goal` and the TUI check too
    control.check_settable(workspace, contract, body.allow_dirty, body.unverified)
    lint = lint_goal(contract, workspace, run=False)
    if lint.errors and not body.force:
        raise ContractError("the goal has lint errors: " + "; ".join(f.message for f in lint.errors),
                            "fix them (each finding says how), or send force: true to set it anyway")
    settings = GoalSettings(model=ModelFlags().settings_if_configured(workspace, contract.budget.usd),
                            run=load_config(workspace).run, allow_dirty=body.allow_dirty)
    record = control.set_goal(store, workspace, contract, settings, replace_existing=body.replace,
                              thread_id=thread_id)
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
    return _out(control.request(store, current_goal(store, thread_id), "pause"))


@router.post("/threads/{thread_id}/goal/resume", response_model=ControlOut, responses={**NOT_FOUND, **CONFLICT},
             tags=["goals"])
def resume_goal(thread_id: Thread, store: StoreDep, body: ResumeIn | None = None) -> ControlOut:
    """Resume a paused or budget_limited goal (`force` re-opens an achieved or unmet one), raising the budget
    first if asked. It does not run the goal: `gk run` does."""
    body = body or ResumeIn()
    goal = current_goal(store, thread_id)
    detail = body.model_dump()
    raised = {key: detail[key] for key in RAISES if detail[key]}
    if raised and goal.state.get("status") == "pursuing":
        return _out(control.raise_budget(store, goal, raised))  # as `gk goal resume --add-*` on a running goal
    _refuse_unpriced(goal, detail)
    return _out(control.request(store, goal, "resume", **detail))


@router.post("/threads/{thread_id}/goal/clear", response_model=ControlOut, responses={**NOT_FOUND, **CONFLICT},
             tags=["goals"])
def clear_goal(thread_id: Thread, store: StoreDep) -> ControlOut:
    """Clear the goal: the thread has no goal afterwards (its history stays readable)."""
    return _out(control.request(store, current_goal(store, thread_id), "clear"))


@router.post("/threads/{thread_id}/goal/budget", response_model=ControlOut, responses={**NOT_FOUND, **CONFLICT},
             tags=["goals"])
def raise_budget(thread_id: Thread, body: BudgetIn, store: StoreDep) -> ControlOut:
    """Raise the budget by the amounts given (at least one); a budget_limited goal is resumed as well."""
    detail = {key: value for key, value in body.model_dump().items() if value}
    if not detail:
        raise ConfigError("no budget raise given", "send at least one of add_tokens, add_usd, add_time_s, add_turns")
    return _out(control.raise_budget(store, current_goal(store, thread_id), detail))


def _refuse_unpriced(goal: GoalRecord, detail: dict[str, Any]) -> None:
    """A USD raise needs the goal's model to have a known price (control.raise_budget says the same)."""
    stored = GoalSettings.model_validate(goal.settings).model
    if detail.get("add_usd") and stored is not None and stored.price is None:
        raise ConfigError(f"no price is known for model {stored.model}, so a USD budget cannot be enforced",
                          f'add [model_pricing."{stored.model}"] input/cached_input/output to config.toml, '
                          "set the goal again, or raise another budget")


def _out(result: control.ControlResult) -> ControlOut:
    return ControlOut(status=result.status, applied=result.applied_by != "queued",
                      applied_by=result.applied_by)

