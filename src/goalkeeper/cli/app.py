"""The `goalkeeper` / `gk` command. Each command parses, calls one library function and renders.

Exit codes: 0 achieved, 1 unmet, 2 budget_limited, 3 paused (stalled included), 4 usage or config error, a goal
refused before it started (the lint gate) included.
Every command starts at once: this module imports only what the reading commands share. What runs a goal or a
model session (the runner, the sessions, the bundled demo and local model, the TUI, the server) is imported by
the commands that use it, so `gk status` never loads a model stack (tests/test_startup.py).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from goalkeeper.cli import console, fleet, mcp_server
from goalkeeper.cli.batch import batch as batch_command
from goalkeeper.cli.group import ThreadOpt
from goalkeeper.cli.options import (
    UNVERIFIED_HELP,
    ContractFlags,
    Cwd,
    JsonOpt,
    ModelFlags,
    StartIn,
    existing_dir,
    start_in,
    with_options,
)
from goalkeeper.core.lifecycle import exit_code
from goalkeeper.errors import ConfigError, WorkspaceError
from goalkeeper.events import payload_of
from goalkeeper.goals import service
from goalkeeper.goals.views import goal_event_pages, summarize
from goalkeeper.sessions import defaults
from goalkeeper.spec.contract import Contract, parse_duration
from goalkeeper.spec.settings import GoalSettings, ModelSettings, RunSettings

if TYPE_CHECKING:
    from goalkeeper.config.load import Config
    from goalkeeper.core.state import BudgetRaise
    from goalkeeper.run.runner import RunResult
    from goalkeeper.sessions.planning import Plan
    from goalkeeper.store import Goal, Store

commands = typer.Typer(pretty_exceptions_enable=False, rich_markup_mode=None)
"""Every `gk` command: register one with `@commands.command()` (a group with `commands.add_typer`). Only the
command that runs is built (cli/lazy.py); `cli.root.app` holds the root options and lists these from its
COMMANDS table, which needs a row for each command."""

@commands.command()
def tui(cwd: Cwd = Path("."), thread: ThreadOpt = None) -> int:
    """The interactive terminal UI on the workspace's thread (what bare `gk` opens)."""
    from goalkeeper.tui.app import GoalkeeperApp  # Textual loads in a third of a second; only the TUI needs it

    workspace = service.workspace_of(cwd)
    with service.open_store() as store:
        if thread is not None:
            store.get_thread(thread)  # an unknown id is an error here, not a blank window
        GoalkeeperApp(workspace, store=store, thread_id=thread).run()
    return 0


@commands.command(context_settings={"allow_interspersed_args": True})
@with_options(contract_flags=ContractFlags, model_flags=ModelFlags)
def goal(
    contract_flags: ContractFlags, model_flags: ModelFlags,
    objective: Annotated[str | None, typer.Argument(help="The objective, or pause | resume | clear.")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace an existing goal without asking.")] = False,
    allow_dirty: Annotated[bool, typer.Option("--allow-dirty", help="Snapshot uncommitted changes onto the goal "
                                                                   "branch instead of refusing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="resume: re-open an achieved or unmet goal; setting a "
                                                        "goal: set it even if `gk lint` finds errors.")] = False,
    add_tokens: Annotated[int | None, typer.Option(help="resume: raise the token budget by this much.")] = None,
    add_usd: Annotated[float | None, typer.Option(help="resume: raise the USD budget by this much.")] = None,
    add_time: Annotated[str | None, typer.Option(help="resume: raise the time budget, e.g. 30m.")] = None,
    add_turns: Annotated[int | None, typer.Option(help="resume: raise the turn budget by this much.")] = None,
    note: Annotated[str | None, typer.Option("--note", help="resume: feedback the model reads in its next "
                                                             "turn (say what you reviewed).")] = None,
    unverified: Annotated[bool, typer.Option("--unverified", help=UNVERIFIED_HELP)] = False,
    cwd: Cwd = Path("."), thread: ThreadOpt = None, as_json: JsonOpt = False,
) -> int:
    """Set the goal, show it (no arguments), or `pause | resume | clear` it."""
    workspace = service.workspace_of(cwd)
    with service.open_store() as store:
        if objective in ("pause", "resume", "clear"):
            from goalkeeper.goals import control  # changing a goal loads `decide`'s vocabulary; showing it does not

            raise_by = control.budget_raise(add_tokens, add_usd, parse_duration(add_time) if add_time else None,
                                            add_turns)
            if note is not None and objective != "resume":
                raise ConfigError("--note goes with `gk goal resume`", 'write gk goal resume --note "..."')
            return _control(store, workspace, thread, objective, raise_by, force, note)
        if objective is None and contract_flags.file is None and not contract_flags.from_plan:
            shown = service.current_goal(store, workspace, thread)
            summary = summarize(store, shown)
            if as_json:
                console.out.print_json(json.dumps(summary.as_json()))
            else:  # before the first run, the files its baseline will pin, as `gk lint` shows them
                console.show_summary(summary, service.pins_to_come(shown, summary, workspace))
            return 0
        contract = contract_flags.contract(objective, _plan_to_adopt(contract_flags, store, workspace, thread))
        config = _config(workspace, model_flags.profile)
        chosen = model_flags.settings_if_configured(workspace, contract.budget.usd, config)
        run_knobs = config.run
        made = _set(store, workspace, thread, contract, chosen, run_knobs, replace, allow_dirty, force, unverified,
                    workdir=service.workdir_of(cwd, workspace), own_files=contract_flags.own_files(workspace))
        console.show_summary(summarize(store, made.goal), made.lint.pinned)
        if chosen is not None and chosen.price is None:
            from goalkeeper.models.pricing import unpriced_note

            console.err.print(unpriced_note(chosen.model), markup=False)
        console.out.print("Run it with: gk run" + (f" --cwd {cwd}" if str(cwd) != "." else ""))
    return 0


def _plan_to_adopt(flags: ContractFlags, store: Store, workspace: Path, thread: str | None) -> Plan | None:
    """The thread's newest plan when `--from-plan` is given (`gk plan` stored it); else None."""
    if not flags.from_plan:
        return None
    from goalkeeper.sessions.planning import newest_plan  # the planning session loads the tools

    return newest_plan(store, workspace, thread)


def _set(store: Store, workspace: Path, thread: str | None, contract: Contract, model: ModelSettings | None,
         run_knobs: RunSettings, replace: bool, allow_dirty: bool = False, force: bool = False,
         unverified: bool = False, lint: service.LintMode = "run", workdir: str = "",
         own_files: tuple[str, ...] = ()) -> service.SetGoal:
    """Set the goal after checking the repository and the check commands (a goal with none needs `unverified`);
    ask before replacing a goal; then lint it (errors refuse it unless `force`). The `[run]` knobs of
    config.toml (and the profile) are stored, `workdir`, the folder `--cwd` named (its AGENTS.md apply), and
    `own_files`, the goal file's path when it lies in the repository (GoalSettings.own_files)."""
    from goalkeeper.contract.lint import GoalLintError  # the gate's refusal: only setting a goal meets it

    settings = GoalSettings(model=model, run=run_knobs, allow_dirty=allow_dirty, workdir=workdir)
    try:
        made = service.set_goal(store, workspace, contract, settings, lint=lint, force=force,
                                unverified=unverified, replace=replace, thread_id=thread,
                                confirm_replace=_confirm_replace, goal_file=own_files)
    except GoalLintError as refused:
        console.show_lint_gate(refused.report, forced=False)
        raise typer.Exit(refused.exit_code) from None  # 4: never started, unlike 1 (it ran and ended unmet)
    console.show_lint_gate(made.lint, forced=force)
    return made


def _confirm_replace() -> bool:
    """On a terminal, ask before replacing the workspace's goal; "no" ends the command (exit 4)."""
    if not sys.stdin.isatty():
        return False
    if not typer.confirm("This workspace already has a goal. Replace it?", default=False):
        raise typer.Exit(4)
    return True


def _config(workspace: Path, profile: str | None, commit: str = "HEAD") -> Config:
    """config.toml as `load_config` reads it, its warnings (an untrusted project's ignored keys) shown once."""
    from goalkeeper.config.load import load_config  # config.toml's schema loads only for the commands that read it

    config = load_config(workspace, profile, commit)
    _warn(config)
    return config


def _warn(config: Config) -> None:
    for warning in config.warnings:
        console.err.print(Text("warning: ", style="yellow") + Text(warning))


def _control(store: Store, workspace: Path, thread: str | None, action: str, raise_by: BudgetRaise | None,
             force: bool, note: str | None = None) -> int:
    record = service.current_goal(store, workspace, thread)
    if action == "pause":
        result = service.pause(store, record)
    elif action == "clear":
        result = service.clear(store, record)
    else:
        result = service.resume(store, record, force, raise_by, note=note)
    where = {"here": "", "runner": " (applied by the running runner)", "queued": " (queued for the runner)"}
    console.out.print(f"{result.applied}: goal is now {result.status or 'cleared'}{where[result.applied_by]}")
    if result.note:
        console.err.print(f"note: {result.note}", markup=False)
    if result.applied == "resume" and result.status == "pursuing":
        console.out.print("Continue it with: gk run")
    return 0


@commands.command()
@with_options(model_flags=ModelFlags)
def run(model_flags: ModelFlags, cwd: Cwd = Path("."), thread: ThreadOpt = None, as_json: JsonOpt = False) -> int:
    """Run the goal in the foreground with a live status line. Ctrl-C pauses it cleanly."""
    from goalkeeper.run.engine import config_commit  # the runner loads only for the commands that run

    workspace = service.workspace_of(cwd)
    with service.open_store() as store:
        record = service.current_goal(store, workspace, thread)
        commit = config_commit(store, record)  # the goal's base: never the goal branch the model wrote
        config = _config(workspace, model_flags.profile, commit)  # its warnings, before the run
        chosen = model_flags.settings(workspace, commit=commit, config=config) if model_flags.given else None
        return _drive(store, record, workspace, chosen, as_json)


def _drive(store: Store, record: Goal, workspace: Path, model: ModelSettings | None, as_json: bool) -> int:
    """Run the goal in the foreground (run, exec, demo, implement --run), printing its events."""
    from goalkeeper.models.factory import LOCAL_MODEL_NOTE
    from goalkeeper.run.engine import run_goal  # the runner loads only for the commands that run

    def status() -> str:
        return summarize(store, store.get_goal_by_id(record.goal_id)).status_line()

    def started(settings: ModelSettings) -> None:
        if settings.provider == "local" and not as_json:
            console.out.print(console.styled((LOCAL_MODEL_NOTE, "yellow")))

    with console.EventPrinter(as_json, status) as printer:
        result = run_goal(store, record, workspace, model, on_event=printer, on_start=started)
    return _finish(store, result, as_json)


def _finish(store: Store, result: RunResult, as_json: bool) -> int:
    if result.status is None:
        console.out.print(f"goal {result.goal_id} was cleared")
        return 3
    if not as_json:
        summary = summarize(store, store.get_goal_by_id(result.goal_id))
        console.out.print(console.styled("\n", (summary.status_line(), "bold")))
        if result.status == "paused":
            console.out.print("Resume with: gk goal resume && gk run")
    return exit_code(result.status)


def exec_goal(contract: Contract, config: Config, chosen: ModelSettings, own_files: tuple[str, ...], *,
              workspace: Path, cwd: Path, thread: str | None, replace: bool, allow_dirty: bool, force: bool,
              unverified: bool, as_json: bool) -> int:
    """`gk exec` once its checks have started (cli/exec_command.py): set the goal and drive it."""
    _warn(config)
    with service.open_store() as store:
        record = _set(store, workspace, thread, contract, chosen, config.run, replace, allow_dirty, force,
                      unverified, lint="baseline", workdir=service.workdir_of(cwd, workspace),
                      own_files=own_files).goal
        from goalkeeper.contract.lint import GoalLintError  # the baseline's refusal (run/prepare.py)

        try:
            return _drive(store, record, workspace, chosen, as_json)
        except GoalLintError as refused:
            console.show_lint_gate(refused.report, forced=False)
            raise typer.Exit(refused.exit_code) from None


def plan_to_adopt(flags: ContractFlags, workspace: Path, thread: str | None) -> Plan | None:
    """The thread's newest plan when `--from-plan` is given, read from the store (for `gk exec`)."""
    if not flags.from_plan:
        return None
    with service.open_store() as store:
        return _plan_to_adopt(flags, store, workspace, thread)


@commands.command()
def status(cwd: Cwd = Path("."), thread: ThreadOpt = None, as_json: JsonOpt = False) -> int:
    """The goal's status, checks, budget and last checkpoint."""
    with service.open_store() as store:
        summary = summarize(store, service.current_goal(store, service.workspace_of(cwd), thread))
        if as_json:
            print(json.dumps(summary.as_json(), indent=1))
        else:
            console.show_summary(summary)
    return 0


@commands.command()
def log(cwd: Cwd = Path("."), thread: ThreadOpt = None, as_json: JsonOpt = False) -> int:
    """The goal's events, oldest first."""
    with service.open_store() as store:
        record = service.current_goal(store, service.workspace_of(cwd), thread)
        for page in goal_event_pages(store, record):  # printed page by page: a long history streams
            if as_json:
                console.write_lines(json.dumps({"seq": event.seq, "kind": event.event.kind,
                                                "actor": event.event.actor, "payload": payload_of(event.event)})
                                    for event in page)
            else:
                console.show_event_lines(page)
    return 0


@commands.command()
def doctor(as_json: JsonOpt = False,
           cwd: Annotated[Path | None, typer.Option("--cwd", help="Check the sandbox over this workspace "
                                                                  "(default: the current directory).")] = None,
           temporal: Annotated[str | None, typer.Option(
               "--temporal", help="Also connect to this Temporal server (HOST:PORT), with the TLS settings of "
                                  "your config.toml's [temporal] table.")] = None,
           namespace: Annotated[str, typer.Option("--namespace", help="The Temporal namespace.")] = "default",
           ) -> int:
    """Check the store, the sandbox and Temporal's settings (and server, with --temporal); exit 1 if not ok."""
    from goalkeeper.cli.fleet import without_teardown  # a connection loads temporalio (sdk-python#300)
    from goalkeeper.goals.doctor import diagnose  # the sandbox's code: only this command needs it

    start_in(cwd)  # the sandbox is checked over the current directory

    def body() -> int:
        findings = diagnose(temporal=temporal, namespace=namespace)
        if as_json:
            print(json.dumps([dataclasses.asdict(finding) for finding in findings], indent=1))
        else:
            console.show_findings(findings)
        return 0 if all(finding.ok for finding in findings) else 1

    return without_teardown(body)


@commands.command()
def report(cwd: Cwd = Path("."), thread: ThreadOpt = None, as_json: JsonOpt = False,
           pr: Annotated[bool, typer.Option("--pr", help="Print a pull-request description instead.")] = False,
           goal_id: Annotated[str | None, typer.Option("--goal", help="A goal id (default: the thread's goal).")]
           = None) -> int:
    """The goal's report: Markdown, JSON (--json), or a pull-request description (--pr)."""
    from goalkeeper.goals.report import build_report, render_markdown, render_pr  # only this command reports

    with service.open_store() as store:
        workspace = service.workspace_of(cwd)
        record = store.get_goal_by_id(goal_id) if goal_id else service.current_goal(store, workspace, thread)
        data = build_report(store, record)
    if as_json:
        print(json.dumps(data, indent=1))  # JSON keeps the exact text: json.dumps escapes every control character
    else:
        console.write_text(render_pr(data) if pr else render_markdown(data))
    return 0


@commands.command(context_settings={"allow_interspersed_args": True})
@with_options(model_flags=ModelFlags)
def side(
    model_flags: ModelFlags,
    question: Annotated[str, typer.Argument(help="The question.")],
    events: Annotated[int, typer.Option("--events", min=1, help="How many of the thread's newest messages the "
                                                                "question sees.")] = defaults.SIDE_EVENTS,
    max_requests: Annotated[int, typer.Option("--max-requests", min=1, help="Model requests it may make.")]
    = defaults.SIDE_MAX_REQUESTS,
    cwd: Cwd = Path("."), thread: ThreadOpt = None, as_json: JsonOpt = False,
) -> int:
    """Ask about the goal's thread without disturbing it: a read-only fork whose answer the goal never sees."""
    from goalkeeper.sessions import side as side_questions  # a model session loads only where one runs

    workspace = service.workspace_of(cwd)
    chosen = model_flags.settings(workspace) if model_flags.given else None
    stream = console.TextStream(quiet=as_json)
    with service.open_store() as store:
        answer = side_questions.ask_side_question(store, workspace, question, thread_id=thread, model=chosen,
                                                  newest=events, max_requests=max_requests, on_text=stream.text,
                                                  on_tool=stream.tool)
    stream.end_line()
    print(json.dumps(answer.as_json())) if as_json else console.show_side_footer(answer)
    return 0


@commands.command(context_settings={"allow_interspersed_args": True})
@with_options(model_flags=ModelFlags)
def plan(
    model_flags: ModelFlags,
    objective: Annotated[str, typer.Argument(help="What the goal should achieve.")],
    max_requests: Annotated[int, typer.Option("--max-requests", min=1, help="Model requests the planning turn "
                                                                          "may make.")] = defaults.PLAN_MAX_REQUESTS,
    cwd: Cwd = Path("."), thread: ThreadOpt = None, as_json: JsonOpt = False,
) -> int:
    """Plan before setting a goal: one read-only planning turn, stored; adopt it with `gk goal --from-plan`."""
    from goalkeeper.sessions import planning  # a model session loads only where one runs

    workspace = service.workspace_of(cwd)
    chosen = model_flags.settings(workspace) if model_flags.given else None
    progress = console.TextStream(quiet=as_json)  # tool calls as they run; the plan is printed whole at the end
    with service.open_store() as store:
        made = planning.make_plan(store, workspace, objective, thread_id=thread, model=chosen,
                                  max_requests=max_requests, on_tool=progress.tool)
    if as_json:
        print(json.dumps(made.as_json()))
    else:
        adopt = planning.adopt_command(made.plan, str(cwd) if str(cwd) != "." else None)
        console.show_plan(made, planning.plan_markdown(made.plan), adopt)
    return 0


@commands.command()
def threads(cwd: Annotated[Path | None, typer.Option("--cwd", help="Only this workspace's threads, its current "
                                                                   "one marked `*` (default: every thread).")]
            = None) -> int:
    """Every thread in the store, newest first."""
    with service.open_store() as store:
        listed = store.list_threads()
        if cwd is None:
            console.show_threads(listed)
            return 0
        workspace = service.workspace_of(cwd)
        current = store.current_thread(workspace)
        console.show_threads([thread for thread in listed if Path(thread.workspace) == workspace],
                             current=current.thread_id if current else None)
    return 0


@commands.command()
@with_options(contract_flags=ContractFlags, model_flags=ModelFlags)
def fork(contract_flags: ContractFlags, model_flags: ModelFlags,
         objective: Annotated[str | None, typer.Argument(help="The fork's own goal (optional).")] = None,
         force: Annotated[bool, typer.Option("--force", help="Set the fork's goal even if `gk lint` finds "
                                                             "errors.")] = False,
         unverified: Annotated[bool, typer.Option("--unverified", help=UNVERIFIED_HELP)] = False,
         cwd: Cwd = Path("."), thread: ThreadOpt = None) -> int:
    """Fork the thread: a new thread, worktree and branch at its checkpoint, with an optional goal of its own."""
    from goalkeeper.goals.fork import fork as fork_thread  # the hand-off and the worktree code load only here

    workspace = service.workspace_of(cwd)
    own_goal = objective is not None or contract_flags.file is not None
    # The fork's goal and model are read before anything is made, so bad flags leave no fork behind.
    contract = contract_flags.contract(objective, None) if own_goal else None
    chosen = model_flags.settings_if_configured(workspace, contract.budget.usd) if contract is not None else None
    with service.open_store() as store:
        made = fork_thread(store, workspace, thread)
        console.out.print(f"forked {made.parent.thread_id} into {made.thread.thread_id}: branch {made.branch} at "
                          f"{made.commit[:12]}, worktree {made.workspace}", markup=False)
        if contract is None:
            console.out.print(f'Set its goal with: gk goal "<objective>" --check ... --cwd {made.workspace}',
                              markup=False)
            return 0
        run_knobs = _config(made.workspace, model_flags.profile).run
        record = _set(store, made.workspace, made.thread.thread_id, contract, chosen, run_knobs, False, False, force,
                      unverified).goal
        console.show_summary(summarize(store, record))
        console.out.print(f"Run it with: gk run --cwd {made.workspace}", markup=False)
    return 0


@commands.command(name="demo")
@with_options(model_flags=ModelFlags)
def demo_(model_flags: ModelFlags, as_json: JsonOpt = False,
          replay: Annotated[bool, typer.Option("--replay", help="Replay a bundled scripted model (offline).")] = False,
          cwd: Annotated[Path | None, typer.Option("--cwd", help="Copy the sample into a new folder here (default: "
                                                                 "the system's temp dir).")] = None,
          ) -> int:
    """Copy the bundled sample repo (a real bug, a failing test) to a temp dir and run a goal on it."""
    from goalkeeper.cli import demo  # the sample and its scripted model load only for the demo
    from goalkeeper.config.resolve import scripted_settings
    from goalkeeper.goals import control

    workspace = demo.prepare_sample(existing_dir(cwd) if cwd is not None else None)
    if replay:
        chosen = scripted_settings(str(demo.replay_script()))
        console.out.print(console.styled(("model: a scripted replay bundled with goalkeeper, not a real model; "
                                          "the harness, the repo, the shell and the checks are real", "yellow")))
    else:
        chosen = model_flags.settings_if_configured(workspace) or ModelFlags(model_provider="local").settings(workspace)
    console.out.print(f"sample repo copied to {workspace}")
    with service.open_store() as store:
        contract = demo.demo_contract(small=chosen.provider == "local")
        record = control.set_goal(store, workspace, contract, GoalSettings(model=chosen))
        console.out.print("\n".join(f"  {line}" for line in demo.describe()))
        return _drive(store, record, workspace, chosen, as_json)


@commands.command()
def diff(turn: Annotated[int | None, typer.Option(help="Only this turn's checkpoint.")] = None,
         cwd: Cwd = Path("."), thread: ThreadOpt = None) -> int:
    """The goal's changes on its branch: all of them, or one turn's checkpoint."""
    with service.open_store() as store:
        changes = service.goal_diff(store, service.current_goal(store, service.workspace_of(cwd), thread), turn)
    if changes.branch is None:
        raise WorkspaceError("this goal has not run yet, so it has no branch", "start it with `gk run`")
    # Piped, the diff stays exact (for `git apply`); on a terminal its escape sequences are shown, not run.
    console.write_text(changes.text, end="") if sys.stdout.isatty() else print(changes.text, end="")
    return 0


@commands.command()
def rollback(to: Annotated[str, typer.Option("--to", help="best, last-green, or a turn number.")],
             cwd: Cwd = Path("."), thread: ThreadOpt = None) -> int:
    """Restore the tree of an earlier checkpoint as a new commit on the goal branch (history is kept)."""
    with service.open_store() as store:
        commit, branch = service.rollback(store, service.current_goal(store, service.workspace_of(cwd), thread), to)
    console.out.print(f"rolled back to {to}: now at {commit[:12]} on {branch.name}")
    return 0


@commands.command(context_settings={"allow_interspersed_args": True})
@with_options(contract_flags=ContractFlags)
def lint(
    contract_flags: ContractFlags,
    goal_file: Annotated[Path | None, typer.Argument(metavar="[FILE]", help="The goal.toml to lint (default: "
                                                     "./goal.toml, unless --objective is given).")] = None,
    objective: Annotated[str | None, typer.Option("--objective", help="The objective, with the contract "
                                                                        "flags (laid over FILE if given).")] = None,
    no_run: Annotated[bool, typer.Option("--no-run", help="Read the contract only; run no check.")] = False,
    cwd: Cwd = Path("."), thread: ThreadOpt = None, as_json: JsonOpt = False,
) -> int:
    """Score a goal's six elements and budget, and say how to fix each weakness. Exit 1 on errors."""
    from goalkeeper.verify.lint import lint_goal  # the checks and the sandbox load only for the commands that run

    workspace = service.workspace_of(cwd)
    contract = _contract_to_lint(contract_flags, goal_file, objective, cwd, workspace, thread)
    report = lint_goal(contract, workspace, run=not no_run)
    print(json.dumps(report.as_json(), indent=1)) if as_json else console.show_lint(report)
    return 1 if report.errors else 0


def _contract_to_lint(flags: ContractFlags, file: Path | None, objective: str | None, cwd: Path, workspace: Path,
                      thread: str | None) -> Contract:
    """The contract `gk lint` was given: FILE or --file, the flags, --objective, --from-plan; else ./goal.toml."""
    if file is not None and flags.file is not None:
        raise ConfigError("two goal files given (FILE and --file)", "give the goal file once")
    flags = dataclasses.replace(flags, file=file or flags.file)
    if flags.file is None and objective is None and not flags.from_plan:
        default = cwd.expanduser() / "goal.toml"
        if not default.is_file():
            raise ConfigError(f"nothing to lint: no {default} and no --objective",
                              "gk lint path/to/goal.toml, gk lint --objective '...' --check tests='...', "
                              "or start one with gk init --template tests-green")
        flags = dataclasses.replace(flags, file=default)
    if not flags.from_plan:
        return flags.contract(objective, None)
    with service.open_store() as store:
        return flags.contract(objective, _plan_to_adopt(flags, store, workspace, thread))


@commands.command()
def init(
    template: Annotated[str | None, typer.Option("--template", "-t", help="The template (see --list).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write it, relative to --cwd.")]
    = Path("goal.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    list_templates: Annotated[bool, typer.Option("--list", help="List the templates and exit.")] = False,
    cwd: Cwd = Path("."),
) -> int:
    """Write a commented goal.toml from a template: a working start that teaches the six elements."""
    from goalkeeper import templates as goal_templates  # the template files are read only here

    if list_templates:
        console.show_templates(goal_templates.templates())
        return 0
    if template is None:
        raise ConfigError("no template chosen", f"gk init --template NAME, NAME one of: "
                                                f"{', '.join(goal_templates.TEMPLATE_NAMES)}")
    path = output if output.is_absolute() else cwd.expanduser() / output
    written = goal_templates.write_template(template, path, force)
    console.out.print(f"wrote {path} from template {written.name}: {written.summary}")
    console.out.print(f"Edit it, then check it and set it: gk lint {path} && gk goal --file {path}")
    return 0


Force = Annotated[bool, typer.Option("--force", help="Overwrite the output file if it exists.")]


@commands.command(context_settings={"allow_interspersed_args": True})
@with_options(model_flags=ModelFlags)
def draft(
    model_flags: ModelFlags,
    description: Annotated[str, typer.Argument(help="The goal in plain words.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the draft.")]
    = Path(defaults.DRAFT_OUTPUT),
    force: Force = False,
    no_run: Annotated[bool, typer.Option("--no-run", help="Lint the draft without running its checks.")] = False,
    max_requests: Annotated[int, typer.Option("--max-requests", min=1, help="Model requests the draft may make.")]
    = defaults.DRAFT_MAX_REQUESTS,
    cwd: Cwd = Path("."), thread: ThreadOpt = None, as_json: JsonOpt = False,
) -> int:
    """Draft a goal.toml from a plain description, for review: the model reads the repo; no goal is set.
    Exit 1 when lint errors remain in the draft."""
    from goalkeeper.sessions import drafting  # a model session loads only where one runs

    workspace = service.workspace_of(cwd)
    chosen = model_flags.settings(workspace) if model_flags.given else None
    progress = console.TextStream(quiet=as_json)
    with service.open_store() as store:
        made = drafting.draft_goal(store, workspace, description, output, force=force, thread_id=thread,
                                   model=chosen, run_checks=not no_run, max_requests=max_requests,
                                   on_tool=progress.tool)
    print(json.dumps(made.as_json())) if as_json else console.show_draft(made)
    return 1 if made.lint.errors else 0


@commands.command(context_settings={"allow_interspersed_args": True})
@with_options(model_flags=ModelFlags)
def distill(
    model_flags: ModelFlags,
    goal_id: Annotated[str | None, typer.Option("--goal", help="A finished goal's id (default: the thread's).")]
    = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the PRD.")] = Path(defaults.PRD_OUTPUT),
    force: Force = False, cwd: Cwd = Path("."), thread: ThreadOpt = None, as_json: JsonOpt = False,
) -> int:
    """Turn a finished goal (a spike) into PRD.md: approach, evidence, trade-offs, cleanup, verification."""
    from goalkeeper.goals import prd  # a model session loads only where one runs

    workspace = service.workspace_of(cwd)
    chosen = model_flags.settings(workspace) if model_flags.given else None
    with service.open_store() as store:
        written = prd.distill(store, workspace, output, goal_id=goal_id, thread_id=thread, force=force, model=chosen)
    print(json.dumps(written.as_json())) if as_json else console.show_distilled(written)
    return 0


@commands.command(context_settings={"allow_interspersed_args": True})
@with_options(model_flags=ModelFlags)
def implement(
    model_flags: ModelFlags,
    prd_file: Annotated[Path, typer.Argument(metavar="PRD", help="The PRD.md that `gk distill` wrote.")],
    run_now: Annotated[bool, typer.Option("--run", help="Run the new goal now, headless, as `gk exec` does.")]
    = False,
    cwd: Cwd = Path("."), as_json: JsonOpt = False,
) -> int:
    """Start a fresh goal from a PRD: a new branch from the spike's base commit, the same checks."""
    from goalkeeper.goals import prd  # a model session loads only where one runs

    workspace = service.workspace_of(cwd)
    chosen = model_flags.settings(workspace) if model_flags.given else None
    with service.open_store() as store:
        started = prd.implement(store, workspace, prd_file, model=chosen)
        if not as_json:
            console.show_implementation(started, summarize(store, started.goal), run_now)
        if run_now:
            return _drive(store, started.goal, workspace, started.model, as_json)
        if as_json:
            print(json.dumps({"goal_id": started.goal.goal_id, "branch": started.branch.name,
                              "base_commit": started.branch.base_commit, "spike_goal_id": started.spike.goal_id,
                              "spike_branch": started.spike.branch}))
    return 0


@commands.command(name="trust")
def trust_(revoke: Annotated[bool, typer.Option("--revoke", help="Stop trusting the repository.")] = False,
           list_trusted: Annotated[bool, typer.Option("--list", help="List the trusted repositories.")] = False,
           cwd: Cwd = Path(".")) -> int:
    """Trust this repository's committed .goalkeeper/config.toml in full. Until then, the keys that could send
    data or keys elsewhere or loosen a limit (model_provider, [model_providers], [[notify]], server_url, a looser
    approval_policy, allow rules, [model_pricing], [sandbox]) are ignored."""
    from goalkeeper.config import trust as trusted
    from goalkeeper.config.load import goalkeeper_home

    home = goalkeeper_home()
    if list_trusted:
        for path, since in sorted(trusted.trusted_projects(home).items()):
            console.out.print(f"{path}  (trusted {since})", markup=False)
        return 0
    top = service.repository_of(cwd)
    if revoke:
        done = trusted.revoke(home, top)
        console.out.print(f"{top} is {'no longer' if done else 'not'} trusted: its .goalkeeper/config.toml applies "
                          "only in part", markup=False)
        return 0
    done = trusted.trust(home, top)
    console.out.print(f"{top} is {'now' if done else 'already'} trusted: its committed .goalkeeper/config.toml "
                      "applies in full (gk trust --revoke undoes it)", markup=False)
    return 0


@commands.command()
def serve(host: Annotated[str, typer.Option(help="Address to bind (loopback unless --allow-remote).")] = "127.0.0.1",
          port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on (1-65535).")] = 8765,
          allow_remote: Annotated[bool, typer.Option("--allow-remote", help="Allow a non-loopback --host.")] = False,
          show_token: Annotated[bool, typer.Option("--show-token", help="Print the API token and exit.")] = False,
          cwd: StartIn = None) -> int:
    """Serve the REST API, live event streams and the dashboard over the store until Ctrl-C. It never runs a
    goal (`gk run` does); every request needs the bearer token, printed the first time."""
    start_in(cwd)  # the server serves the whole store, every workspace's goals
    from goalkeeper import server  # FastAPI and uvicorn load only for the server

    if show_token:
        token = server.read_token()
        if token is None:
            raise ConfigError(f"no server token yet ({server.token_path()})", "start the server once: gk serve")
        print(token)
        return 0
    server.serve(host, port, allow_remote, echo=lambda line: console.out.print(line, markup=False))
    return 0


commands.command(name="worker")(fleet.worker)
commands.command(name="submit", context_settings={"allow_interspersed_args": True})(fleet.submit)
commands.command(name="batch", context_settings={"allow_interspersed_args": True})(batch_command)
commands.command(name="mcp-server")(mcp_server.mcp_server)

local_app = typer.Typer(help="The bundled offline model (SmolLM2-135M through llama.cpp).")
commands.add_typer(local_app, name="local")


@local_app.command("serve")
def local_serve(port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
                host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1", cwd: StartIn = None) -> int:
    """Serve the local model over the OpenAI-compatible wire format until Ctrl-C."""
    start_in(cwd)
    from goalkeeper.models.local_server import serve_forever  # it loads httpx and llama.cpp

    serve_forever(port, host)
    return 0
