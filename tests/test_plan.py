"""Plan mode: `gk plan` runs one read-only planning turn and stores its plan; `gk goal --from-plan` adopts it."""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from chat_server import ChatServer, Completion, ToolCallReply
from goalkeeper.context.prompts import as_data, render
from goalkeeper.context.render import contract_block
from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.events import PlanEvent, payload_of
from goalkeeper.sessions.planning import plan_from_text
from goalkeeper.spec.contract import Contract
from goalkeeper.store import Store
from goalkeeper.tools.base import ToolContext
from goalkeeper.tools.goal import Checkpoint
from goalkeeper.tools.registry import READ_ONLY_TOOL_NAMES, default_registry
from scenario import FIX_PATCH, TESTS, gk, sample_repo

OBJECTIVE = "Fix the discount bug"
STEPS = ["Read cart.py and find where the percent is applied", "Divide the percent by 100",
         "Run the unit tests"]
PLAN: dict[str, Any] = {
    "objective": "apply_discount(200, 10) returns 180 and `python -m unittest` passes", "steps": STEPS,
    "checks": [{"name": "tests", "run": TESTS}], "risks": ["other callers may pass fractions"],
    "questions": ["Are percentages always given as 10 for 10%?"]}
READ = Completion(tool_calls=(ToolCallReply("read_file", {"path": "cart.py"}),))
SUBMIT = Completion(text="Here is the plan.", tool_calls=(ToolCallReply("submit_plan", PLAN),))
NEVER = Completion(text="THIS REPLY MUST NEVER BE REQUESTED")


def continuation_opening() -> str:
    """The continuation prompt's first words ("Continue ... toward the goal"), read from its file."""
    text = resources.files("goalkeeper.context").joinpath("prompts", "continuation.md").read_text("utf-8")
    return text.split("(turn", 1)[0].strip()


def tool_names(body: dict[str, Any]) -> set[str]:
    return {tool["function"]["name"] for tool in body.get("tools", [])}


def plan_events(home: Path) -> list[dict[str, Any]]:
    with Store(home / "state.db") as store:
        return [payload_of(e.event) for t in store.list_threads() for e in store.events(t.thread_id, kinds=[PlanEvent])]


def plan_with(server: ChatServer, workspace: Path, home: Path, *more: str) -> Any:
    return gk("plan", OBJECTIVE, "--base-url", server.base_url, "--model", "test-model", "--cwd", str(workspace),
              *more, home=home)


def test_planning_turn_reads_then_submits_and_nothing_is_sent_after_the_plan(
        tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    with ChatServer([READ, SUBMIT, NEVER]) as server:
        done = plan_with(server, workspace, goalkeeper_home)
        bodies = list(server.requests)
    assert done.returncode == 0, done.stdout + done.stderr

    assert len(bodies) == 2  # the read, then the plan: no request after submit_plan
    opening = continuation_opening()
    assert opening and not any(opening in json.dumps(body) for body in bodies)
    read_only = set(READ_ONLY_TOOL_NAMES) & set(default_registry().tools)
    assert all(tool_names(body) == read_only | {"submit_plan"} for body in bodies)
    assert bodies[0]["messages"][0]["content"] == render("system")
    assert f"<objective>\n{as_data(OBJECTIVE)}\n</objective>" in bodies[0]["messages"][1]["content"]
    assert bodies[1]["messages"][-1]["role"] == "tool" and "apply_discount" in bodies[1]["messages"][-1]["content"]

    [stored] = plan_events(goalkeeper_home)
    assert stored["objective"] == PLAN["objective"] and stored["steps"] == STEPS
    assert stored["checks"] == PLAN["checks"] and stored["questions"] == PLAN["questions"]
    assert stored["source"] == "submit_plan" and stored["requests"] == 2 and stored["model"] == "test-model"
    assert "1. Read cart.py" in done.stdout and "## Suggested checks" in done.stdout
    assert "gk goal --from-plan --check 'tests=python -m unittest -q'" in done.stdout


def test_a_text_only_answer_is_the_plan_and_its_list_items_are_the_steps(
        tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    text = "The bug is in cart.py.\n\n1. Read cart.py\n2. Divide the percent by 100\n- Run the tests\n"
    with ChatServer([Completion(text=text), NEVER]) as server:
        done = plan_with(server, workspace, goalkeeper_home, "--json")
        bodies = list(server.requests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(bodies) == 1
    printed = json.loads(done.stdout)
    assert printed["steps"] == ["Read cart.py", "Divide the percent by 100", "Run the tests"]
    assert printed["objective"] == OBJECTIVE and printed["source"] == "text"
    [stored] = plan_events(goalkeeper_home)
    assert stored["text"] == text and stored["steps"] == printed["steps"]


def test_an_invalid_submit_plan_is_a_tool_error_the_model_can_fix(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    broken = Completion(tool_calls=(ToolCallReply("submit_plan", {"objective": "x", "steps": []}),))
    with ChatServer([broken, SUBMIT, NEVER]) as server:
        done = plan_with(server, workspace, goalkeeper_home)
        bodies = list(server.requests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(bodies) == 2
    assert "submit_plan: `steps` must list at least one step" in bodies[1]["messages"][-1]["content"]


def test_text_plan_parses_numbered_and_bulleted_items() -> None:
    plan = plan_from_text("Intro\n1) one\n  * [ ] two\n+ three\nnot an item", "goal")
    assert plan.steps == ("one", "two", "three") and plan.objective == "goal"


def test_adopted_plan_sets_objective_and_checklist_and_checkpoints_mark_items_done(
        tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    with ChatServer([READ, SUBMIT]) as server:
        assert plan_with(server, workspace, goalkeeper_home).returncode == 0

    adopted = gk("goal", "--from-plan", "--check", f"tests={TESTS}", "--cwd", str(workspace), home=goalkeeper_home)
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    shown = gk("goal", "--cwd", str(workspace), home=goalkeeper_home)
    assert PLAN["objective"] in shown.stdout and "checklist: 0/3 done" in shown.stdout
    assert f"[ ] 1. {STEPS[0]}" in shown.stdout and f"[ ] 3. {STEPS[2]}" in shown.stdout

    work = [
        Completion(tool_calls=(ToolCallReply("apply_patch", {"patch": FIX_PATCH}),)),
        Completion(tool_calls=(ToolCallReply("checkpoint", {"done": "percent divided by 100", "remaining": "tests",
                                                            "next": "run the tests", "checklist_done": [1, 2]}),)),
        Completion(tool_calls=(ToolCallReply("update_goal", {"status": "complete", "summary": "fixed"}),)),
    ]
    with ChatServer(work) as server:
        ran = gk("run", "--base-url", server.base_url, "--model", "test-model", "--cwd", str(workspace),
                 home=goalkeeper_home)
        first = server.requests[0]
    assert ran.returncode == 0, ran.stdout + ran.stderr
    numbered = "\n".join(f"{n}. {as_data(step)}" for n, step in enumerate(STEPS, 1))
    assert f"<checklist>\n{numbered}\n</checklist>" in first["messages"][1]["content"]
    assert "checklist_done" in json.dumps([t for t in first["tools"] if t["function"]["name"] == "checkpoint"])

    status = gk("status", "--cwd", str(workspace), home=goalkeeper_home)
    assert "checklist: 2/3 done" in status.stdout
    assert f"[x] 1. {STEPS[0]}" in status.stdout and f"[x] 2. {STEPS[1]}" in status.stdout
    assert f"[ ] 3. {STEPS[2]}" in status.stdout
    as_json = json.loads(gk("status", "--json", "--cwd", str(workspace), home=goalkeeper_home).stdout)
    assert [item["done"] for item in as_json["checklist"]] == [True, True, False]


def test_from_plan_needs_a_plan_and_no_objective_beside_it(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    missing = gk("goal", "--from-plan", "--cwd", str(workspace), home=goalkeeper_home)
    assert missing.returncode == 4 and "no plan in this workspace" in missing.stderr and "gk plan" in missing.stderr
    with ChatServer([Completion(text="1. Read cart.py")]) as server:
        assert plan_with(server, workspace, goalkeeper_home).returncode == 0
    both = gk("goal", "Something else", "--from-plan", "--cwd", str(workspace), home=goalkeeper_home)
    assert both.returncode == 4 and "one or the other" in both.stderr


def test_a_goal_without_a_checklist_renders_the_same_contract_as_before() -> None:
    plain = contract_from_flags("Fix <it>", checks=[f"tests={TESTS}"], protect=["tests/**"], budget_tokens=100)
    planned = plain.model_copy(update={"checklist": ("read cart.py", "fix it")})
    section = "\n\n" + render("checklist", items="1. read cart.py\n2. fix it")
    assert section in contract_block(planned)
    assert contract_block(planned).replace(section, "") == contract_block(plain)
    assert "checklist" not in contract_block(plain).lower()


@pytest.mark.parametrize(("arguments", "says"), [
    ({"checklist_done": [4]}, "[4], not checklist item numbers (1 to 3)"),
    ({"checklist_done": [0]}, "[0], not checklist item numbers"),
    ({"checklist_done": [True]}, "must be an array of integers"),
    ({"checklist_done": "1"}, "must be an array of integers"),
])
def test_checkpoint_refuses_checklist_numbers_out_of_range(tmp_path: Path, arguments: dict[str, Any],
                                                           says: str) -> None:
    context = ToolContext(tmp_path, goal_view={"checklist": ["a", "b", "c"]})
    note = {"done": "d", "remaining": "r", "next": "n"}
    result = asyncio.run(Checkpoint().call({**note, **arguments}, context))
    assert not result.ok and says in result.output


def test_checkpoint_keeps_finished_checklist_items_in_its_note(tmp_path: Path) -> None:
    context = ToolContext(tmp_path, goal_view={"checklist": ["a", "b", "c"]})
    result = asyncio.run(Checkpoint().call({"done": "d", "remaining": "r", "next": "n", "checklist_done": [3, 1, 3]},
                                          context))
    assert result.ok and result.note is not None and result.note["checklist_done"] == [1, 3]
    plain = asyncio.run(Checkpoint().call({"done": "d", "remaining": "r", "next": "n"}, context))
    assert plain.note is not None and "checklist_done" not in plain.note


def test_contract_checklist_survives_the_store(tmp_path: Path) -> None:
    contract = Contract(outcome="x", checklist=("a", "b"))
    assert Contract.model_validate(json.loads(json.dumps(contract.model_dump(mode="json")))) == contract
