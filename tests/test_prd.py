"""The PRD loop: a finished goal is a spike; `gk distill` writes PRD.md, `gk implement` re-does it from the base."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chat_server import ChatServer, Completion
from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.errors import ContractError
from goalkeeper.events import DistilledEvent, payload_of
from goalkeeper.goals.prd import FACTS_HEADING, SECTIONS, prd_text, read_prd
from goalkeeper.store import Store
from goalkeeper.workspace.git import GoalBranch
from scenario import HONEST_FIX, TESTS, gk, sample_repo, write_script

OBJECTIVE = "Fix the discount bug in cart.py: a percent of 10 means 10%"
PRD = """# PRD: percentages in apply_discount

## Approach
Divide `percent` by 100 in `apply_discount` (cart.py); nothing else changes.

## Why it works
`python -m unittest` passed at the end (it failed at baseline): the tests give 10 for 10%.

## Trade-offs
Callers that pass fractions (0.1) would now get a 0.1% discount.

## Constraints
tests/** is protected; the signature of apply_discount stays.

## Needs cleanup
Nothing in the spike's diff is debt: it is one line.
"""
"""A PRD the model writes: `Verification surface` is left out on purpose (the harness adds a stub)."""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def spike(tmp_path: Path, home: Path) -> tuple[Path, dict[str, Any]]:
    """The sample repo with a goal run to achieved by the scripted honest fix; its report as JSON."""
    workspace = sample_repo(tmp_path)
    model = f"scripted:{write_script(tmp_path / 'spike.json', HONEST_FIX)}"
    ran = gk("exec", OBJECTIVE, "--check", f"tests={TESTS}", "--protect", "tests/**", "--budget-tokens", "200000",
             "--model", model, "--cwd", str(workspace), home=home)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = json.loads(gk("report", "--json", "--cwd", str(workspace), home=home).stdout)
    return workspace, report


def distill_with(server: ChatServer, workspace: Path, home: Path, *more: str) -> Any:
    return gk("distill", "--base-url", server.base_url, "--model", "test-model", "--cwd", str(workspace), *more,
              home=home)


def test_spike_distilled_then_implemented_cleanly_from_its_base_commit(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace, spiked = spike(tmp_path, goalkeeper_home)
    spike_branch, base = spiked["branch"]["name"], spiked["branch"]["base_commit"]
    assert "percent / 100" in (workspace / "cart.py").read_text()

    # distill: one request, no tools, carrying the spike's diff and evidence; the PRD lands in the workspace
    with ChatServer([Completion(text=f"```markdown\n{PRD}```")]) as server:
        distilled = distill_with(server, workspace, goalkeeper_home, "--output", str(workspace / "PRD.md"))
        bodies = list(server.requests)
    assert distilled.returncode == 0, distilled.stdout + distilled.stderr
    assert len(bodies) == 1 and "tools" not in bodies[0]
    sent = bodies[0]["messages"][0]["content"]
    assert "percent / 100" in sent and "| `tests` | check | FAIL | PASS |" in sent
    prd = (workspace / "PRD.md").read_text()
    assert prd.startswith("# PRD: percentages in apply_discount") and "```markdown" not in prd
    assert all(f"\n## {name}\n" in prd for name in SECTIONS)
    assert "## Verification surface\n\n(The model did not write this section.)" in prd
    facts = prd[prd.index(FACTS_HEADING):]
    assert spiked["goal_id"] in facts and spike_branch in facts and base in facts
    assert f"- `tests`: `{TESTS}`" in facts and "| `tests` | check | FAIL | PASS |" in facts
    with Store(goalkeeper_home / "state.db") as store:
        [event] = store.events(_thread(store, spiked["goal_id"]), kinds=[DistilledEvent])
    assert event.goal_id == spiked["goal_id"] and payload_of(event.event)["charged_to_goal"] is False

    # implement: a fresh goal on a new branch from the base commit, the same checks, run to achieved
    model = f"scripted:{write_script(tmp_path / 'clean.json', HONEST_FIX)}"
    done = gk("implement", str(workspace / "PRD.md"), "--run", "--model", model, "--cwd", str(workspace),
              home=goalkeeper_home)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(gk("report", "--json", "--cwd", str(workspace), home=goalkeeper_home).stdout)
    assert report["goal_id"] != spiked["goal_id"] and report["status"] == "achieved"
    branch = report["branch"]["name"]
    assert branch.startswith("goal/") and "implement-percentages" in branch and branch != spike_branch
    assert git(workspace, "branch", "--show-current") == branch
    assert report["branch"]["base_commit"] == base
    assert report["contract"]["checks"] == spiked["contract"]["checks"]
    assert report["contract"]["boundaries"] == spiked["contract"]["boundaries"]
    assert report["contract"]["budget"] == spiked["contract"]["budget"]
    assert report["objective"].startswith("# PRD: percentages") and FACTS_HEADING not in report["objective"]
    assert report["implements"]["spike_goal_id"] == spiked["goal_id"]
    assert report["implements"]["spike_branch"] == spike_branch
    # The spike's fix is not on the new branch: its baseline failed, and the first commit after the base is the PRD.
    assert [e["passed"] for e in report["baseline"]] == [False]
    first = git(workspace, "rev-list", "--reverse", f"{base}..{branch}").splitlines()[0]
    assert git(workspace, "log", "-1", "--format=%s", first) == "goalkeeper: the PRD this goal implements"
    assert git(workspace, "show", f"{first}:cart.py") == git(workspace, "show", f"{base}:cart.py")
    assert report["branch"]["snapshot_commit"] == first
    assert git(workspace, "rev-parse", spike_branch) != git(workspace, "rev-parse", branch)

    # the reports link both branches
    markdown = gk("report", "--cwd", str(workspace), home=goalkeeper_home).stdout
    assert f"re-implements the spike `{spike_branch}`" in markdown and f"goal branch: `{branch}`" in markdown
    pr = gk("report", "--pr", "--cwd", str(workspace), home=goalkeeper_home).stdout
    assert pr.startswith("Implement: percentages in apply_discount\n") and spike_branch in pr and branch in pr
    spike_report = gk("report", "--goal", spiked["goal_id"], "--cwd", str(workspace), home=goalkeeper_home).stdout
    assert f"re-implemented as `{branch}`" in spike_report and "distilled into" in spike_report


def _thread(store: Store, goal_id: str) -> str:
    return store.get_goal_by_id(goal_id).thread_id


def test_distill_refuses_a_goal_still_being_pursued(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    assert gk("goal", OBJECTIVE, "--check", f"tests={TESTS}", "--cwd", str(workspace),
              home=goalkeeper_home).returncode == 0
    with ChatServer([Completion(text=PRD)]) as server:
        refused = distill_with(server, workspace, goalkeeper_home, "--output", str(tmp_path / "PRD.md"))
        asked = len(server.requests)
    assert refused.returncode == 4 and asked == 0
    assert "is pursuing: only a finished goal (achieved, unmet or budget_limited) can be distilled" in refused.stderr
    assert not (tmp_path / "PRD.md").exists()


def facts_prd(tmp_path: Path) -> Path:
    """A PRD with a facts block as distill writes it, for a spike that never existed in this store."""
    contract = contract_from_flags(OBJECTIVE, checks=[f"tests={TESTS}"], protect=["tests/**"])
    report = {"goal_id": "goal_0123456789ab", "status": "achieved", "reason": "checks_passed",
              "reason_text": "checks passed", "objective": OBJECTIVE, "baseline": [], "final": []}
    path = tmp_path / "PRD.md"
    path.write_text(prd_text(PRD, report, contract, GoalBranch("goal/01234567-fix", "0" * 40)))
    return path


@pytest.mark.parametrize(("edit", "says"), [
    (lambda text: text.replace(FACTS_HEADING, "## Facts"), "has no goalkeeper facts block"),
    (lambda text: text.replace('goal_id = "goal_0123456789ab"\n', ""), "[spike] table lacks goal_id"),
    (lambda text: text.replace('\n[spike]\n', '\n[spike\n'), "the facts block is not valid TOML"),
    (lambda text: text.replace('name = "tests"', 'name = "unit tests"'), "'unit tests' is not a check name"),
], ids=["no-facts", "no-goal-id", "bad-toml", "bad-check"])
def test_a_prd_whose_facts_are_missing_or_edited_wrongly_is_one_clear_error(tmp_path: Path, edit: Any,
                                                                             says: str) -> None:
    path = facts_prd(tmp_path)
    path.write_text(edit(path.read_text()))
    with pytest.raises(ContractError) as raised:
        read_prd(path)
    assert says in raised.value.message and str(path) in raised.value.message


def test_implement_needs_the_base_commit_and_a_clean_tree(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    path = facts_prd(tmp_path)
    missing = gk("implement", str(path), "--cwd", str(workspace), home=goalkeeper_home)
    assert missing.returncode == 4 and f"has no commit {'0' * 40}" in missing.stderr

    base = git(workspace, "rev-parse", "HEAD")
    path.write_text(path.read_text().replace("0" * 40, base))
    (workspace / "cart.py").write_text("# changed\n")
    dirty = gk("implement", str(path), "--cwd", str(workspace), home=goalkeeper_home)
    assert dirty.returncode == 4 and "uncommitted changes" in dirty.stderr and "cart.py" in dirty.stderr
    with Store(goalkeeper_home / "state.db") as store:
        assert store.list_threads() == []  # refused before anything was stored

    git(workspace, "checkout", "--", "cart.py")
    started = gk("implement", str(path), "--json", "--cwd", str(workspace), home=goalkeeper_home)
    assert started.returncode == 0, started.stdout + started.stderr
    printed = json.loads(started.stdout)
    assert printed["base_commit"] == base and printed["spike_goal_id"] == "goal_0123456789ab"
    assert git(workspace, "branch", "--show-current") == printed["branch"]
    assert git(workspace, "status", "--porcelain") == ""  # the PRD lies outside the workspace: nothing committed
    assert git(workspace, "rev-parse", "HEAD") == base
