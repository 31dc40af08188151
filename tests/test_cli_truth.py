"""What the README and each `--help` promise, held true: `--cwd` on every command, the exit code of a refused
goal, the printed next step of `gk init` working as printed, and the pins `gk goal` shows before the first run."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from goalkeeper.cli.root import COMMANDS, app
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
