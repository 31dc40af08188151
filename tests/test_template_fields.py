"""The template's other fields: non_goals, read_first, artifacts and reviewer_notes (issue 19, item 4).

Real git repositories and the scripted model; the artifacts are judged by the harness with the checks.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from goalkeeper.context.render import contract_block
from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.contract.lint import lint_report
from goalkeeper.contract.toml import dump_contract, parse_contract
from goalkeeper.errors import ContractError
from goalkeeper.events import AttemptCountedEvent, MessageEvent
from goalkeeper.goals.report import build_report, render_markdown
from goalkeeper.store import Store
from goalkeeper.verify.artifacts import artifact_evidence
from goalkeeper.workspace.read_first import read_first_files
from helpers import git
from scenario import (
    HONEST_FIX,
    TESTS,
    complete,
    contract_with,
    events,
    new_goal,
    run,
    sample_repo,
    scripted,
    shell,
    step,
)

FIELDS = '''
outcome = "Fix the discount bug"
non_goals = ["new dependencies"]
read_first = ["cart.py"]
artifacts = ["NOTES.md", { path = "notes/*.md", min = 2 }]
reviewer_notes = "check the rounding by hand"

[[checks]]
name = "tests"
run = "python -m unittest -q"
'''


def test_the_fields_parse_round_trip_and_reach_the_model_except_the_reviewer_notes() -> None:
    contract = parse_contract(FIELDS)
    assert [(a.path, a.min) for a in contract.artifacts] == [("NOTES.md", 1), ("notes/*.md", 2)]
    assert parse_contract(dump_contract(contract)) == contract
    block = contract_block(contract)
    assert "<non_goals>\n- new dependencies\n</non_goals>" in block
    assert "- `notes/*.md` (at least 2 files)" in block
    assert "rounding" not in block  # reviewer notes are for the person only


@pytest.mark.parametrize("bad", ['artifacts = ["../outside.md"]', 'read_first = ["/etc/passwd"]',
                                 'non_goals = [""]', 'artifacts = [{ path = "a.md", min = 0 }]'])
def test_bad_values_are_one_clear_error(bad: str) -> None:
    with pytest.raises(ContractError) as raised:
        parse_contract(f'outcome = "x"\n{bad}\n')
    assert "write" in str(raised.value) or raised.value.hint


def test_lint_scores_the_new_fields_and_refuses_an_artifact_the_goal_cannot_write() -> None:
    plain = lint_report(contract_from_flags("Fix the discount bug", checks=[f"tests={TESTS}"]))
    full = lint_report(parse_contract(FIELDS))
    scores = {score.element: score.score for score in full.scores}
    assert (scores["context"], scores["deliverables"]) == (2, 2)
    assert {score.element: score.score for score in plain.scores}["deliverables"] == 0
    assert {f.code for f in plain.findings} >= {"no-context", "no-deliverables"}
    protected = lint_report(contract_with(artifacts=["tests/REPORT.md"], boundaries={"protect": ["tests/**"]}))
    [error] = [f for f in protected.findings if f.code == "artifact-unwritable"]
    assert error.severity == "error" and "tests/**" in error.message


def test_an_artifact_counts_only_as_a_regular_file_git_would_commit(git_repo: Path) -> None:
    (git_repo / ".gitignore").write_text("build/\n")
    (git_repo / "notes").mkdir()
    (git_repo / "notes" / "a.md").write_text("a\n")
    os.symlink("/etc/hostname", git_repo / "notes" / "b.md")  # a link proves nothing was written
    (git_repo / "build").mkdir()
    (git_repo / "build" / "NOTES.md").write_text("ignored\n")
    contract = parse_contract(FIELDS)
    missing, too_few = artifact_evidence(contract.artifacts, git_repo)
    assert (missing.kind, missing.passed, missing.error) == ("artifact", False, "missing: no file matches `NOTES.md`")
    assert not too_few.passed and too_few.error == "only 1 of 2 files match `notes/*.md`"
    (git_repo / "NOTES.md").write_text("done\n")
    (git_repo / "notes" / "c.md").write_text("c\n")
    assert all(e.passed for e in artifact_evidence(contract.artifacts, git_repo))


def test_read_first_reads_the_commit_in_order_within_its_share_and_follows_no_link(git_repo: Path) -> None:
    (git_repo / "docs").mkdir()
    (git_repo / "docs" / "a.md").write_text("alpha\n")
    (git_repo / "docs" / "b.md").write_text("b" * 100)
    os.symlink("/etc/passwd", git_repo / "docs" / "c.md")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-qm", "docs")
    commit = git(git_repo, "rev-parse", "HEAD").strip()
    (git_repo / "docs" / "a.md").write_text("changed in the working tree\n")  # never read: the commit is
    files, missing = read_first_files(git_repo, commit, ["README.md", "docs/*.md", "nope.md"], max_chars=40)
    assert [(f.path, f.text, f.cut) for f in files] == [
        ("README.md", "sample\n", False), ("docs/a.md", "alpha\n", False), ("docs/b.md", "b" * 27, True)]
    assert missing == ["nope.md"]


def test_a_missing_artifact_keeps_the_goal_from_achieved_until_it_is_written(tmp_path: Path, store: Store) -> None:
    workspace = sample_repo(tmp_path)
    goal = new_goal(store, workspace, contract_with(artifacts=["NOTES.md"], read_first=["cart.py"],
                                                  reviewer_notes="check the rounding by hand"))
    script = [*HONEST_FIX[:-1], step("The notes were missing.", shell("echo fixed > NOTES.md")),
              step("", complete("notes written")), step("Done.")]
    result = run(store, goal, workspace, scripted(script))
    assert result.status == "achieved"
    [counted] = [r.event for r in events(store, goal, "attempt_counted")]
    assert isinstance(counted, AttemptCountedEvent) and counted.failing == ["NOTES.md"]  # the artifact failed
    first = events(store, goal, "message")[0].event
    assert isinstance(first, MessageEvent) and "### `cart.py`" in first.content
    assert "def apply_discount" in first.content
    report = render_markdown(build_report(store, store.get_goal_by_id(goal.goal_id)))
    assert "## Artifacts" in report and "- `NOTES.md`: present" in report
    assert "check the rounding by hand" in report
