"""Whole runs with the scripted model over a real git repo, a real shell and a real SQLite file."""

from __future__ import annotations

from pathlib import Path

from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.core.state import BudgetRaise
from goalkeeper.events import payload_of
from goalkeeper.goals import service
from goalkeeper.goals.report import build_report, render_markdown
from goalkeeper.store import Store
from helpers import git
from scenario import (
    FIX_PATCH,
    HONEST_FIX,
    TESTS,
    call,
    complete,
    events,
    new_goal,
    run,
    sample_repo,
    scripted,
    scripted_after,
    shell,
    step,
)


def test_honest_fix_is_achieved_with_an_evidence_table(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    with Store() as store:
        goal = new_goal(store, workspace)
        result = run(store, goal, workspace, scripted(HONEST_FIX))
        assert (result.status, result.reason) == ("achieved", "checks_passed")
        markdown = render_markdown(build_report(store, goal))
    assert "| `tests` | check | FAIL | PASS |" in markdown
    assert "cart.py" in markdown


def test_false_completion_is_refused_until_checks_pass_then_unmet(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    model = scripted([step("All done!", complete("tests are green"))])
    with Store() as store:
        goal = new_goal(store, workspace, max_attempts=2)
        result = run(store, goal, workspace, model)
        assert (result.status, result.reason) == ("unmet", "max_attempts")
        messages = events(store, goal, "message")
        feedback = [payload_of(e.event)["content"] for e in messages if payload_of(e.event)["kind"] == "audit_feedback"]
    assert len(feedback) == 1  # one audit turn after the first refusal; the second refusal ends it
    assert "NOT achieved" in feedback[0] and "AssertionError" in feedback[0]
    # The model saw the failing evidence in the request that followed the refusal.
    assert any("AssertionError" in m.content for m in model.requests[-1].messages)


def test_repeated_command_gets_a_nudge_then_unmet_stuck(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    model = scripted([step("Checking again.", shell(TESTS))])  # repeats forever
    with Store() as store:
        goal = new_goal(store, workspace, no_progress_turns=3)
        result = run(store, goal, workspace, model)
        assert (result.status, result.reason) == ("unmet", "stuck")
        turns = [payload_of(e.event)["kind"] for e in events(store, goal, "turn_started")]
    assert turns == ["continuation", "nudge"]
    assert len(turns) <= 3 + 1


def test_text_only_replies_pause_as_stalled_after_two(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    model = scripted([step("I think it works now.")])
    with Store() as store:
        goal = new_goal(store, workspace)
        result = run(store, goal, workspace, model)
        assert (result.status, result.reason) == ("paused", "stalled")
        assert len(events(store, goal, "evidence")) == 2  # the harness checked after each text-only turn
    assert len(model.requests) == 2


def test_text_only_reply_with_passing_checks_is_achieved(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    model = scripted([step("", call("apply_patch", patch=FIX_PATCH)), step("Fixed.")])
    with Store() as store:
        result = run(store, new_goal(store, workspace), workspace, model)
    assert (result.status, result.reason) == ("achieved", "checks_passed")


def test_turn_budget_gives_one_wrap_up_turn_then_budget_limited(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    model = scripted([step("Looking.", shell("ls")), step("Looked."), step("", shell("cat cart.py")), step("ok")])
    with Store() as store:
        goal = new_goal(store, workspace, budget_turns=1, no_progress_turns=10)
        result = run(store, goal, workspace, model)
        assert (result.status, result.reason) == ("budget_limited", "budget_turns")
        kinds = [payload_of(e.event)["kind"] for e in events(store, goal, "turn_started")]
        wrap_up_tools = {t.name for t in model.requests[-1].tools}
    assert kinds == ["continuation", "wrap_up"]
    assert wrap_up_tools == {"get_goal", "update_goal", "checkpoint"}


def test_token_budget_wraps_up_and_resume_with_more_tokens_continues(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    steps = [step("Looking.", shell("ls")), step("", shell("cat cart.py")), step("Summary: nothing fixed yet.")]
    with Store() as store:
        goal = new_goal(store, workspace, budget_tokens=3000, no_progress_turns=10)
        result = run(store, goal, workspace, scripted([*steps, *HONEST_FIX]))
        assert result.status == "budget_limited" and result.reason == "budget_tokens"
        spent = store.get_goal_by_id(goal.goal_id).state.spent
        assert spent.tokens <= 3000 + spent.wrap_up_tokens
        service.resume(store, store.get_goal_by_id(goal.goal_id), raise_by=BudgetRaise(tokens=100_000))
        rest = [step("", call("apply_patch", patch=FIX_PATCH)), step("", complete()), step("done")]
        again = run(store, goal, workspace, scripted_after(store, goal, rest))
    assert again.status == "achieved"


def test_blocked_report_ends_unmet_with_the_blocker_in_the_report(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    blocked = call("update_goal", status="blocked", summary="tried twice", blocker="needs the pricing spec",
                   next_input="the discount rules document")
    with Store() as store:
        goal = new_goal(store, workspace)
        result = run(store, goal, workspace, scripted([step("", shell(TESTS)), step("Stuck.", blocked)]))
        assert (result.status, result.reason) == ("unmet", "blocked")
        markdown = render_markdown(build_report(store, goal))
    assert "needs the pricing spec" in markdown and "the discount rules document" in markdown


def test_unverified_goal_is_labelled_and_achieved_by_the_audit(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    with Store() as store:
        goal = new_goal(store, workspace, objective="Describe the repo", checks=[])
        result = run(store, goal, workspace, scripted([step("", shell("ls")), step("", complete()), step("ok")]))
        assert (result.status, result.reason) == ("achieved", "audit_accepted")
        assert "UNVERIFIED" in render_markdown(build_report(store, goal))


def test_red_keep_green_at_baseline_is_reported_and_not_required(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    with Store() as store:
        goal = new_goal(store, workspace, keep_green=["false", "true"])
        result = run(store, goal, workspace, scripted(HONEST_FIX))
        baseline = payload_of(events(store, goal, "baseline")[0].event)
        report = build_report(store, goal)
    assert result.status == "achieved"
    assert baseline["keep_green_dropped"] == ["false"] and baseline["keep_green_active"] == ["true"]
    assert report["keep_green_dropped"] == ["false"]


def test_metric_goal_keeps_the_best_verified_checkpoint(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    bench = 'import json\nfrom speed import MS\nprint(json.dumps({"ms": MS}))\n'
    (workspace / "bench.py").write_text(bench)
    (workspace / "speed.py").write_text("MS = 120\n")
    git(workspace, "add", "-A")
    git(workspace, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "benchmark")
    steps = [step("", call("write_file", path="speed.py", content="MS = 80\n")), step("", complete("faster")),
             step("", call("write_file", path="speed.py", content="MS = 95\n")), step("", complete("faster still"))]
    with Store() as store:
        goal = new_goal(store, workspace, checks=[], metrics=["latency=python bench.py"], json_paths=["latency=ms"],
                        targets=["latency<50"], max_attempts=2)
        result = run(store, goal, workspace, scripted(steps))
        state = store.get_goal_by_id(goal.goal_id).state
        trend = build_report(store, goal)["metric_trend"]
    assert (result.status, result.reason) == ("unmet", "max_attempts")
    assert state.best is not None and state.best.metric == 80.0 and state.best_metric == 80.0
    assert [point["latency"] for point in trend] == [80.0, 95.0]


def test_each_turn_that_changed_files_is_a_checkpoint_commit_on_the_goal_branch(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    with Store() as store:
        goal = new_goal(store, workspace)
        result = run(store, goal, workspace, scripted(HONEST_FIX))
        [branch] = [payload_of(e.event) for e in events(store, goal, "goal_branch")]
        [checkpoint] = [payload_of(e.event) for e in events(store, goal, "checkpoint")]
    assert result.status == "achieved"
    assert git(workspace, "branch", "--show-current").strip() == branch["name"]
    assert branch["name"].startswith("goal/")
    trailers = git(workspace, "log", "-1", "--format=%(trailers)")
    assert f"Goal-Id: {goal.goal_id}" in trailers and "Turn: 1" in trailers
    assert "Checks: unmeasured" in trailers  # committed before the harness ran the checks on this tree
    assert checkpoint["commit"] == git(workspace, "rev-parse", "HEAD").strip()
    assert git(workspace, "rev-parse", "main").strip() == branch["base_commit"]  # main never moved


def test_a_protected_edit_is_reverted_at_the_checkpoint_and_the_model_is_told(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    sneaky = shell("sed -i 's/180.0/-1800.0/' tests/test_cart.py")  # the shell is the way around the file tools
    steps = [step("", sneaky), step("Edited."), step("", call("apply_patch", patch=FIX_PATCH)), step("", complete()),
             step("ok")]
    contract = contract_from_flags("Fix the discount bug", checks=[f"tests={TESTS}"], protect=["tests/**"],
                                   no_progress_turns=10)
    # Unconfined on purpose: this pins the second line of defence, the check at the checkpoint.
    unconfined = contract.boundaries.model_copy(update={"sandbox": "danger-full-access"})
    with Store() as store:
        goal = new_goal(store, workspace, contract.model_copy(update={"boundaries": unconfined}))
        model = scripted(steps)
        run(store, goal, workspace, model)
        [first, *_] = [payload_of(e.event) for e in events(store, goal, "checkpoint")]
    assert first["violations"] and first["violations"][0]["path"] == "tests/test_cart.py"
    assert "180.0" in (workspace / "tests" / "test_cart.py").read_text()
    told = [m.content for m in model.requests[2].messages if "were reverted" in m.content]
    assert told, "the next turn's opening message names the reverted change"
