"""Review points (issue 19, items 1 and 2): the contract's `[review]` pauses a goal at a checkpoint boundary, the
model may ask for a review only when the contract allows it, and a resume's note reaches the model.

Real git, the real SQLite store, bubblewrap; only the model is scripted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import pytest

from goalkeeper.contract.toml import parse_contract
from goalkeeper.core.decide import decide
from goalkeeper.core.outcomes import ReviewPoint, Stop, TurnEnded, UserResumed
from goalkeeper.core.state import GoalState
from goalkeeper.errors import ContractError
from goalkeeper.events import Event, MessageEvent, StatusChangedEvent, ToolResultEvent
from goalkeeper.goals import service
from goalkeeper.goals.views import summarize
from goalkeeper.store import Goal, Store
from scenario import (
    FIX_PATCH,
    TESTS,
    call,
    complete,
    contract_with,
    events,
    gk,
    new_goal,
    run,
    sample_repo,
    scripted,
    scripted_after,
    shell,
    step,
)

NOTE = "Keep the rounding to two places."


E = TypeVar("E", bound=Event)


def of(kind: type[E], store: Store, goal: Goal) -> list[E]:
    return [r.event for r in events(store, goal, kind.model_fields["kind"].default) if isinstance(r.event, kind)]


# ---------------------------------------------------------------- the decision core


def test_a_review_point_pauses_and_a_model_pause_never_ends_the_goal() -> None:
    state = GoalState(goal_id="g", tree_hash="t0")
    point = ReviewPoint("turn 1's checkpoint touched services/a.py (pause_on_paths)", ("services/a.py",), "abc")
    decision = decide(state, TurnEnded(2, tree_hash="t1", review_point=point))
    assert decision.action == Stop("paused", decision.state.reason) and decision.state.reason == "review_point"
    [changed] = decision.events
    assert isinstance(changed, StatusChangedEvent) and changed.files == ["services/a.py"] and changed.since == "abc"
    assert decision.state.no_progress_streak == 0 and decision.state.tree_hash == "t1"  # the turn's progress counts
    asked = decide(state, TurnEnded(1, signal="paused", blocker="look at the schema first", tree_hash="t0"))
    assert asked.state.status == "paused" and asked.state.reason == "review_requested"
    assert asked.state.no_progress_streak == state.no_progress_streak  # never progress
    resumed = decide(asked.state, UserResumed(note=NOTE))
    [back] = resumed.events
    assert resumed.state.status == "pursuing" and isinstance(back, StatusChangedEvent) and back.note == NOTE


def test_bad_review_tables_are_one_clear_error() -> None:
    for bad in ("pause_after = 0", 'pause_after = "often"', "pause_after = true", "model_may_pause = 3"):
        with pytest.raises(ContractError):
            parse_contract(f'outcome = "x"\n[review]\n{bad}\n')


# ---------------------------------------------------------------- whole goals


def test_pause_on_paths_stops_at_the_checkpoint_and_the_resume_note_reaches_the_model(
        tmp_path: Path, store: Store, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    goal = new_goal(store, workspace, contract_with(review=dict(pause_on_paths=["cart.py"])))
    first = [step("Look first.", shell("cat README.md")), step("Nothing changed yet."),  # no review: no commit
             step("Patch it.", call("apply_patch", patch=FIX_PATCH)), step("Patched cart.py.")]
    assert run(store, goal, workspace, scripted(first)).status == "paused"
    goal = store.get_goal_by_id(goal.goal_id)
    assert goal.state.reason == "review_point"
    shown = summarize(store, goal).review_point
    assert shown is not None and shown["files"] == ["cart.py"] and "pause_on_paths" in shown["why"]
    said = gk("goal", "--cwd", str(workspace), home=goalkeeper_home).stdout  # what a person reads
    assert "changed since the last review point" in said and "cart.py" in said and "--note" in said
    assert service.resume(store, goal, note=NOTE).status == "pursuing"
    rest = [step("", shell(TESTS)), step("", complete("apply_discount divides by 100")), step("Done.")]
    assert run(store, goal, workspace, scripted_after(store, goal, rest)).status == "achieved"
    opening = [e.content for e in of(MessageEvent, store, goal) if NOTE in e.content]
    assert len(opening) == 1 and "<feedback>" in opening[0]  # told once, in the next turn's opening


def test_pause_after_two_checkpoints_counts_commits_since_the_last_review(tmp_path: Path, store: Store) -> None:
    workspace = sample_repo(tmp_path)
    goal = new_goal(store, workspace, contract_with(review=dict(pause_after=2)))
    script = [step("", shell("echo one > one.txt")), step("One."),
              step("", shell("echo two > two.txt")), step("Two.")]
    assert run(store, goal, workspace, scripted(script)).status == "paused"
    [paused] = [e for e in of(StatusChangedEvent, store, goal) if e.reason == "review_point"]
    assert paused.files == ["one.txt", "two.txt"] and "2 checkpoints" in (paused.why or "")


def test_a_model_pause_is_refused_unless_the_contract_allows_it(tmp_path: Path, store: Store) -> None:
    workspace = sample_repo(tmp_path)
    pause = call("update_goal", status="paused", reason="the schema change needs a person")
    goal = new_goal(store, workspace)
    script = [step("", pause), step("", call("apply_patch", patch=FIX_PATCH)), step("", complete()), step("Done.")]
    assert run(store, goal, workspace, scripted(script)).status == "achieved"
    [refused] = [e for e in of(ToolResultEvent, store, goal) if e.name == "update_goal"][:1]
    assert not refused.ok and "model_may_pause" in refused.output
    allowed = new_goal(store, workspace, contract_with(review=dict(model_may_pause=True)))
    assert run(store, allowed, workspace, scripted([step("", pause), step("Waiting.")])).status == "paused"
    allowed = store.get_goal_by_id(allowed.goal_id)
    assert allowed.state.reason == "review_requested"
    shown = summarize(store, allowed).review_point
    assert shown is not None and shown["note"] == "the schema change needs a person"
