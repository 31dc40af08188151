"""The final report: every section in a fixed order, on an achieved, an unmet and a budget-limited goal."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import goalkeeper
from goalkeeper.config.resolve import scripted_settings
from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.goals.report import build_report, render_markdown, render_pr, sparkline
from goalkeeper.sessions.side import ask_side_question
from goalkeeper.store import Store
from scenario import (
    FIX_PATCH,
    TESTS,
    call,
    complete,
    gk,
    new_goal,
    run,
    sample_repo,
    scripted,
    shell,
    step,
    write_script,
)

SECTIONS = ["## Branches", "## Project instructions", "## Evidence (run by the harness)", "### Metric trend",
            "## Verification surface",
            "## Checklist", "## Checkpoint timeline", "## Files touched", "## Commands run", "## Assumptions",
            "## Blockers", "## Claims", "## Budget use", "## Side questions"]
"""Every heading the report can have, in the order it has them."""
OPTIONAL = ("## Project instructions", "## Verification surface", "## Checklist", "## Side questions")


def expected(*optional: str) -> list[str]:
    """The headings a report has: every one that is always there, and these optional ones, in report order."""
    return [heading for heading in SECTIONS if heading not in OPTIONAL or heading in optional]
JSON_KEYS = {"goal_id", "objective", "verified", "status", "reason", "reason_text", "contract", "branch",
             "implements", "implemented_by", "distilled", "baseline", "final", "keep_green_dropped", "metric_baseline",
             "metric_trend", "checklist", "checkpoints", "status_changes", "files_touched", "commands", "blockers",
             "completion_claims", "assumptions", "budget", "compactions", "side_questions", "verification_surface",
             "pinned_files", "verify_edits", "tampering_attempts", "label", "claims",
             "measured_checkpoints", "tests", "instructions", "hooks"}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def headings_in_order(markdown: str) -> list[str]:
    found = [heading for heading in SECTIONS if f"\n{heading}\n" in markdown]
    assert sorted(found, key=lambda heading: markdown.index(f"\n{heading}\n")) == found
    return found


def metric_repo(tmp_path: Path) -> Path:
    """The sample repo plus a benchmark that prints the number in speed.py (120 to start)."""
    workspace = sample_repo(tmp_path)
    (workspace / "bench.py").write_text("from speed import MS\nprint('latency:', MS)\n")
    (workspace / "speed.py").write_text("MS = 120\n")
    git(workspace, "add", "-A")
    git(workspace, "commit", "-qm", "benchmark")
    return workspace


def test_an_achieved_metric_goal_has_every_section_in_order(tmp_path: Path) -> None:
    workspace = metric_repo(tmp_path)
    (workspace / "AGENTS.md").write_text("Keep bench.py as it is.\n")
    git(workspace, "add", "AGENTS.md")
    git(workspace, "commit", "-qm", "instructions")
    steps = [
        step("", call("write_file", path="speed.py", content="MS = 80\n"),
             call("checkpoint", done="cached the price table", verified="bench prints 80", remaining="get under 50",
                  next="batch the lookups", checklist_done=[1])),
        step("", complete("latency is low enough")),
        step("", call("write_file", path="speed.py", content="MS = 40\n"),
             call("checkpoint", done="batched the lookups", verified="bench prints 40", remaining="nothing",
                  next="request completion", assumptions="speed.py stands in for a real benchmark",
                  checklist_done=[2])),
        step("", complete("latency under 50")),
    ]
    contract = contract_from_flags("Get the checkout latency under 50 ms", metrics=["latency=python bench.py"],
                                   regexes=["latency=latency: ([0-9.]+)"], targets=["latency<50"],
                                   protect=["bench.py"], budget_tokens=100_000, budget_turns=10,
                                   checklist=("cache the price table", "batch the lookups", "profile again"))
    side = write_script(tmp_path / "side.json", [step("speed.py holds the latency bench.py prints.")])
    with Store() as store:
        goal = new_goal(store, workspace, contract)
        result = run(store, goal, workspace, scripted(steps))
        ask_side_question(store, workspace, "where does the latency come from?", model=scripted_settings(str(side)))
        report = build_report(store, store.get_goal_by_id(goal.goal_id))
    assert (result.status, result.reason) == ("achieved", "checks_passed")
    markdown = render_markdown(report)

    assert headings_in_order(markdown) == SECTIONS
    assert "## Project instructions\n\n- AGENTS.md · 24 bytes\n" in markdown
    assert "**Status:** achieved — `checks_passed`: the model requested completion and every check passed" in markdown
    assert f"- goal branch: `{report['branch']['name']}`" in markdown
    assert "| `latency` | check | FAIL | PASS | 120 → 40 (< 50) |" in markdown
    assert "| baseline | 120 |\n| 1 | 80 |\n| 2 | 40 |" in markdown
    assert f"`latency` {sparkline([120, 80, 40])} 120 → 40 (target < 50)" in markdown
    assert "- [x] 1. cache the price table\n- [x] 2. batch the lookups\n- [ ] 3. profile again" in markdown
    assert "| 1 | continuation | cached the price table | bench prints 80 | get under 50 | 1 |" in markdown
    assert "| 2 | audit_feedback | batched the lookups | bench prints 40 | nothing | 1 |" in markdown
    assert "## Files touched\n\n- `speed.py`" in markdown
    assert "- turn 2: speed.py stands in for a real benchmark" in markdown
    assert "## Blockers\n\n(none declared)" in markdown
    assert "- `latency` (check) passed at the end in" in markdown and "(exit 0; evidence: " in markdown
    assert "- turn 2, checkpoint says verified: bench prints 40" in markdown  # the model's word, kept apart
    assert "**Completion claims the harness refused:**\n- turn 1: latency is low enough — refused: latency: " \
        "measured 80, target < 50" in markdown
    assert "completion summary: latency is low enough" not in markdown
    assert f"- tokens: {report['budget']['tokens']:,} of 100,000" in markdown
    assert "- turns: 2 of 10" in markdown and "- compactions: 0" in markdown
    assert "- **where does the latency come from?** speed.py holds the latency bench.py prints." in markdown
    assert report["metric_baseline"] == {"turn": 0, "latency": 120.0}
    assert [p["latency"] for p in report["metric_trend"]] == [80.0, 40.0]

    pr = render_pr(report)
    assert pr.startswith("Get the checkout latency under 50 ms\n\n## Summary\n")
    assert "1/1 checks pass" in pr and "Last checkpoint: batched the lookups." in pr
    assert "## What changed\n\nFiles: `speed.py`\n\n- turn 1: cached the price table\n- turn 2: batched" in pr
    assert "| `latency` | check | FAIL | PASS | 120 → 40 (< 50) |" in pr
    assert "- checklist item not marked done: 3. profile again" in pr
    assert "- assumption (turn 2): speed.py stands in for a real benchmark" in pr
    assert f"## Branches\n\n- goal branch: `{report['branch']['name']}`" in pr


def test_an_unmet_goal_reports_the_refused_claims_and_what_still_fails(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    steps = [step("", call("checkpoint", done="read cart.py", verified="the code looks right",
                           remaining="nothing | maybe `a\\|b`\nor so", next="request completion")),
             step("The code is right.", complete("apply_discount looks correct"))]
    with Store() as store:
        goal = new_goal(store, workspace, max_attempts=1)
        result = run(store, goal, workspace, scripted(steps))
        report = build_report(store, store.get_goal_by_id(goal.goal_id))
    assert (result.status, result.reason) == ("unmet", "max_attempts")
    markdown = render_markdown(report)

    assert headings_in_order(markdown) == expected("## Verification surface")
    assert "**Status:** unmet — `max_attempts`: completion was refused more times than max_attempts allows" \
        in markdown
    assert "| `tests` | check | FAIL | FAIL |" in markdown and "(no metric checks)" in markdown
    assert "**Confirmed by the harness (clean room):**\n- (none)" in markdown
    assert "- turn 1, checkpoint says verified: the code looks right" in markdown
    # a pipe in a cell is escaped, a newline folded: the row keeps its six columns
    assert "| 1 | continuation | read cart.py | the code looks right | nothing \\| maybe `a\\\\|b` or so | 0 |" \
        in markdown
    assert "**Completion claims the harness refused:**\n- turn 1: apply_discount looks correct — refused: tests: " \
        in markdown
    assert report["claims"]["confirmed"] == [] and report["claims"]["refused"][0]["reasons"][0].startswith("tests: ")
    assert "## Files touched\n\n(none)" in markdown and "## Assumptions\n\n(none recorded)" in markdown

    pr = render_pr(report)
    assert pr.startswith("[unmet] Fix the discount bug\n") and "0/1 checks pass" in pr
    assert "- failing: `tests` (check, exit 1)" in pr and "Files: (none changed)" in pr


def test_a_budget_limited_goal_reports_which_budget_ran_out(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    steps = [step("", shell("ls")), step("Looked around."), step("", shell("pwd")), step("Out of turns.")]
    with Store() as store:
        goal = new_goal(store, workspace, budget_turns=1)
        result = run(store, goal, workspace, scripted(steps))
        report = build_report(store, store.get_goal_by_id(goal.goal_id))
    assert (result.status, result.reason) == ("budget_limited", "budget_turns")
    markdown = render_markdown(report)

    assert headings_in_order(markdown) == expected()  # no check ran after the baseline: no surface verdict
    assert "**Status:** budget_limited — `budget_turns`: the turn budget was used up, by harness" in markdown
    assert "- turns: 2 of 1" in markdown  # the wrap-up turn runs past the budget, and says so
    assert "- stopped by the budget: the turn budget was used up; one capped wrap-up turn ran" in markdown
    assert "| 2 | wrap_up |" in markdown
    assert "- `ls`" in markdown and "| 1 | continuation |" in markdown
    assert render_pr(report).startswith("[budget_limited] Fix the discount bug\n")


def test_gk_report_prints_markdown_json_or_a_pull_request_description(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    steps: list[Any] = [step("", call("apply_patch", patch=FIX_PATCH)), step("", complete("fixed"))]
    model = f"scripted:{write_script(tmp_path / 'fix.json', steps)}"
    ran = gk("exec", "Fix the discount bug", "--check", f"tests={TESTS}", "--model", model, "--cwd", str(workspace),
             home=goalkeeper_home)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    markdown = gk("report", "--cwd", str(workspace), home=goalkeeper_home).stdout
    assert markdown.startswith("# Goal report: achieved\n") and headings_in_order(markdown)
    data = json.loads(gk("report", "--json", "--cwd", str(workspace), home=goalkeeper_home).stdout)
    assert set(data) == JSON_KEYS and data["status"] == "achieved" and data["files_touched"] == ["cart.py"]
    pr = gk("report", "--pr", "--cwd", str(workspace), home=goalkeeper_home).stdout
    assert pr.startswith("Fix the discount bug\n\n## Summary\n") and "## How it was verified" in pr
    assert "## What remains and risks" in pr and data["branch"]["name"] in pr
    by_id = gk("report", "--goal", data["goal_id"], "--json", home=goalkeeper_home).stdout
    assert json.loads(by_id)["goal_id"] == data["goal_id"]


def render_in_dashboard(markdown: str) -> str:
    """The dashboard's own renderer (server/static/markdown.js) run by node on this Markdown."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = Path(goalkeeper.__file__).parent / "server" / "static" / "markdown.js"
    program = (f"import {{ markdown }} from {json.dumps(script.as_uri())};"
               f"process.stdout.write(String(markdown({json.dumps(markdown)})));")
    done = subprocess.run([node, "--input-type=module", "-e", program], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_dashboard_renders_an_escaped_pipe_as_a_pipe_inside_its_cell() -> None:
    table = "| check | note |\n|---|---|\n| `a` | x \\| y |\n| `b\\|c` | plain |"

    rendered = render_in_dashboard(table)

    assert "<tr><td><code>a</code></td><td>x | y</td></tr>" in rendered
    assert "<tr><td><code>b|c</code></td><td>plain</td></tr>" in rendered
    assert rendered.count("<td>") == 4
