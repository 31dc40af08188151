"""`gk exec`, in a catalogue of its own (cli/lazy.py): it reads the flags and config.toml and starts the goal's
checks (run/head_start.py) before the rest of the CLI loads. Setting the goal, the lint gate's output and the
run's printing (cli/app.py, `exec_goal`) load while the checks run: the interpreter's few hundred milliseconds
of imports are a constant in front of a goal's first request (bench/README.md, issue 16).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from goalkeeper.cli.group import ThreadOpt
from goalkeeper.cli.options import UNVERIFIED_HELP, ContractFlags, Cwd, JsonOpt, ModelFlags, with_options
from goalkeeper.goals.where import workspace_of

commands = typer.Typer(pretty_exceptions_enable=False, rich_markup_mode=None)
"""The `exec` command alone (cli/group.py names it to the lazy group)."""


@commands.command(name="exec", context_settings={"allow_interspersed_args": True})
@with_options(contract_flags=ContractFlags, model_flags=ModelFlags)
def exec_(
    contract_flags: ContractFlags, model_flags: ModelFlags,
    objective: Annotated[str | None, typer.Argument(help="The objective.")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace an existing goal.")] = False,
    allow_dirty: Annotated[bool, typer.Option("--allow-dirty", help="Snapshot uncommitted changes first.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Set the goal even if `gk lint` finds errors.")] = False,
    unverified: Annotated[bool, typer.Option("--unverified", help=UNVERIFIED_HELP)] = False,
    cwd: Cwd = Path("."), thread: ThreadOpt = None, as_json: JsonOpt = False,
) -> int:
    """Set the goal and run it headless; `--json` streams one event per line. Exit code by outcome.

    Exit codes: 0 achieved, 1 unmet (it ran and the checks did not pass), 2 budget_limited, 3 paused, 4 refused
    before it started (lint errors, a check that cannot run, no sandbox) or any other usage or config error."""
    from goalkeeper.config.load import load_config
    from goalkeeper.run import head_start

    workspace = workspace_of(cwd)
    plan = None
    if contract_flags.from_plan:
        from goalkeeper.cli.app import plan_to_adopt  # a stored plan: the store, read before anything starts

        plan = plan_to_adopt(contract_flags, workspace, thread)
    contract = contract_flags.contract(objective, plan)
    config = load_config(workspace, model_flags.profile)
    chosen = model_flags.settings(workspace, contract.budget.usd, config=config)
    own_files = contract_flags.own_files(workspace)
    # The checks run once before the first request (the baseline, which also answers the gate's run questions),
    # and they start now, while the rest loads and the goal is set.
    head = head_start.offer(workspace, contract, chosen.api_key_env, own_files)
    try:
        from goalkeeper.cli.app import exec_goal

        return exec_goal(contract, config, chosen, own_files, workspace=workspace, cwd=cwd, thread=thread,
                         replace=replace, allow_dirty=allow_dirty, force=force, unverified=unverified,
                         as_json=as_json)
    finally:
        if head is not None:
            head_start.withdraw(head)
