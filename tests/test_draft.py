"""`gk draft`: a read-only session investigates the repo and submits a goal, written for review and never set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chat_server import ChatServer, Completion, ToolCallReply
from goalkeeper.context.prompts import as_data, render
from goalkeeper.contract.toml import load_contract
from goalkeeper.errors import ContractError
from goalkeeper.events import payload_of
from goalkeeper.sessions.drafting import contract_from_arguments
from goalkeeper.store import Store
from goalkeeper.verify.lint import lint_goal
from scenario import TESTS, event_class, gk, sample_repo

DESCRIPTION = "fix the discount bug: 10 means 10%"
GOAL = {"outcome": "apply_discount(200, 10) returns 180.0 and `python -m unittest` passes",
        "checks": [{"name": "tests", "run": TESTS, "timeout": "5m"}],
        "keep_green": [], "protect": ["tests/**"], "paths": ["cart.py"],
        "iteration": {"policy": "reproduce with the failing test first; smallest change first"},
        "blocked_when": "the tests and the README disagree about what a percent means",
        "budget": {"tokens": 200000, "time": "30m", "turns": 20}}
READ = Completion(tool_calls=(ToolCallReply("read_file", {"path": "README.md"}),))
SEARCH = Completion(tool_calls=(ToolCallReply("search", {"pattern": "def apply_discount"}),))
SUBMIT = Completion(text="Here is the goal.", tool_calls=(ToolCallReply("submit_goal", GOAL),))
NEVER = Completion(text="THIS REPLY MUST NEVER BE REQUESTED")


def submit(**changes: Any) -> Completion:
    return Completion(tool_calls=(ToolCallReply("submit_goal", {**GOAL, **changes}),))


def draft_with(server: ChatServer, workspace: Path, home: Path, *more: str) -> Any:
    return gk("draft", DESCRIPTION, "--base-url", server.base_url, "--model", "test-model", "--cwd", str(workspace),
              *more, home=home)


def stored(home: Path, kind: str) -> list[Any]:
    with Store(home / "state.db") as store:
        return [e for t in store.list_threads() for e in store.events(t.thread_id, kinds=[event_class(kind)])]


def test_a_draft_reads_the_repo_and_writes_a_goal_toml_that_parses_and_passes_lint(
        tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    output = tmp_path / "goal.draft.toml"
    with ChatServer([READ, SEARCH, SUBMIT, NEVER]) as server:
        done = draft_with(server, workspace, goalkeeper_home, "--output", str(output))
        bodies = list(server.requests)
    assert done.returncode == 0, done.stdout + done.stderr

    assert len(bodies) == 3  # two reads, then the goal: nothing is sent after submit_goal
    assert all({t["function"]["name"] for t in body["tools"]} == {"read_file", "search", "read_output", "submit_goal"}
               for body in bodies)
    assert f"<description>\n{as_data(DESCRIPTION)}\n</description>" in bodies[0]["messages"][1]["content"]
    assert "python -m unittest" in bodies[1]["messages"][-1]["content"]  # the README the model asked for came back

    text = output.read_text()
    assert text.startswith("# Drafted by test-model from this description:\n#   " + DESCRIPTION)
    assert "goalkeeper never sets it" in text and "# Lint when drafted: 0 error(s)" in text
    contract = load_contract(output)
    assert contract == contract_from_arguments(GOAL)
    assert contract.checks[0].run == TESTS and contract.boundaries.protect == ["tests/**"]
    assert contract.blocked_when and contract.iteration.policy and contract.budget.tokens == 200000
    assert not lint_goal(contract, workspace).errors
    assert "no errors: ready for `gk goal`" in done.stdout and f"gk goal --file {output}" in done.stdout

    [event] = stored(goalkeeper_home, "draft")
    assert event.goal_id is None and payload_of(event.event)["description"] == DESCRIPTION
    assert payload_of(event.event)["output"] == str(output) and payload_of(event.event)["lint"]["errors"] == 0
    assert payload_of(event.event)["requests"] == 3 and payload_of(event.event)["model"] == "test-model"
    never_set = gk("goal", "--cwd", str(workspace), home=goalkeeper_home)
    assert never_set.returncode == 4 and "no goal" in never_set.stderr


def test_an_existing_file_is_not_overwritten_without_force(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    output = tmp_path / "goal.toml"
    output.write_text("outcome = 'mine'\n")
    with ChatServer([SUBMIT, SUBMIT]) as server:
        refused = draft_with(server, workspace, goalkeeper_home, "-o", str(output))
        asked = len(server.requests)
        kept = output.read_text()
        forced = draft_with(server, workspace, goalkeeper_home, "-o", str(output), "--force")
    assert refused.returncode == 4 and "already exists" in refused.stderr and "--force" in refused.stderr
    assert asked == 0 and kept == "outcome = 'mine'\n"  # refused before the model was asked anything
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert load_contract(output).outcome == GOAL["outcome"]


def test_an_invalid_goal_is_a_tool_error_the_model_fixes(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    broken = submit(checks=[{"name": "unit tests", "run": TESTS, "metric": {"target": "< 3"}}])
    with ChatServer([broken, SUBMIT, NEVER]) as server:
        done = draft_with(server, workspace, goalkeeper_home, "-o", str(tmp_path / "draft.toml"), "--json")
        bodies = list(server.requests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(bodies) == 2
    error = bodies[1]["messages"][-1]
    assert error["role"] == "tool"
    assert "submit_goal: checks[0].name: 'unit tests' is not a check name" in error["content"]
    assert "checks[0].metric: give exactly one of `regex` and `json_path`" in error["content"]
    printed = json.loads(done.stdout)
    assert printed["contract"]["checks"][0]["name"] == "tests" and printed["lint"]["ok"] is True


def test_lint_errors_go_back_once_and_the_fixed_goal_is_written(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    cannot_run = submit(checks=[{"name": "tests", "run": "nosuchprog -q"}])
    with ChatServer([cannot_run, SUBMIT, NEVER]) as server:
        done = draft_with(server, workspace, goalkeeper_home, "-o", str(tmp_path / "draft.toml"))
        bodies = list(server.requests)
    assert done.returncode == 0, done.stdout + done.stderr
    lint_feedback = bodies[1]["messages"][-1]["content"]
    assert "Lint found errors" in lint_feedback and "`nosuchprog`, which is not a command here" in lint_feedback
    assert load_contract(tmp_path / "draft.toml").checks[0].run == TESTS
    assert payload_of(stored(goalkeeper_home, "draft")[0].event)["fix_rounds"] == 1


def test_lint_errors_left_after_the_one_fix_are_written_shown_and_exit_1(tmp_path: Path,
                                                                         goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    passing = submit(checks=[{"name": "tests", "run": "true"}])
    with ChatServer([passing, passing, NEVER]) as server:
        done = draft_with(server, workspace, goalkeeper_home, "-o", str(tmp_path / "draft.toml"))
        asked = len(server.requests)
    assert done.returncode == 1, done.stdout + done.stderr
    assert asked == 2  # one chance to fix, then the draft is written as it stands
    text = (tmp_path / "draft.toml").read_text()
    assert "# Lint when drafted: 1 error(s)" in text and "#   error [verification] every check passes already" in text
    assert "passes-at-baseline" in done.stdout


def test_a_text_answer_is_asked_to_submit(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    with ChatServer([Completion(text="The tests run with unittest."), SUBMIT, NEVER]) as server:
        done = draft_with(server, workspace, goalkeeper_home, "-o", str(tmp_path / "draft.toml"))
        bodies = list(server.requests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(bodies) == 2 and bodies[1]["messages"][-1]["content"] == render("draft_submit")


@pytest.mark.parametrize(("arguments", "says"), [
    ({"budget": {"time": "soon"}}, "budget.time: not a duration: 'soon'"),
    ({"colour": "blue"}, "unknown field(s) ['colour']"),
    ({"outcome": " "}, "outcome: is empty"),
    ({"checks": [{"name": "a", "run": "x"}, {"name": "a", "run": "y"}]}, "`a` is used twice"),
])
def test_submit_goal_arguments_are_validated_as_goal_toml(arguments: dict[str, Any], says: str) -> None:
    with pytest.raises(ContractError) as raised:
        contract_from_arguments({**GOAL, **arguments})
    assert says in raised.value.message
