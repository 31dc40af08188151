"""What the harness tells the truth about (issue 20): which program could not start, metrics that are not
numbers, prices by exact model name, and a prompt too long that is compacted before anything is cut."""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path

import pytest

from chat_server import ChatServer, Completion, Failure, ToolCallReply
from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.errors import ConfigError, ContractError
from goalkeeper.events import CompactedEvent, Evidence
from goalkeeper.models.openai_chat import OpenAIChatModel
from goalkeeper.models.pricing import builtin_prices, load_prices, price_of, require_price
from goalkeeper.run.runner import Runner
from goalkeeper.spec.contract import Check, Metric
from goalkeeper.spec.settings import Price
from goalkeeper.store import Store
from goalkeeper.verify.checks import MetricNotFinite, read_metric, run_check
from goalkeeper.verify.lint import lint_goal
from scenario import TESTS, events, gk, new_goal, run, sample_repo, scripted, step

PYTHON = shlex.quote(sys.executable)


def check(workspace: Path, run: str, metric: Metric | None = None) -> Evidence:
    return asyncio.run(run_check(Check(name="c", run=run, metric=metric, timeout_s=30), workspace))


# ---------------------------------------------------------------- errors name the program bash could not start


@pytest.mark.parametrize(
    ("run", "program"),
    [("cd . && nonexistent_tool --all", "nonexistent_tool"),
     ("FOO=1 true && missing-linter .", "missing-linter"),
     ("./no-such-script.sh", "./no-such-script.sh")],
)
def test_command_not_found_names_the_program_bash_could_not_find(tmp_path: Path, run: str, program: str) -> None:
    evidence = check(tmp_path, run)
    assert evidence.exit_code == 127 and not evidence.passed
    assert evidence.error == f"command not found: {program}; check the `run` of check c"


def test_a_script_that_calls_a_missing_program_names_that_program(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text("#!/bin/bash\necho starting\nnot-installed-tool --fast\n")
    (tmp_path / "run.sh").chmod(0o755)
    evidence = check(tmp_path, "./run.sh")
    assert evidence.error is not None and evidence.error.startswith("command not found: not-installed-tool;")


def test_a_program_that_exits_127_itself_is_not_called_missing(tmp_path: Path) -> None:
    evidence = check(tmp_path, f"{PYTHON} -c 'import sys; sys.exit(127)'")
    assert evidence.exit_code == 127 and not evidence.passed
    assert evidence.error is None


def test_a_file_that_is_not_executable_is_named(tmp_path: Path) -> None:
    (tmp_path / "tool").write_text("echo hi\n")
    evidence = check(tmp_path, "true && ./tool")
    assert evidence.exit_code == 126
    assert evidence.error == "command not executable: ./tool; check the `run` of check c"


def test_lint_refuses_a_missing_program_but_not_a_program_that_exits_127(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    contract = contract_from_flags("Fix the discount bug so the tests pass", checks=[
        "missing=cd . && nonexistent_tool", "chose=python3 -c 'import sys; sys.exit(127)'"])
    findings = [f for f in lint_goal(contract, workspace).findings if f.code == "cannot-run"]
    assert [f.message for f in findings] == ["check `missing` cannot run: command not found: nonexistent_tool"]


# ---------------------------------------------------------------- metrics


@pytest.mark.parametrize("value", ["-inf", "inf", "nan", "-Infinity", "NaN"])
def test_a_metric_that_is_not_finite_fails_the_check_and_says_so(tmp_path: Path, value: str) -> None:
    evidence = check(tmp_path, f"echo 'val: {value}'", Metric(regex=r"val: (\S+)", target="< 1"))
    assert not evidence.passed and evidence.metric is None
    assert evidence.error is not None and evidence.error.startswith("metric is not a finite number: ")


@pytest.mark.parametrize("document", ['{"p95": -Infinity}', '{"p95": NaN}', '{"p95": "inf"}'])
def test_a_json_metric_that_is_not_finite_is_a_failed_measurement(document: str) -> None:
    with pytest.raises(MetricNotFinite, match="metric is not a finite number"):
        read_metric(Metric(json_path="p95", target="< 1"), document + "\n")


def test_the_last_regex_match_and_the_last_json_document_count() -> None:
    regex = Metric(regex=r"loss: ([\d.]+)", target="< 1")
    assert read_metric(regex, "loss: 0.5\nloss: 0.9\nloss: 2.5\n") == 2.5
    path = Metric(json_path="p95", target="< 1")
    assert read_metric(path, '{"p95": 0.5}\n{"p95": 7}\n') == 7.0


# ---------------------------------------------------------------- prices by exact name and dated snapshot


def test_a_model_that_extends_a_priced_name_is_not_charged_its_price() -> None:
    cheap = Price(input=1.0, cached_input=0.5, output=4.0)
    table = {"o1": cheap, "o3": cheap, "gpt-4o": cheap}
    for other in ("o1-pro", "o3-deep-research", "gpt-4o-audio-preview", "o1-2024-12"):
        assert price_of(other, table) is None, other
    assert price_of("o1-pro") == builtin_prices()["o1-pro"] != builtin_prices()["o1"]


def test_a_dated_snapshot_is_priced_as_the_model_it_dates() -> None:
    prices = builtin_prices()
    assert price_of("gpt-4o-2024-08-06") == prices["gpt-4o"]
    assert price_of("gpt-4o-mini-2024-07-18") == prices["gpt-4o-mini"]
    assert price_of("claude-sonnet-4-5-20250929") == prices["claude-sonnet-4-5"]
    assert price_of("o3-deep-research-2025-06-26") == prices["o3-deep-research"]


def test_a_usd_budget_on_a_model_with_no_exact_price_is_still_refused() -> None:
    with pytest.raises(ConfigError, match="no price for model o1-preview"):
        require_price("o1-preview", "openai", load_prices(), usd_budget=5.0)


def test_gk_goal_says_the_model_has_no_price_and_how_to_set_one(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    done = gk("goal", "Fix the discount bug so the tests pass", "--check", f"tests={TESTS}", "--base-url",
              "http://127.0.0.1:9/v1", "--model", "o1-preview", "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 0, done.stderr
    assert "no price is known for model o1-preview" in done.stderr
    assert '[model_pricing."o1-preview"]' in done.stderr and "cached_input" in done.stderr


# ---------------------------------------------------------------- a prompt too long is compacted, once


def test_a_prompt_still_too_long_after_compacting_pauses_without_compacting_again(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    big = Completion(text="", tool_calls=(ToolCallReply("shell", {"command": "python -c \"print('x' * 9000)\""}),))
    too_long = Failure.context_length_exceeded()
    # The refused request, its summary request, then the compacted request: nothing is left to cut.
    with ChatServer([big, too_long, too_long, too_long]) as server, Store() as store:
        goal = new_goal(store, workspace)
        model = OpenAIChatModel("test-model", server.base_url, "key")
        result = asyncio.run(Runner(store, store.get_goal_by_id(goal.goal_id), model, workspace).run())
        compacted = store.events(goal.thread_id, kinds=[CompactedEvent])
        requests = len(server.requests)
    assert (result.status, result.reason) == ("paused", "context_too_long")
    assert len(compacted) == 1 and requests == 4


def test_the_baseline_refuses_a_missing_program_but_runs_a_check_that_exits_127(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    with Store() as store:
        missing = new_goal(store, workspace, checks=["tests=cd . && nonexistent_tool"])
        with pytest.raises(ContractError, match="cannot run: command not found: nonexistent_tool"):
            run(store, missing, workspace, scripted([]))
        chose = new_goal(store, workspace, checks=["tests=python3 -c 'import sys; sys.exit(127)'"])
        result = run(store, chose, workspace, scripted([step("I cannot fix this.")]))
        # Past the baseline to the model, which said nothing useful: a failing check, not a missing program.
        assert result.status == "paused" and events(store, chose, "baseline") and events(store, chose, "model_response")
