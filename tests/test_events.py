"""The event catalogue: every kind round-trips through its stored payload, parsing picks the class by kind,
unknown fields are refused, and a store written by the release before typed events reads back typed."""

from __future__ import annotations

import json
import shutil
import sqlite3
import typing
from pathlib import Path
from typing import Any

import pytest

from goalkeeper import events as ev
from goalkeeper.errors import StoreError
from goalkeeper.store import Store

DATA = Path(__file__).parent / "data"
USAGE = ev.Usage(input_tokens=10, cached_input_tokens=2, output_tokens=3, charged_tokens=11)
CHECK = ev.Evidence(name="tests", kind="check", command="pytest", exit_code=0, duration_s=0.5, output_tail="ok",
                    passed=True, tests={"passed": 3})
SESSION: dict[str, Any] = {"usage": USAGE, "model": "m", "requests": 1,
                           "tool_calls": [ev.ToolUsed(name="read_file", arguments={"path": "a"}, ok=True)]}

EXAMPLES: list[Any] = [
    ev.GoalSetEvent(outcome="Fix it", verified=True, contract={"outcome": "Fix it"}),
    ev.GoalClearedEvent(), ev.GoalClearedEvent(actor="harness", why="no branch"),
    ev.StatusChangedEvent(actor="harness", from_status="pursuing", to="unmet", reason="max_attempts",
                          checks=["tests"], max_attempts=3),
    ev.BudgetRaisedEvent(tokens=100, usd=None, time_s=None, turns=3),
    ev.BudgetExhaustedEvent(reason="budget_turns", turn=4),
    ev.AttemptCountedEvent(failing=["tests"], attempts={"tests": 1}),
    ev.NudgeEvent(why="no progress"),
    ev.ChecksRequestedEvent(trigger="completion"),
    ev.TurnStartedEvent(turn_kind="continuation", turn=2),
    ev.TurnEndedEvent(turn=2, turn_kind="continuation", tool_calls=1, signal={"status": "complete"}),
    ev.ControlRequestEvent(action="resume", add_turns=2, force=True),
    ev.ControlAppliedEvent(actor="harness", request_seq=7),
    ev.MessageEvent(turn_kind="initial", content="Go", evidence_shown={"check:tests": [True, None, 0]}),
    ev.ModelResponseEvent(content="hi", tool_calls=[ev.CallMade(id="c1", name="shell", arguments="{}")],
                          usage=USAGE, usd=0.01, model="m", finish_reason="stop"),
    ev.ToolIntentEvent(call_id="c1", name="shell", arguments='{"command": "ls"}'),
    ev.ToolResultEvent(call_id="c1", name="shell", output="a", ok=True, signal=None, data={"exit_code": 0},
                       files_touched=["a"], full_output_chars=None),
    ev.ApprovalEvent(call_id="c1", command="ls", action="allow", reason="policy", rule=None, asked=True,
                     remembered=True, matches=["ls*"]),
    ev.ApprovalRuleEvent(match="ls*", command="ls", goal_id="goal_1"),
    ev.CheckpointEvent(turn=1, turn_kind="initial", note={"done": "x"}, files_touched=["a"], commands=["ls"],
                       tokens=5, tree_hash="t", commit="c", files_committed=["a"], violations=[]),
    ev.RecoveryCheckpointEvent(commit="c", files=["a"], turn=2, violations=[], notice="recovered"),
    ev.ProviderRetryEvent(attempt=1, error="503", status_code=503, delay_s=0.5),
    ev.UsageChargedEvent(why="cut", charged_tokens=10, usd=0.1),
    ev.ContextTrimmedEvent(upto_message=4, keep_chars=2000, why="compaction failed"),
    ev.CompactedEvent(summary="s", handoff="h", responses=3, turn=2, request_tokens=900, missing_sections=[],
                      evidence_shown=None, usage=USAGE, model="m"),
    ev.CompactionFailedEvent(why="empty", request_tokens=900),
    ev.SandboxEvent(mode="workspace-write", network=False, processes="256 processes"),
    ev.GoalBranchEvent(name="goal/abc-fix", base_commit="b", snapshot_commit=None),
    ev.BaselineMirrorEvent(mirror="/m", base_commit="b", env="/e", env_dirs=[".venv"], env_skipped=[],
                           resumed=True, remade=False),
    ev.VerificationPinsEvent(pins="{}", edits="review", files=["tests/a.py"]),
    ev.VerificationSurfaceEvent(surface="{}", summary={"observed": True}),
    ev.BaselineEvent(evidence=[CHECK], keep_green_active=[], keep_green_dropped=["lint"], tree_hash="t"),
    ev.EvidenceEvent(trigger="completion", turn=1, evidence=[CHECK], surface={"changed": []}, tree_hash="t"),
    ev.ChatMessageEvent(content="hello"),
    ev.ChatResponseEvent(content="hi", tool_calls=[], usage=USAGE, model="m"),
    ev.ChatToolResultEvent(call_id="c1", name="shell", output="a", ok=True),
    ev.SideEvent(question="why?", answer="because", events=10, **SESSION),
    ev.PlanEvent(objective="o", steps=["s"], checks=[ev.SuggestedCheckRecord(name="t", run="pytest")], risks=[],
                 questions=[], text="", source="submit_plan", given_objective="o", **SESSION),
    ev.DraftEvent(description="d", output="goal.toml", contract={}, lint={"findings": []}, fix_rounds=0, **SESSION),
    ev.DistilledEvent(output="PRD.md", usage=USAGE, model="m", branch="goal/x", base_commit="b"),
    ev.RestatedEvent(text="t", usage=USAGE, usd=0.0, model="m", charged_to_goal=True),
    ev.ImplementsEvent(spike_goal_id="goal_1", spike_branch="goal/x", base_commit="b", prd="PRD.md",
                       spike_status="achieved"),
    ev.NotifyAttemptEvent(event_seq=3, url="https://x", status="achieved", attempt=1, max_attempts=3,
                          format="json", delivered=True, status_code=200, error=None, duration_s=0.1),
    ev.EngineStartedEvent(engine="temporal", address="127.0.0.1:7233", namespace="default", workflow_id="goal-x",
                          task_queue="goalkeeper", remote="/srv/repo.git", ref="main",
                          takeover_s=30.0, continue_every=200),
    ev.ReportPushedEvent(remote="/srv/repo.git", ref="refs/goalkeeper/reports/goal_1", commit="c", status="achieved"),
    ev.BudgetCappedEvent(reason="budget_tokens", tokens=1200, usd=None, time_s=None),
    ev.ControlRequestEvent(action="cap", actor="harness", cap="tokens"),
    ev.InstructionsLoadedEvent(commit="b", workdir="sub", max_bytes=32768, text="# Project instructions",
                               files=[ev.InstructionFile(path="AGENTS.md", size=9, loaded=8, cut=False),
                                      ev.InstructionFile(path="sub/AGENTS.md", size=7, loaded=0, skipped="a link")]),
    ev.ForkedEvent(parent_thread_id="thr_1", parent_goal_id="goal_1", branch="goalkeeper/fork-1", commit="c",
                   handoff="This thread was forked from thread thr_1 …"),
    ev.HookRanEvent(event="pre_tool", command="./guard.sh", exit_code=2, duration_s=0.1, output_tail="no",
                    timed_out=False, vetoed=True, tool="shell", call_id="c1"),
    ev.WaitStartedEvent(call_id="call_1", until="test -f ready", interval_s=30.0, timeout_s=600.0, started_at=1.0,
                        deadline=601.0, note=""),
    ev.WaitEndedEvent(call_id="call_1", reason="done", probes=3, exit_code=0, waited_s=61.5),
    ev.SubagentStartedEvent(child_thread_id="thr_c", parent_thread_id="thr_p", parent_goal_id="goal_1",
                            call_id="call_1", depth=1, task="fix docs", paths=["docs/"], tools=["read_file"]),
    ev.SubagentUsageEvent(child_thread_id="thr_c", usage=USAGE, usd=0.001),
    ev.SubagentEndedEvent(child_thread_id="thr_c", status="done", summary="fixed",
                          files_changed=[{"path": "docs/a.md", "added": 1, "removed": 0}], requests=2,
                          charged_tokens=11, usd=0.001),
    ev.McpServersEvent(servers={"fs": 14, "docs": 0}),
]


def _all_classes() -> set[type]:
    [union, _] = typing.get_args(ev.Event)
    return set(typing.get_args(union))


def test_the_examples_cover_every_kind_of_the_catalogue() -> None:
    assert {type(example) for example in EXAMPLES} == _all_classes()
    assert all(cls.__doc__ for cls in _all_classes())  # the catalogue says what each kind is


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda event: event.kind)
def test_every_kind_round_trips_through_its_stored_payload(event: Any) -> None:
    payload = json.loads(json.dumps(ev.payload_of(event)))
    assert "actor" not in payload and "turn_kind" not in payload and "from_status" not in payload
    parsed = ev.parse_event(event.kind, event.actor, payload)
    assert parsed == event and ev.payload_of(parsed) == payload


def test_an_optional_field_left_out_stays_out_of_the_payload() -> None:
    assert ev.payload_of(ev.GoalClearedEvent()) == {}
    assert ev.payload_of(ev.GoalClearedEvent(why="x")) == {"why": "x"}
    trimmed = ev.ContextTrimmedEvent(upto_message=3, keep_chars=10)
    assert "why" in ev.payload_of(trimmed.model_copy(update={"why": "compaction failed"}))


def test_parse_picks_the_class_by_kind_and_keeps_the_stored_keys() -> None:
    parsed = ev.parse_event("status_changed", "user", {"from": None, "to": "pursuing", "reason": "goal_set"})
    assert isinstance(parsed, ev.StatusChangedEvent) and parsed.from_status is None and parsed.actor == "user"
    started = ev.parse_event("turn_started", "harness", {"kind": "wrap_up", "turn": 3})
    assert isinstance(started, ev.TurnStartedEvent) and started.turn_kind == "wrap_up"
    baseline = ev.parse_event("baseline", "harness", ev.payload_of(EXAMPLES[31]))
    assert isinstance(baseline, ev.BaselineEvent) and baseline.evidence[0].is_check


def test_evidence_written_before_it_named_its_tree_still_reads() -> None:
    """0.1.0 wrote `evidence` without `tree_hash`; the digest migration parses every event of an old store, so
    such a row must read (as unmeasured) or the whole store would refuse to open."""
    old = {"trigger": "completion_request", "turn": 2, "surface": None,
           "evidence": [{"name": "tests", "kind": "check", "command": "true", "exit_code": 0, "duration_s": 0.1,
                         "output_tail": "", "passed": True, "metric": None, "error": None}]}
    parsed = ev.parse_event("evidence", "harness", old)
    assert isinstance(parsed, ev.EvidenceEvent) and parsed.tree_hash is None


def test_an_unknown_field_or_kind_is_one_store_error() -> None:
    with pytest.raises(StoreError, match="nudge"):
        ev.parse_event("nudge", "harness", {"why": "x", "extra": 1})
    with pytest.raises(StoreError, match="no_such_kind"):
        ev.parse_event("no_such_kind", "harness", {})
    with pytest.raises(ValueError):
        ev.NudgeEvent(why="x", extra=1)  # type: ignore[call-arg]


def test_events_are_frozen() -> None:
    nudge = ev.NudgeEvent(why="x")
    with pytest.raises(ValueError):
        nudge.why = "y"  # type: ignore[misc]


def test_a_store_written_by_release_8c370e0_reads_every_event_typed(tmp_path: Path) -> None:
    """tests/data/make_old_store.py wrote it with that release's code: a fix, then a goal paused, raised,
    resumed, out of turns and cleared."""
    path = tmp_path / "state.db"
    shutil.copyfile(DATA / "store-8c370e0.db", path)
    with sqlite3.connect(path) as conn:
        threads = [row[0] for row in conn.execute("SELECT thread_id FROM threads")]
        rows = conn.execute("SELECT kind, payload FROM events ORDER BY seq").fetchall()
    with Store(path) as store:
        stored = [record for thread in threads for record in store.events(thread)]
    assert [record.event.kind for record in stored] == [kind for kind, _ in rows]
    assert [ev.payload_of(record.event) for record in stored] == [json.loads(payload) for _, payload in rows]
    kinds = {record.event.kind for record in stored}
    assert {"goal_set", "status_changed", "budget_raised", "baseline", "evidence", "checkpoint", "message",
            "tool_result", "attempt_counted", "budget_exhausted", "goal_cleared"} <= kinds
    evidence = [record.event for record in stored if isinstance(record.event, ev.EvidenceEvent)]
    assert evidence and all(isinstance(item, ev.Evidence) for event in evidence for item in event.evidence)


def test_a_store_written_by_release_8c370e0_reads_its_goal_rows_typed(tmp_path: Path) -> None:
    """The same old store's goal rows (the fix, then the goal that ran out of turns and was cleared) come back
    as typed Goals, parsed once by the store: nothing to migrate."""
    path = tmp_path / "state.db"
    shutil.copyfile(DATA / "store-8c370e0.db", path)
    with sqlite3.connect(path) as conn:
        ids = [row[0] for row in conn.execute("SELECT goal_id FROM goals ORDER BY created_at")]
    with Store(path) as store:
        first, second = (store.get_goal_by_id(goal_id) for goal_id in ids)
    assert first.state.status == "achieved" and first.standing == "replaced"
    assert second.contract.outcome == "Make it fail less" and [c.name for c in second.contract.checks] == ["never"]
    assert second.contract.budget.turns == 2 and second.state.limits.turns == 3  # the resume over budget raised it
    assert (second.state.status, second.state.reason) == ("budget_limited", "budget_turns")
    assert second.standing == "cleared" and second.state.goal_id == second.goal_id
    assert second.settings.model is not None and second.settings.model.provider == "scripted"


def test_gk_log_gives_the_fleet_events_a_line() -> None:
    from goalkeeper.render.terminal import event_line
    from goalkeeper.store.records import EventRecord

    def line(event: Any) -> str | None:
        return event_line(EventRecord(seq=1, thread_id="t", goal_id="g", ts=0.0, event=event))

    assert line(ev.BudgetCappedEvent(reason="budget_tokens", tokens=10, usd=None, time_s=None)) == \
        "  the batch's cap was reached (budget_tokens): wrap-up turn"
    assert line(ev.EngineStartedEvent(engine="temporal", address="h:7233", namespace="default", workflow_id="w",
                                      task_queue="q", remote="/srv/r.git")) == \
        "  submitted to temporal at h:7233: workflow w, repository /srv/r.git"
    assert line(ev.ReportPushedEvent(remote="/srv/r.git", ref="refs/goalkeeper/reports/g", commit="c",
                                     status="achieved")) == "  report pushed to /srv/r.git (refs/goalkeeper/reports/g)"
    assert line(ev.ForkedEvent(parent_thread_id="thr_1", branch="goalkeeper/fork-1", commit="0123456789abcdef",
                               handoff="")) == "  forked from thr_1 at 0123456789ab (branch goalkeeper/fork-1)"
    assert line(ev.McpServersEvent(servers={"fs": 14, "docs": 2})) == "  MCP servers: fs (14 tools), docs (2 tools)"
