"""What the README and each `--help` promise, held true: `--cwd` on every command, the exit code of a refused
goal, the printed next step of `gk init` working as printed, and the pins `gk goal` shows before the first run."""

from __future__ import annotations


import typer.main
from typer.testing import CliRunner

from goalkeeper.cli.root import COMMANDS, app


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
