"""Runs one goal in this process, with the model its settings name."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from goalkeeper.config import GoalSettings, ModelSettings, load_config, settings_from_config
from goalkeeper.models.factory import build_model, endpoint
from goalkeeper.runner import Runner, RunResult
from goalkeeper.store import EventRecord, GoalRecord, Store


def run_goal(store: Store, goal: GoalRecord, workspace: Path, model: ModelSettings | None = None,
             on_event: Callable[[EventRecord], None] | None = None,
             on_start: Callable[[ModelSettings], None] | None = None) -> RunResult:
    """Drive `goal` until it stops. `model` overrides the settings stored with the goal."""
    settings = GoalSettings.model_validate(goal.settings)
    chosen = model or settings.model or settings_from_config(load_config(workspace))
    if chosen != settings.model:
        # Remember the model, so a later `gk run` (after a crash, say) talks to the same one.
        settings = settings.model_copy(update={"model": chosen})
        store.commit(goal.goal_id, [], settings=settings.model_dump(mode="json"))
        goal = store.get_goal_by_id(goal.goal_id)
    if on_start is not None:
        on_start(chosen)
    with endpoint(chosen) as reachable:
        runner = Runner(store, goal, build_model(reachable), workspace, on_event=on_event)
        return asyncio.run(runner.run())
