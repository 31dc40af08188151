"""What the TUI asks of the library about goals: set one (with the CLI's checks) and what `/goal resume`
means.

No Textual here: plain functions over the store, called from the app (blocking ones in a thread).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from goalkeeper.config.load import load_config
from goalkeeper.config.resolve import settings_from_config
from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.goals import service
from goalkeeper.spec.settings import GoalSettings
from goalkeeper.tui.commands import GoalRequest

if TYPE_CHECKING:
    from goalkeeper.store import Goal, Store


def set_goal(store: Store, workspace: Path, thread_id: str | None, request: GoalRequest,
             replace: bool) -> Goal:
    """Set the goal `/goal <objective> [--check NAME=CMD]…` asks for, checked as `gk goal` checks it.

    The repository must be clean, every check's program must exist and the lint gate must pass (each check
    run once: by the gate when the model restates the goal first, else by the goal's baseline); the model
    and the `[run]` knobs come from config.toml, and are stored with the goal. The model streams, so its
    text shows as it comes (a later `gk run` streams too; the bundled local model never does). Blocks while
    the gate runs: call it off the event loop.
    """
    contract = contract_from_flags(request.objective, checks=list(request.checks))
    config = load_config(workspace)
    model = settings_from_config(config, usd_budget=contract.budget.usd, stream=True)  # text shows as it comes
    settings = GoalSettings(model=model, run=config.run)
    # Run at once, the baseline answers the gate's run questions; a restatement is a model request first.
    lint: service.LintMode = "run" if config.restate_before_start else "baseline"
    return service.set_goal(store, workspace, contract, settings, lint=lint, unverified=request.unverified,
                            replace=replace, thread_id=thread_id).goal


def reopens(goal: Goal) -> bool:
    """`/goal resume`: an achieved or unmet goal is re-opened (the status line offers exactly that)."""
    return goal.state.status in ("achieved", "unmet")
