"""The runner's step gate (what the Temporal engine runs one activity per effect with): a goal driven one effect
per run, with the run kept open or opened again from the store each time, writes the same history as one
ungated run, and each gated run says which effect comes next. In-process, real git, store and sandbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from goalkeeper.events import BaselineMirrorEvent, RecoveryCheckpointEvent, SandboxEvent
from goalkeeper.models.scripted import ScriptStep
from goalkeeper.run.goal_run import Gate, GoalRun
from goalkeeper.run.runner import Runner, RunResult
from goalkeeper.store import Goal, Store
from scenario import FIX_PATCH, HONEST_FIX, call, events, new_goal, run, sample_repo, scripted, step

#: A turn that ends with text only after writing (its checkpoint is a step of its own), then checks that pass.
TEXT_END = [step("", call("apply_patch", patch=FIX_PATCH)),
            step("Fixed; the tests should pass now.")]


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _kinds(store: Store, goal: Goal) -> list[str]:
    """The goal's history as event kinds, less the notes every run writes as it starts (how it is confined, the
    baseline mirror found again) and the recovery checkpoint a run opened in the middle of a turn commits (the
    turn's edits so far, as `gk run` does after a restart)."""
    per_run = SandboxEvent | BaselineMirrorEvent | RecoveryCheckpointEvent
    return [record.event.kind for record in events(store, goal) if not isinstance(record.event, per_run)]


def _stepwise(store: Store, goal: Goal, workspace: Path, steps: list[ScriptStep], keep_open: bool,
              ) -> list[RunResult]:
    results: list[RunResult] = []
    opened: GoalRun | None = None
    while not results or results[-1].next is not None:
        assert len(results) < 60, results
        current = store.get_goal_by_id(goal.goal_id)
        if opened is None or not keep_open:
            opened = GoalRun.open(store, current, scripted(steps), workspace)
        opened.gate = Gate()
        results.append(asyncio.run(Runner.around(opened).run()))
    return results


@pytest.mark.parametrize("keep_open", [True, False], ids=["kept open", "opened each step"])
@pytest.mark.parametrize("steps", [HONEST_FIX, TEXT_END], ids=["update_goal", "text-only end"])
def test_one_effect_per_run_writes_the_history_of_one_run(tmp_path: Path, keep_open: bool,
                                                          steps: list[ScriptStep]) -> None:
    with Store(tmp_path / "whole.db") as store:
        workspace = sample_repo(_folder(tmp_path / "whole"))
        whole_goal = new_goal(store, workspace)
        whole = run(store, whole_goal, workspace, scripted(steps))
        expected = _kinds(store, whole_goal)
    with Store(tmp_path / "steps.db") as store:
        workspace = sample_repo(_folder(tmp_path / "steps"))
        goal = new_goal(store, workspace)
        results = _stepwise(store, goal, workspace, steps, keep_open)
        assert _kinds(store, goal) == expected
        recovered = events(store, goal, "recovery_checkpoint")
        assert bool(recovered) == (not keep_open)  # a run opened again after a write commits it as a restart does
    assert whole.status == results[-1].status == "achieved"
    effects = [result.next for result in results[:-1]]
    assert effects[0] == "model"  # the first run did the baseline check run, and stopped before the request
    assert {"model", "tool", "checks"} <= set(effects)
    if steps is TEXT_END:
        assert "checkpoint" in effects  # the text-only turn's checkpoint commit was a step of its own
