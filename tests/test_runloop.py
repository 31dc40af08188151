"""The run loop's constant per-step costs, pinned by what the store holds: the control inbox is read by seq since
the last read without losing a request, a turn's checkpoint comes from running totals that a resume rebuilds the
same, and a step's events share one commit without any being acted on before it is stored.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from goalkeeper.events import (
    CheckpointEvent,
    ControlAppliedEvent,
    ControlRequestEvent,
    Event,
    MessageEvent,
    ModelResponseEvent,
    ToolIntentEvent,
    ToolResultEvent,
    TurnStartedEvent,
)
from goalkeeper.goals import service
from goalkeeper.models.base import ModelRequest, ModelResponse
from goalkeeper.models.scripted import ScriptedModel, ScriptStep
from goalkeeper.run.inbox import Inbox
from goalkeeper.run.runner import Runner
from goalkeeper.store import EventRecord, Goal, Store
from scenario import call, complete, events, new_goal, run, sample_repo, scripted, scripted_after, shell, step

PASSING = ["t=true"]
"""A check that passes, so a completion is achieved and the run ends by itself."""


def requests_of(inbox: Inbox, store: Store, goal: Goal) -> list[int]:
    return [seq for seq, _ in inbox.read(store, goal.goal_id, goal.thread_id)]


def test_the_inbox_reads_only_new_control_events_and_keeps_a_request_until_its_marker(tmp_path: Path) -> None:
    with Store() as store:
        goal = new_goal(store, sample_repo(tmp_path), checks=PASSING)
        inbox = Inbox()
        [budget] = store.append_events(goal.thread_id, [ControlRequestEvent(action="budget", add_tokens=10)],
                                       goal_id=goal.goal_id)
        assert requests_of(inbox, store, goal) == [budget.seq]
        assert inbox.cursor == store.last_seq(goal.thread_id)
        noise = MessageEvent(role="user", turn_kind="continuation", content="not a control event")
        store.append_events(goal.thread_id, [noise], goal_id=goal.goal_id)
        [pause] = store.append_events(goal.thread_id, [ControlRequestEvent(action="pause")], goal_id=goal.goal_id)
        # The budget request is not read again, and is still open; the pause that came after the last read is seen.
        assert requests_of(inbox, store, goal) == [budget.seq, pause.seq]
        store.append_events(goal.thread_id, [ControlAppliedEvent(actor="user", request_seq=budget.seq)],
                            goal_id=goal.goal_id)
        assert requests_of(inbox, store, goal) == [pause.seq]
        assert requests_of(Inbox(), store, goal) == [pause.seq]  # a restarted runner reads from 0: the same


def test_a_runner_started_after_a_request_was_queued_applies_it_once(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    with Store() as store:
        goal = new_goal(store, workspace, checks=PASSING)
        [asked] = store.append_events(goal.thread_id, [ControlRequestEvent(action="pause")], goal_id=goal.goal_id)
        result = run(store, goal, workspace, scripted([step("", complete()), step("done")]))
        applied = [e.event for e in events(store, goal, "control_applied")]
    assert result.status == "paused"
    assert [a.request_seq for a in applied if isinstance(a, ControlAppliedEvent)] == [asked.seq]


def test_a_turn_resumed_after_a_pause_checkpoints_the_calls_made_before_it(tmp_path: Path) -> None:
    """The checkpoint's commands, files and tokens are running totals; the resumed runner rebuilds them from the
    store, so the turn's last checkpoint counts every call of the turn, from both runs."""
    workspace = sample_repo(tmp_path)
    first = [step("", call("write_file", path="one.txt", content="1\n")), step("", shell("echo two > two.txt"))]
    with Store() as store:
        goal = new_goal(store, workspace, checks=PASSING)
        runner = Runner(store, store.get_goal_by_id(goal.goal_id), scripted([*first, step("", complete())]),
                        workspace)

        def pause_after_the_first_call(record: EventRecord) -> None:
            if isinstance(record.event, ToolResultEvent):
                runner.interrupt()  # as Ctrl-C does: honoured at the next boundary, in the middle of the turn

        runner.on_event = pause_after_the_first_call
        assert asyncio.run(runner.run()).status == "paused"
        service.resume(store, store.get_goal_by_id(goal.goal_id))
        rest = [step("", shell("echo two > two.txt")), step("", shell("echo three > three.txt")),
                step("", complete()), step("done")]
        assert run(store, goal, workspace, scripted_after(store, goal, rest)).status == "achieved"
        records = store.events(goal.thread_id, goal_id=goal.goal_id)
    checkpoint = [r.event for r in records if isinstance(r.event, CheckpointEvent)][-1]
    turn = turn_events(records, checkpoint.turn)
    assert checkpoint.commands == [json.loads(e.arguments)["command"] for e in turn
                                   if isinstance(e, ToolIntentEvent) and e.name == "shell"]
    assert "echo three > three.txt" in checkpoint.commands and len(checkpoint.commands) >= 2
    assert checkpoint.files_touched == sorted({f for e in turn if isinstance(e, ToolResultEvent)
                                               for f in e.files_touched})
    assert "one.txt" in checkpoint.files_touched
    assert checkpoint.tokens == sum(e.usage.charged_tokens for e in turn if isinstance(e, ModelResponseEvent))


def turn_events(records: list[EventRecord], number: int) -> list[Event]:
    """The events of turn `number`, from its start to its last checkpoint."""
    started = next(i for i, r in enumerate(records)
                   if isinstance(r.event, TurnStartedEvent) and r.event.turn == number)
    ended = max(i for i, r in enumerate(records) if isinstance(r.event, CheckpointEvent) and r.event.turn == number)
    return [r.event for r in records[started:ended]]


class StoreAuditingModel(ScriptedModel):
    """The scripted model, which also reads the store (as another process would) each time it is asked:
    every tool result a request shows must already be stored."""

    def __init__(self, steps: list[ScriptStep], store_path: Path, goal: Goal) -> None:
        super().__init__(steps)
        self.store_path, self.goal = store_path, goal
        self.unstored: list[str] = []

    async def complete(self, request: ModelRequest) -> ModelResponse:
        shown = {m.tool_call_id for m in request.messages if m.role == "tool"}
        with Store(self.store_path) as reader:
            stored = {r.event.call_id for r in reader.events(self.goal.thread_id, goal_id=self.goal.goal_id,
                                                              kinds=[ToolResultEvent])
                      if isinstance(r.event, ToolResultEvent)}
        self.unstored += sorted(str(call_id) for call_id in shown - stored)
        return await super().complete(request)


def test_a_step_shares_one_commit_and_a_request_never_shows_an_unstored_result(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    steps = [step("Looking.", shell("ls"), shell("cat cart.py")), step("", complete()), step("done")]
    with Store() as store:
        goal = new_goal(store, workspace, checks=PASSING)
        model = StoreAuditingModel(steps, store.path, goal)
        assert run(store, goal, workspace, model).status == "achieved"
        records = store.events(goal.thread_id, goal_id=goal.goal_id)
    assert model.unstored == []
    # One commit stamps its events with one time: a response with its first call's intent, a result with the
    # next call's intent.
    [response] = [r for r in records if isinstance(r.event, ModelResponseEvent) and len(r.event.tool_calls) == 2]
    first_intent, second_intent = [r for r in records if isinstance(r.event, ToolIntentEvent)][:2]
    first_result = next(r for r in records if isinstance(r.event, ToolResultEvent))
    assert response.ts == first_intent.ts and first_intent.seq == response.seq + 1
    assert first_result.ts == second_intent.ts and first_result.ts > first_intent.ts
