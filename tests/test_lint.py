"""`gk lint`: one test per finding, the scores, and the gate in front of `gk goal` and `gk exec`.

The contract's own findings are read without running anything; the rest run real commands in a real git
repository in tmp_path, under the real sandbox, in a scratch copy of it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.contract.lint import Finding, LintReport, is_vague, lint_report
from goalkeeper.contract.toml import parse_contract
from goalkeeper.spec.contract import Contract
from goalkeeper.verify.lint import lint_goal
from helpers import git
from scenario import TESTS, gk, sample_repo, write_script

STRONG = """
outcome = "Fix the discount bug so that `python -m unittest` passes"
blocked_when = "the fix needs a change to the pricing service"
read_first = ["cart.py"]
non_goals = ["a new pricing model"]
reviewer_notes = "check the rounding by hand"
[[checks]]
name = "tests"
run = "python -m unittest -q"
[constraints]
keep_green = ["python -c 'import cart'"]
[boundaries]
protect = ["test_*.py"]
[iteration]
policy = "reproduce first, then the smallest change"
[budget]
tokens = 100000
"""


def contract(objective: str = "Fix the discount bug so the tests pass", **flags: object) -> Contract:
    return contract_from_flags(objective, **flags)  # type: ignore[arg-type]


def codes(findings: list[Finding] | tuple[Finding, ...], severity: str | None = None) -> list[str]:
    return [f.code for f in findings if severity is None or f.severity == severity]


def only(report: LintReport, code: str) -> Finding:
    [finding] = [f for f in report.findings if f.code == code]
    return finding


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return sample_repo(tmp_path)  # cart.py with a bug; `python -m unittest` fails


# ---------------------------------------------------------------- the contract alone (nothing runs)


def test_a_strong_contract_scores_two_on_every_element_and_has_no_finding() -> None:
    report = lint_report(parse_contract(STRONG))
    assert report.findings == ()
    assert [s.score for s in report.scores] == [2] * 9 and report.total == 18
    assert report.as_json()["scores"]["budget"] == {"score": 2, "label": "strong", "note": "tokens"}


def test_a_vague_outcome_with_no_checks_is_an_error() -> None:
    finding = only(lint_report(contract("Clean up the inbox")), "vague-outcome")
    assert finding.severity == "error" and finding.element == "outcome"
    assert "'Clean up'" in finding.message and "outcome =" in finding.fix


def test_a_vague_outcome_with_a_check_is_a_warning() -> None:
    finding = only(lint_report(contract("Improve the cart code", checks=[f"tests={TESTS}"])), "vague-outcome")
    assert finding.severity == "warning"


def test_vague_words_with_a_number_or_a_command_are_checkable() -> None:
    assert is_vague("make the parser better")
    assert not is_vague("make the parser handle 10,000 lines")
    assert not is_vague("clean up until `ruff check .` passes")


def test_no_checks_on_a_concrete_outcome_is_a_warning_for_an_unverified_goal() -> None:
    finding = only(lint_report(contract("Write a CHANGELOG entry for release 2.1")), "no-checks")
    assert finding.severity == "warning" and "unverified" in finding.message
    assert "[[checks]]" in finding.fix and "--check" in finding.fix


def test_no_checks_on_a_vague_outcome_is_an_error() -> None:
    assert only(lint_report(contract("Make the code nicer")), "no-checks").severity == "error"


def test_make_it_faster_without_a_metric_target_is_an_error() -> None:
    report = lint_report(contract("make it faster", checks=[f"tests={TESTS}"]))
    finding = only(report, "no-metric")
    assert finding.severity == "error" and finding.element == "verification"
    assert "metric" in finding.fix and "--target" in finding.fix
    with_metric = contract("make it faster", metrics=["bench=python bench.py"], json_paths=["bench=p95"],
                           targets=["bench<120"])
    assert "no-metric" not in codes(lint_report(with_metric).findings)


def test_a_terse_outcome_is_a_note() -> None:
    finding = only(lint_report(contract("Fix it", checks=[f"tests={TESTS}"])), "terse-outcome")
    assert finding.severity == "info"


def test_no_keep_green_is_a_note() -> None:
    assert only(lint_report(contract()), "no-constraints").severity == "info"


def test_a_protect_glob_that_covers_everything_is_an_error() -> None:
    finding = only(lint_report(contract(protect=["**"])), "protect-everything")
    assert finding.severity == "error" and finding.element == "boundaries" and "'**'" in finding.message


@pytest.mark.parametrize(("paths", "protect"), [
    (["src/**"], ["src/**"]),
    (["src/**/*.py"], ["src/"]),
    (["docs/api.md"], ["docs/**"]),
    (["*.lock"], ["*.lock"]),
])
def test_a_path_that_protect_covers_entirely_is_an_error(paths: list[str], protect: list[str]) -> None:
    finding = only(lint_report(contract(paths=paths, protect=protect)), "path-protected")
    assert finding.severity == "error" and repr(paths[0]) in finding.message


@pytest.mark.parametrize(("paths", "protect"), [
    (["src/**"], ["src/config.py"]),
    (["src/**"], ["tests/**"]),
    (["*.md"], ["docs/**"]),
])
def test_protect_that_leaves_part_of_a_path_open_is_no_conflict(paths: list[str], protect: list[str]) -> None:
    assert not {"path-protected", "protect-everything"} & set(codes(lint_report(contract(paths=paths,
                                                                                          protect=protect)).findings))


def test_no_boundaries_is_a_note() -> None:
    assert only(lint_report(contract()), "no-boundaries").severity == "info"


def test_no_iteration_policy_is_a_note_that_names_the_defaults() -> None:
    finding = only(lint_report(contract()), "no-iteration-policy")
    assert finding.severity == "info" and "max_attempts 3" in finding.message


def test_no_blocked_condition_is_a_warning() -> None:
    finding = only(lint_report(contract()), "no-blocked-condition")
    assert finding.severity == "warning" and "blocked_when =" in finding.fix


def test_no_budget_is_a_warning() -> None:
    finding = only(lint_report(contract()), "no-budget")
    assert finding.severity == "warning" and "--budget-tokens" in finding.fix
    assert "no-budget" not in codes(lint_report(contract(budget_turns=10)).findings)


def test_scores_are_missing_weak_or_strong() -> None:
    report = lint_report(contract("Improve the cart code", checks=[f"tests={TESTS}"], budget_turns=5))
    scores = {s.element: s.label for s in report.scores}
    assert scores == {"outcome": "weak", "verification": "strong", "constraints": "missing", "boundaries": "missing",
                      "iteration": "missing", "blocked": "missing", "budget": "strong",
                      "context": "missing", "deliverables": "missing"}


# ---------------------------------------------------------------- running the checks once


def test_a_check_whose_program_is_missing_cannot_run_even_without_running(workspace: Path) -> None:
    report = lint_goal(contract(checks=["tests=no-such-tool --all"]), workspace, run=False)
    finding = only(report, "cannot-run")
    assert finding.severity == "error" and "no-such-tool" in finding.message and not report.ran


def test_a_shell_shaped_check_that_exits_127_cannot_run(workspace: Path) -> None:
    finding = only(lint_goal(contract(checks=["tests=cd . && no-such-tool"]), workspace), "cannot-run")
    assert finding.severity == "error" and "command not found" in finding.message


def test_a_shell_syntax_error_is_found_without_running(workspace: Path) -> None:
    finding = only(lint_goal(contract(checks=["tests=if then python -m unittest"]), workspace, run=False),
                   "syntax-error")
    assert finding.severity == "error" and "unexpected token" in finding.message


def test_a_python_syntax_error_in_the_command_is_found_by_running_it(workspace: Path) -> None:
    report = lint_goal(contract(checks=["tests=python -c 'import cart; assert cart.apply_discount(200, 10 == 180'"]),
                       workspace)
    finding = only(report, "syntax-error")
    assert finding.severity == "error" and "SyntaxError" in finding.message


def test_a_syntax_error_in_the_code_under_test_is_not_the_checks_fault(workspace: Path) -> None:
    (workspace / "cart.py").write_text("def apply_discount(:\n")
    report = lint_goal(contract(checks=[f"tests={TESTS}"]), workspace)
    assert "syntax-error" not in codes(report.findings) and not report.errors


def test_checks_that_all_pass_already_are_an_error(workspace: Path) -> None:
    report = lint_goal(contract(checks=["imports=python -c 'import cart'"]), workspace)
    finding = only(report, "passes-at-baseline")
    assert finding.severity == "error" and "`imports`" in finding.message and report.errors


def test_one_check_passing_already_is_a_warning_when_another_fails(workspace: Path) -> None:
    report = lint_goal(contract(checks=[f"tests={TESTS}", "imports=python -c 'import cart'"]), workspace)
    finding = only(report, "check-passes-at-baseline")
    assert finding.severity == "warning" and "`imports`" in finding.message and "keep_green" in finding.fix
    assert not report.errors


def test_a_failing_check_is_the_normal_case(workspace: Path) -> None:
    report = lint_goal(parse_contract(STRONG), workspace)
    assert report.ran and report.findings == () and report.total == 18


def test_a_metric_that_cannot_be_read_is_a_warning(workspace: Path) -> None:
    report = lint_goal(contract("Get p95 under 120 ms", metrics=["bench=echo done"], regexes=["bench=p95: (\\d+)"],
                                targets=["bench<120"]), workspace)
    finding = only(report, "metric-not-read")
    assert finding.severity == "warning" and "matched nothing" in finding.message


def test_a_metric_already_at_its_target_is_achieved_at_once(workspace: Path) -> None:
    report = lint_goal(contract("Get p95 under 120 ms", metrics=["bench=echo p95: 80"], regexes=["bench=p95: (\\d+)"],
                                targets=["bench<120"]), workspace)
    assert "`bench` reads 80, target < 120" in only(report, "passes-at-baseline").message


def test_a_check_whose_script_does_not_exist_yet_is_a_warning(workspace: Path) -> None:
    finding = only(lint_goal(contract("Write bench/run.py that prints p95", checks=["bench=python bench/run.py"]),
                             workspace), "missing-file")
    assert finding.severity == "warning" and "'bench/run.py'" in finding.message


def test_lint_lists_the_files_the_goal_pins(workspace: Path) -> None:
    report = lint_goal(contract(checks=[f"tests={TESTS}"]), workspace, run=False)
    assert "tests/test_cart.py" in report.pinned and "tests/test_cart.py" in report.as_json()["pinned"]


def test_a_keep_green_command_that_is_red_now_is_a_warning(workspace: Path) -> None:
    report = lint_goal(contract(checks=[f"tests={TESTS}"], keep_green=["python -c 'raise SystemExit(3)'"]),
                       workspace)
    finding = only(report, "keep-green-red")
    assert finding.severity == "warning" and finding.element == "constraints" and "exit 3" in finding.message


def test_a_keep_green_command_that_cannot_run_is_an_error(workspace: Path) -> None:
    finding = only(lint_goal(contract(checks=[f"tests={TESTS}"], keep_green=["no-such-linter ."]), workspace),
                   "cannot-run")
    assert finding.severity == "error" and finding.element == "constraints"


def test_a_check_that_hits_its_own_timeout_is_a_warning(workspace: Path) -> None:
    goal = parse_contract('outcome = "Fix the discount bug so the tests pass"\n'
                          '[[checks]]\nname = "slow"\nrun = "sleep 5"\ntimeout = 0.5\n')
    finding = only(lint_goal(goal, workspace), "times-out")
    assert finding.severity == "warning" and 'timeout = "1s"' in finding.fix


def test_a_check_longer_than_lints_limit_is_not_judged(workspace: Path) -> None:
    report = lint_goal(contract(checks=["slow=sleep 5"]), workspace, timeout_s=0.5)
    assert "times-out" not in codes(report.findings) and "passes-at-baseline" not in codes(report.findings)
    assert "did not finish within lint's 0.5s" in report.notes[0]


def test_lint_never_writes_the_workspace(workspace: Path) -> None:
    lint_goal(contract(checks=[f"tests=touch made-by-lint && {TESTS}"]), workspace)
    assert not (workspace / "made-by-lint").exists()
    assert git(workspace, "status", "--porcelain") == ""


def test_checks_run_under_the_goals_sandbox(workspace: Path) -> None:
    goal = contract(checks=["tests=echo x >> cart.py"], protect=["cart.py"])
    assert "passes-at-baseline" not in codes(lint_goal(goal, workspace).findings)  # the write is refused


def test_no_sandbox_is_an_error(workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    only_git = tmp_path / "bin"
    only_git.mkdir()
    (only_git / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    monkeypatch.setenv("PATH", str(only_git))  # no bwrap on PATH; `false` is a bash builtin
    finding = only(lint_goal(contract(checks=["tests=false"]), workspace), "sandbox-unavailable")
    assert finding.severity == "error" and "bubblewrap" in finding.message


# ---------------------------------------------------------------- the command


def test_gk_lint_exits_1_on_errors_and_prints_each_fix(workspace: Path, goalkeeper_home: Path) -> None:
    done = gk("lint", "--objective", "make it faster", "--check", f"tests={TESTS}", "--cwd", str(workspace),
              home=goalkeeper_home)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "verification/no-metric" in done.stdout and "fix: [[checks]]" in done.stdout
    assert "refuse this goal" in done.stdout


def test_gk_lint_exits_0_on_warnings_and_reads_goal_toml_by_default(workspace: Path, goalkeeper_home: Path) -> None:
    (workspace / "goal.toml").write_text(f'outcome = "Fix the discount bug so the tests pass"\n'
                                         f'[[checks]]\nname = "tests"\nrun = "{TESTS}"\n')
    done = gk("lint", "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "budget/no-budget" in done.stdout and "no errors" in done.stdout


def test_gk_lint_json_and_no_run(workspace: Path, goalkeeper_home: Path) -> None:
    (workspace / "mine.toml").write_text(STRONG.replace("python -m unittest -q", "true"))
    ran = json.loads(gk("lint", "mine.toml", "--json", "--cwd", str(workspace), home=goalkeeper_home,
                        cwd=workspace).stdout)
    assert ran["ran"] and not ran["ok"] and ran["findings"][0]["code"] == "passes-at-baseline"
    read = gk("lint", str(workspace / "mine.toml"), "--json", "--no-run", "--cwd", str(workspace),
              home=goalkeeper_home)
    assert read.returncode == 0 and json.loads(read.stdout)["ok"] is True and json.loads(read.stdout)["total"] == 18


def test_gk_lint_with_nothing_to_lint_says_how(workspace: Path, goalkeeper_home: Path) -> None:
    done = gk("lint", "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 4 and "nothing to lint" in done.stderr and "gk init" in done.stderr


def test_gk_goal_refuses_a_goal_with_lint_errors_and_force_sets_it(workspace: Path, goalkeeper_home: Path) -> None:
    args = ["goal", "Make the discount code nicer", "--check", "imports=python -c 'import cart'",
            "--cwd", str(workspace)]
    refused = gk(*args, home=goalkeeper_home)
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "verification/passes-at-baseline" in refused.stderr and "--force" in refused.stderr
    assert gk("status", "--cwd", str(workspace), home=goalkeeper_home).returncode == 4  # no goal was set
    forced = gk(*args, "--force", home=goalkeeper_home)
    assert forced.returncode == 0, forced.stderr
    assert "pursuing" in forced.stdout and "anyway (--force)" in forced.stderr


def test_gk_goal_sets_a_goal_with_warnings_and_shows_them(workspace: Path, goalkeeper_home: Path) -> None:
    done = gk("goal", "Fix the discount bug so the tests pass", "--check", f"tests={TESTS}", "--cwd", str(workspace),
              home=goalkeeper_home)
    assert done.returncode == 0 and "pursuing" in done.stdout
    assert "budget/no-budget" in done.stderr and "refused" not in done.stderr


def test_gk_exec_refuses_a_goal_with_lint_errors(tmp_path: Path, workspace: Path, goalkeeper_home: Path) -> None:
    model = f"scripted:{write_script(tmp_path / 'script.json', [])}"
    done = gk("exec", "Clean up the cart", "--unverified", "--model", model, "--cwd", str(workspace),
              home=goalkeeper_home)
    assert done.returncode == 4 and "outcome/vague-outcome" in done.stderr


def test_a_check_command_of_any_size_is_parsed_without_argv(tmp_path: Path) -> None:
    """bash -n reads the command from a file, so a 300 KB command (over argv's 128 KB) is parsed, not E2BIG."""
    from goalkeeper.verify.lint import _shell_syntax_error

    assert _shell_syntax_error("true; " + "#" * 300_000) is None
    assert _shell_syntax_error("echo (") == "syntax error near unexpected token `newline'"


def test_lint_binds_git_and_a_virtualenv_read_only_instead_of_copying_them(workspace: Path) -> None:
    venv = workspace / ".venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "marker").write_text("installed\n")
    (workspace / ".gitignore").write_text(".venv/\n")
    git(workspace, "add", ".gitignore")
    git(workspace, "commit", "-qm", "ignore the venv")
    report = lint_goal(contract(checks=["reads=test -f .venv/marker && git rev-parse -q --verify HEAD",
                                        "writes=touch .venv/new"]), workspace)
    passing = [f for f in report.findings if f.code == "check-passes-at-baseline"]
    assert [f.message.split("`")[1] for f in passing] == ["reads"]  # the venv and git are there to read
    assert not (venv / "new").exists()


def counting_goal(tmp_path: Path, check: str) -> tuple[Path, Path]:
    """A goal.toml (outside the workspace) whose one check appends a line to a file outside the workspace each
    time it runs (danger-full-access lets it), then runs `check`; the goal file and the count file."""
    count = tmp_path / "runs.txt"
    goal = tmp_path / "goal.toml"
    goal.write_text(f'outcome = "Fix the discount bug so the tests pass"\n[[checks]]\nname = "tests"\n'
                    f'run = "echo ran >> {count} && {check}"\n[boundaries]\nsandbox = "danger-full-access"\n')
    return goal, count


def test_gk_exec_runs_the_checks_once_before_the_first_request(tmp_path: Path, workspace: Path,
                                                             goalkeeper_home: Path) -> None:
    goal, count = counting_goal(tmp_path, TESTS)
    model = f"scripted:{write_script(tmp_path / 'script.json', [])}"  # the first request ends it (paused)
    done = gk("exec", "--file", str(goal), "--model", model, "--cwd", str(workspace), home=goalkeeper_home)
    assert "baseline: tests FAIL" in done.stdout, done.stdout + done.stderr
    assert "script exhausted" in done.stderr  # the first request was made
    assert count.read_text().splitlines() == ["ran"]  # by the baseline alone: the gate did not run it too


def test_gk_exec_ends_a_goal_the_baseline_finds_achieved_already_as_the_gate_refused_it(
        tmp_path: Path, workspace: Path, goalkeeper_home: Path) -> None:
    goal, count = counting_goal(tmp_path, "python -c 'import cart'")
    model = f"scripted:{write_script(tmp_path / 'script.json', [])}"
    refused = gk("exec", "--file", str(goal), "--model", model, "--cwd", str(workspace), home=goalkeeper_home)
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "verification/passes-at-baseline" in refused.stderr and "--force" in refused.stderr
    assert "script exhausted" not in refused.stderr  # no model request was sent
    assert count.read_text().splitlines() == ["ran"]
    assert gk("status", "--cwd", str(workspace), home=goalkeeper_home).returncode == 4  # no goal is left
    assert git(workspace, "branch", "--format=%(refname:short)").split() == ["main"]  # back where it was set
    forced = gk("exec", "--file", str(goal), "--model", model, "--force", "--cwd", str(workspace),
                home=goalkeeper_home)
    assert "script exhausted" in forced.stderr, forced.stdout + forced.stderr  # forced: it runs


def test_gk_exec_ends_a_goal_whose_check_cannot_run_with_the_gates_message(
        tmp_path: Path, workspace: Path, goalkeeper_home: Path) -> None:
    goal, _ = counting_goal(tmp_path, "./no-such-script.sh")
    model = f"scripted:{write_script(tmp_path / 'script.json', [])}"
    refused = gk("exec", "--file", str(goal), "--model", model, "--cwd", str(workspace), home=goalkeeper_home)
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "verification/cannot-run" in refused.stderr and "script exhausted" not in refused.stderr
