"""The `gk` entry point, and the listing of the commands without the commands' imports.

A read-only command in its plain form is answered at a glance (cli/glance.py) before typer is imported. Every
other goes to cli/group.py: `gk --help` (and a bare `gk` that is piped) prints the listing from COMMANDS, each
command's name and the first paragraph of its help, which is all the listing shows of it; cli/app.py, where the
commands live with the imports their bodies need, is loaded only when a command runs or shows its own help
(cli/lazy.py).
tests/test_startup.py checks COMMANDS against the commands cli/app.py registers.
"""

from __future__ import annotations

import sys

from goalkeeper.errors import GoalkeeperError

COMMANDS: dict[str, str] = {
    "tui": "The interactive terminal UI on the workspace's thread (what bare `gk` opens).",
    "goal": "Set the goal, show it (no arguments), or `pause | resume | clear` it.",
    "run": "Run the goal in the foreground with a live status line. Ctrl-C pauses it cleanly.",
    "exec": "Set the goal and run it headless; `--json` streams one event per line. Exit code by outcome.",
    "status": "The goal's status, checks, budget and last checkpoint.",
    "log": "The goal's events, oldest first.",
    "doctor": "Check the store, the sandbox and Temporal's settings (and server, with --temporal); exit 1 if not ok.",
    "report": "The goal's report: Markdown, JSON (--json), or a pull-request description (--pr).",
    "side": "Ask about the goal's thread without disturbing it: a read-only fork whose answer the goal never sees.",
    "plan": "Plan before setting a goal: one read-only planning turn, stored; adopt it with `gk goal --from-plan`.",
    "threads": "Every thread in the store, newest first.",
    "fork": "Fork the thread: a new thread, worktree and branch at its checkpoint, with an optional goal of its own.",
    "demo": "Copy the bundled sample repo (a real bug, a failing test) to a temp dir and run a goal on it.",
    "diff": "The goal's changes on its branch: all of them, or one turn's checkpoint.",
    "rollback": "Restore the tree of an earlier checkpoint as a new commit on the goal branch (history is kept).",
    "lint": "Score a goal's six elements and budget, and say how to fix each weakness. Exit 1 on errors.",
    "init": "Write a commented goal.toml from a template: a working start that teaches the six elements.",
    "draft": "Draft a goal.toml from a plain description, for review: the model reads the repo; no goal is set. "
             "Exit 1 when lint errors remain in the draft.",
    "distill": "Turn a finished goal (a spike) into PRD.md: approach, evidence, trade-offs, cleanup, verification.",
    "implement": "Start a fresh goal from a PRD: a new branch from the spike's base commit, the same checks.",
    "trust": "Trust this repository's committed .goalkeeper/config.toml in full. Until then, the keys that could "
             "send data or keys elsewhere or loosen a limit (model_provider, [model_providers], [[notify]], "
             "server_url, a looser approval_policy, allow rules, [model_pricing], [sandbox]) are ignored.",
    "serve": "Serve the REST API, live event streams and the dashboard over the store until Ctrl-C. It never "
             "runs a goal (`gk run` does); every request needs the bearer token, printed the first time.",
    "worker": "Run a Temporal worker until Ctrl-C or SIGTERM: it takes goals from the shared queue and runs their "
              "steps.",
    "submit": "Submit a goal to the Temporal engine; prints its id. Workers (`gk worker`) run it.",
    "batch": "Run many goals at once, each in its own git worktree and goal branch. Exit code: the worst outcome.",
    "mcp-server": "Serve goals as MCP tools (goal_set, goal_get, goal_pause, goal_resume, goal_clear, goal_report, "
                  "goal_events) over stdio, or streamable HTTP with --http. A goal set or resumed runs in a detached "
                  "`gk run`.",
    "local": "The bundled offline model (SmolLM2-135M through llama.cpp).",
}
"""What `gk --help` lists, in its order: each command's name and the first paragraph of its help (its docstring,
whitespace collapsed). A command added to cli/app.py needs its row here."""


GLANCED = ("status", "goal", "log", "threads", "report")
"""The commands cli/glance.py may answer (its OPTIONS' keys): any other loads neither it nor the store."""


def main() -> None:
    """Entry point: answer a read-only command at a glance (cli/glance.py), else run it through typer; render
    errors in one place; exit with the outcome's code."""
    if sys.argv[1:2] and sys.argv[1] in GLANCED:
        from goalkeeper.cli.glance import answer

        code = answer(sys.argv[1:])
        if code is not None:
            sys.exit(code)
    import typer  # every other command, and the errors a glance leaves to the full command

    from goalkeeper.cli.group import app

    try:
        code = app(standalone_mode=False)
    except GoalkeeperError as error:
        from goalkeeper.cli import console  # rich and the renderers load for output, never for the listing

        console.show_error(error)
        sys.exit(error.exit_code)
    except typer.TyperException as error:  # bad flags or arguments: a usage error
        from goalkeeper.cli import console

        show = getattr(error, "show", None)
        show() if callable(show) else console.err.print(f"error: {error}")
        sys.exit(4)
    except (typer.Abort, KeyboardInterrupt):
        from goalkeeper.cli import console

        # Only reached before a runner started (a runner turns Ctrl-C into a clean pause).
        console.err.print("interrupted; nothing was changed")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
