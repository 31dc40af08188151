"""What the README and each `--help` promise, held true: `--cwd` on every command, the exit code of a refused
goal, the printed next step of `gk init` working as printed, and the pins `gk goal` shows before the first run."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from goalkeeper.cli.group import app
from goalkeeper.cli.root import COMMANDS
from goalkeeper.errors import WorkspaceError
from goalkeeper.store import Store
from goalkeeper.workspace.git import changes, keep_untracked, person_files
from helpers import git
from scenario import FIX_PATCH, call, complete, gk, sample_repo, shell, step, write_script


def command_paths() -> list[list[str]]:
    """Every command of the static COMMANDS table; a group (`gk local`) stands for its subcommands."""
    group = typer.main.get_command(app)
    paths: list[list[str]] = []
    for name in COMMANDS:
        command = group.commands[name]  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        paths.extend([[name, sub] for sub in subcommands] if subcommands else [[name]])
    return paths


def test_every_command_lists_cwd_in_its_help() -> None:
    runner = CliRunner()
    missing = []
    for path in command_paths():
        shown = runner.invoke(app, [*path, "--help"], prog_name="gk")
        assert shown.exit_code == 0, (path, shown.output)
        if "--cwd" not in shown.output:
            missing.append(" ".join(path))
    assert missing == []
    assert ["local", "serve"] in command_paths()


# ---------------------------------------------------------------- a refused goal exits 4


def test_a_goal_the_gate_refuses_exits_4_never_1(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    model = f"scripted:{write_script(tmp_path / 'script.json', [])}"
    for command in ("goal", "exec"):
        refused = gk(command, "Clean up the cart", "--unverified", "--model", model, "--cwd", str(workspace),
                     home=goalkeeper_home)
        assert refused.returncode == 4, refused.stdout + refused.stderr
        assert "outcome/vague-outcome" in refused.stderr and "the goal was not started (exit 4)" in refused.stderr


# ---------------------------------------------------------------- the printed next step works


def printed_step(output: str, after: str) -> list[list[str]]:
    """The `gk ...` commands printed after `after` on one line, joined by ` && `, as argument lists."""
    line = next(line for line in output.splitlines() if after in line)
    commands = [shlex.split(part) for part in line.split(after, 1)[1].split(" && ")]
    assert all(command[0] == "gk" for command in commands), line
    return [command[1:] for command in commands]


@pytest.mark.slow
def test_the_step_gk_init_prints_sets_the_goal_and_the_goal_file_stays_the_persons(
        tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    (workspace / ".goalkeeper").mkdir()
    (workspace / ".goalkeeper" / "notes.md").write_text("mine, untracked\n")  # never a change either
    written = gk("init", "--template", "tests-green", home=goalkeeper_home, cwd=workspace)
    assert written.returncode == 0, written.stderr
    steps = printed_step(written.stdout, "check it and set it: ")
    assert steps == [["lint", "goal.toml"], ["goal", "--file", "goal.toml"]]
    for argv in steps:  # exactly as printed, in the untracked state gk init left
        done = gk(*argv, home=goalkeeper_home, cwd=workspace)
        assert done.returncode == 0, (argv, done.stdout + done.stderr)
    assert "pinned:    tests/__init__.py, tests/test_cart.py (to be pinned by the first run's baseline)" in done.stdout
    shown = gk("goal", home=goalkeeper_home, cwd=workspace).stdout
    assert "(to be pinned by the first run's baseline)" in shown  # before the first run, from the goal file
    original = (workspace / "goal.toml").read_text()
    hostile = [step("", shell("cat goal.toml; echo '# mine now' >> goal.toml")),
               step("", call("apply_patch", patch="*** Begin Patch\n*** Delete File: goal.toml\n*** End Patch")),
               step("", call("apply_patch", patch=FIX_PATCH)), step("", complete()), step("Done.")]
    ran = gk("run", "--model", f"scripted:{write_script(tmp_path / 'script.json', hostile)}",
             home=goalkeeper_home, cwd=workspace)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (workspace / "goal.toml").read_text() == original  # the model read it, and could not change it
    branch = git(workspace, "branch", "--show-current").strip()
    assert branch.startswith("goal/")
    committed = git(workspace, "log", "--format=", "--name-only", f"main..{branch}").split()
    assert committed == ["cart.py"]  # neither the goal file nor .goalkeeper/ landed on the goal branch
    assert git(workspace, "status", "--porcelain").split() == ["??", ".goalkeeper/", "??", "goal.toml"]
    shown = gk("goal", home=goalkeeper_home, cwd=workspace).stdout
    assert "pinned:    tests/__init__.py, tests/test_cart.py\n" in shown  # the baseline's, no longer to come


# ---------------------------------------------------------------- what --cwd means where no workspace is read


def test_threads_with_cwd_lists_that_workspaces_threads_and_marks_its_current_one(tmp_path: Path,
                                                                                 git_repo: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    with Store() as store:
        first = store.create_thread(git_repo).thread_id
        current = store.create_thread(git_repo).thread_id
        elsewhere = store.create_thread(other).thread_id
    runner = CliRunner()
    listed = runner.invoke(app, ["threads", "--cwd", str(git_repo)]).output
    assert listed.splitlines()[0].startswith(f"* {current}") and f"  {first}" in listed and elsewhere not in listed
    every = runner.invoke(app, ["threads"]).output
    assert all(thread in every for thread in (first, current, elsewhere)) and "*" not in every


def test_a_cwd_that_is_no_directory_is_one_clear_error(tmp_path: Path) -> None:
    for command in (["demo", "--replay"], ["serve", "--show-token"], ["local", "serve"]):
        done = CliRunner().invoke(app, [*command, "--cwd", str(tmp_path / "missing")])
        assert isinstance(done.exception, WorkspaceError), (command, done.output)
        assert "is not an existing directory" in done.exception.message


def test_the_persons_files_are_kept_only_as_they_were(git_repo: Path) -> None:
    """The goal file and `.goalkeeper/`'s files are no change while untouched; changed, or made there after the
    goal was set, they are changes like any other, so the model can hide nothing in them."""
    (git_repo / "goal.toml").write_text('outcome = "mine"\n')
    (git_repo / ".goalkeeper").mkdir()
    (git_repo / ".goalkeeper" / "notes.md").write_text("mine\n")
    (git_repo / "other.txt").write_text("not goalkeeper's\n")
    kept, _ = person_files(git_repo, ["goal.toml"])
    assert sorted(kept) == [".goalkeeper/notes.md", "goal.toml"]
    keep_untracked(git_repo, kept)
    assert [change.path for change in changes(git_repo)] == ["other.txt"]
    (git_repo / "goal.toml").write_text('outcome = "the model\'s"\n')
    (git_repo / ".goalkeeper" / "config.toml").write_text("notify = []\n")
    assert sorted(change.path for change in changes(git_repo)) == [".goalkeeper/config.toml", "goal.toml",
                                                                   "other.txt"]
