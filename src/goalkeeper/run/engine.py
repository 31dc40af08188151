"""Runs one goal in this process, with the model its settings name.

`run_goal` owns its event loop (the CLI); `drive_goal` runs inside one that is already going (the TUI).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from goalkeeper.config.resolve import choose_model
from goalkeeper.events import GoalBranchEvent
from goalkeeper.models.factory import open_model
from goalkeeper.models.retry import Gate, GatedModel
from goalkeeper.run.notify import notifying
from goalkeeper.run.runner import Runner, RunResult
from goalkeeper.spec.settings import ModelSettings
from goalkeeper.store import EventRecord, Goal, Store
from goalkeeper.tools.registry import Approver
from goalkeeper.workspace.goal import branch_of


def run_goal(store: Store, goal: Goal, workspace: Path, model: ModelSettings | None = None,
             on_event: Callable[[EventRecord], None] | None = None,
             on_start: Callable[[ModelSettings], None] | None = None) -> RunResult:
    """Drive `goal` until it stops. `model` overrides the settings stored with the goal."""
    goal, chosen = settle_model(store, goal, workspace, model)
    if on_start is not None:
        on_start(chosen)
    return asyncio.run(drive_goal(store, goal, workspace, chosen, on_event=on_event))


async def drive_goal(store: Store, goal: Goal, workspace: Path, model: ModelSettings | None = None, *,
                     on_event: Callable[[EventRecord], None] | None = None,
                     on_text: Callable[[str], None] | None = None, approver: Approver | None = None,
                     handle_signals: bool = True, gate: Gate | None = None,
                     on_runner: Callable[[Runner], None] | None = None) -> RunResult:
    """`run_goal` inside a running event loop; the hooks are the Runner's (runner.py). A batch passes the `gate`
    its goals on the same provider share (models/retry.py), and `on_runner` is handed the runner before it runs
    (a batch pauses it through `interrupt`)."""
    goal, chosen = settle_model(store, goal, workspace, model)
    # [[notify]] webhooks watch the committed events; at the end they get a bounded wait (notify.py).
    # The model's SDK loads while the baseline's checks run (prepare.baseline starts its build).
    async with notifying(store, workspace, on_event, config_commit(store, goal)) as watched, \
            open_model(chosen, build_now=False) as built:
        runner = Runner(store, goal, built if gate is None else GatedModel(built, gate), workspace, watched,
                        on_text=on_text, approver=approver, handle_signals=handle_signals)
        if on_runner is not None:
            on_runner(runner)
        return await runner.run()


def settle_model(store: Store, goal: Goal, workspace: Path,
                 model: ModelSettings | None) -> tuple[Goal, ModelSettings]:
    """The model to drive `goal` with (`model`, else the goal's, else config's), stored with the goal."""
    settings = goal.settings
    chosen = choose_model(workspace, model, settings, config_commit(store, goal))
    if chosen != settings.model:
        # Remember the model, so a later `gk run` (after a crash, say) talks to the same one.
        settings = settings.model_copy(update={"model": chosen})
        store.commit(goal.goal_id, [], settings=settings)
        goal = store.get_goal_by_id(goal.goal_id)
    return goal, chosen


def config_commit(store: Store, goal: Goal) -> str:
    """The commit a goal's project config is read from: its base commit, or its snapshot of the person's own
    uncommitted changes (--allow-dirty); never the goal branch, which the model writes. Before the first run
    it is HEAD, where the branch will start."""
    branch = branch_of(store.events(goal.thread_id, goal_id=goal.goal_id, kinds=[GoalBranchEvent]))
    return "HEAD" if branch is None else branch.snapshot_commit or branch.base_commit
