"""The `gk` command group for typer: the root options, and the commands listed from cli/root.py's COMMANDS
without their imports (cli/lazy.py). cli/root.py's `main` runs it for every command a glance does not answer.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from goalkeeper.cli.lazy import lazy_group
from goalkeeper.cli.root import COMMANDS

ThreadOpt = Annotated[str | None, typer.Option("--thread", help="Thread id (default: the workspace's current).")]


def _catalogue() -> typer.Typer:
    from goalkeeper.cli.app import commands  # every command body's imports: loaded only when one runs

    return commands


def _exec_catalogue() -> typer.Typer:
    from goalkeeper.cli.exec_command import commands  # `gk exec` starts the checks before cli/app.py loads

    return commands


app = typer.Typer(cls=lazy_group(_catalogue, COMMANDS, {"exec": _exec_catalogue}), add_completion=False,
                  pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Run a coding agent toward a goal until the evidence says it is done.")


@app.callback(invoke_without_command=True)
def root(ctx: typer.Context,
         cwd: Annotated[Path | None, typer.Option("--cwd", help="Workspace for the TUI (bare `gk` only).")] = None,
         thread: ThreadOpt = None) -> None:
    """Bare `gk` opens the TUI on a terminal; piped or scripted, it shows this help instead of waiting."""
    if ctx.invoked_subcommand is not None:
        if cwd is not None or thread is not None:
            raise typer.BadParameter("before a command, --cwd and --thread are the TUI's; put them after "
                                     f"the command: gk {ctx.invoked_subcommand} --cwd DIR")
        return
    if sys.stdin.isatty() and sys.stdout.isatty():
        from goalkeeper.cli.app import tui

        tui(cwd or Path("."), thread)
    else:
        typer.echo(ctx.get_help())
