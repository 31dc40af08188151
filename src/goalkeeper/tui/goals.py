"""What the TUI asks of the library about goals: set one (with the CLI's checks), find who runs it, what
`/goal resume` means, and the goal's diff.

No Textual here: plain functions over the store, called from the app (blocking ones in a thread).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from goalkeeper.config import GoalSettings, load_config, settings_from_config
from goalkeeper.contract import contract_from_flags
from goalkeeper.events import GoalBranchEvent
from goalkeeper.goals import control
from goalkeeper.store import GoalRecord, Store, lease_is_live
from goalkeeper.tui.commands import GoalRequest
from goalkeeper.workspace.checkpoints import diff
from goalkeeper.workspace.goal import branch_of


def set_goal(store: Store, workspace: Path, thread_id: str | None, request: GoalRequest,
             replace: bool) -> GoalRecord:
    """Set the goal `/goal <objective> [--check NAME=CMD]…` asks for, checked as `gk goal` checks it.

    The repository must be clean and every check's program must exist; the model and the `[run]` knobs
    come from config.toml, and are stored with the goal. The model streams, so its text shows as it comes
    (a later `gk run` streams too; the bundled local model never does).
    """
    contract = contract_from_flags(request.objective, checks=list(request.checks))
    config = load_config(workspace)
    model = settings_from_config(config, usd_budget=contract.budget.usd, stream=True)  # text shows as it comes
    control.check_settable(workspace, contract, unverified=request.unverified)
    settings = GoalSettings(model=model, run=config.run)
    return control.set_goal(store, workspace, contract, settings, replace_existing=replace, thread_id=thread_id)


def runner_elsewhere(store: Store, goal: GoalRecord) -> str | None:
    """`host:pid` of a live runner in another process that holds `goal`, or None."""
    lease = store.lease(goal.goal_id)
    if lease is None or not lease_is_live(lease):
        return None
    if (lease.host, lease.pid) == (socket.gethostname(), os.getpid()):
        return None
    return f"{lease.host}:{lease.pid}"


def resume_detail(goal: GoalRecord) -> dict[str, Any]:
    """`/goal resume`: an achieved or unmet goal is re-opened (the status line offers exactly that)."""
    return {"force": goal.state.get("status") in ("achieved", "unmet")}


def goal_diff(store: Store, workspace: Path, goal: GoalRecord) -> str:
    """The goal branch's whole diff (`gk diff`); empty before the goal first ran."""
    branch = branch_of(store.events(goal.thread_id, goal_id=goal.goal_id, kinds=[GoalBranchEvent]))
    if branch is None:
        return ""
    return diff(workspace, branch, None)
