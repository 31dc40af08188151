"""The goal service: what every face (CLI, TUI, server) asks about a goal, one function per request.

Set a goal (checked, linted with or without a run of its checks), pause, resume or clear it, raise its
budget (with the USD price check), show its diff and roll it back. A face parses its input, calls one of
these and renders the answer, so the three faces cannot drift apart. Control requests go through
control.py, and every lifecycle event through `decide`. The faces open the store, find their workspace and
name an approval's prefix here too: they never import the store, the workspace or the sandbox.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from goalkeeper.core.state import BudgetRaise, ControlRequest
from goalkeeper.errors import ConfigError, WorkspaceError
from goalkeeper.events import GoalBranchEvent
from goalkeeper.goals import views
from goalkeeper.goals.where import busy_timeout_s, store_url
from goalkeeper.goals.where import workspace_of as workspace_of  # the faces find their workspace here too
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import GoalSettings
from goalkeeper.store import Goal, Store, lease_is_live
from goalkeeper.store.home import private_directory

if TYPE_CHECKING:
    from goalkeeper.contract.lint import LintReport
    from goalkeeper.goals.control import ControlResult
    from goalkeeper.workspace.git import GoalBranch

# A read-only command (`gk status`) opens the store, finds its workspace and reads its goal: what changes a goal
# (control.py with `decide`'s vocabulary, the fleet's wake-up) or reaches git (workspace/) is imported by the
# functions below that use it, so reading never loads them (tests/test_startup.py).

LintMode = Literal["run", "static", "baseline", "linted"]
"""The lint gate before a goal is set: `run` runs each check once (`gk goal`, the TUI); `static` only reads the
commands (the server, which must answer at once); `baseline` reads them now and judges the rest on the goal's
baseline run, so a goal set to run at once (`gk exec`) runs its checks once before its first request; `linted`
is `baseline` for a face that has read the commands itself (a batch, before it starts any goal): only the
contract's own findings are looked at again, and the report pins nothing."""


#: Why the gate did not run the checks, for the surface it infers instead.
_NOT_RUN: dict[LintMode, str] = {"run": "", "static": "the gate reads the checks without running them",
                                  "baseline": "the baseline run will observe it",
                                  "linted": "the baseline run will observe it"}


def open_store(path: Path | str | None = None) -> Store:
    """The store at `path` (a file, or a `postgresql://` URL); by default the one `store_url` names, else
    $GOALKEEPER_HOME/state.db. $GOALKEEPER_BUSY_TIMEOUT_S sets how long to wait for a lock (default 10)."""
    return Store(path if path is not None else store_url(), busy_timeout_s=busy_timeout_s())


def private_folder(directory: Path) -> Path:
    """`directory`, made 0700 as the store's own folder is (the server keeps its token beside the store)."""
    return private_directory(directory)


def workdir_of(cwd: Path, workspace: Path) -> str:
    """`--cwd` as a folder of `workspace`, `/`-separated ('' for its top level, or a folder outside it): the goal's
    working folder, down to which its project instructions (AGENTS.md) are read."""
    try:
        relative = cwd.expanduser().resolve().relative_to(workspace)
    except ValueError:
        return ""
    return "" if relative == Path(".") else relative.as_posix()


def repository_of(path: Path) -> Path:
    """The git top-level of `path`, or a WorkspaceError when it is not inside a repository."""
    from goalkeeper.workspace.git import toplevel

    return toplevel(path.expanduser().resolve())


def commit_all(top: Path, message: str) -> None:
    """Make `top` a git repository (branch main) whose one commit holds every file in it (the demo's sample)."""
    from goalkeeper.workspace.git import git

    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=goalkeeper", "-c", "user.email=demo@goalkeeper.invalid",
                  "commit", "-q", "-m", message]):
        git(top, *args)


def approval_prefix(command: str) -> str:
    """What an approval "for the rest of the goal" remembers for `command`: the prefix the registry allows."""
    from goalkeeper.sandbox.rules import command_prefix  # the shell parser: only an approval needs it

    return command_prefix(command)


@dataclass(frozen=True)
class SetGoal:
    """A goal just set, and the lint report its gate saw."""

    goal: Goal
    lint: LintReport


def set_goal(store: Store, workspace: Path, contract: Contract, settings: GoalSettings, *, lint: LintMode = "run",
             force: bool = False, unverified: bool = False, replace: bool = False, thread_id: str | None = None,
             confirm_replace: Callable[[], bool] | None = None, goal_file: Sequence[str] = ()) -> SetGoal:
    """Set `contract` as the thread's goal: checkable (`check_settable`), then, for an existing goal, replaced
    only with `replace` or the face's `confirm_replace`, then linted (errors refuse it unless `force`; with
    `lint="baseline"` or `"linted"` the run's errors end the goal at its baseline instead, run/prepare.py).
    `goal_file`: the goal file's path from the top-level, when it lies in the repository (GoalSettings.own_files)."""
    from goalkeeper.contract.lint import GoalLintError, lint_report  # the static linter: a reader never needs it
    from goalkeeper.goals import control
    from goalkeeper.verify.lint import lint_goal  # it loads the checks and the sandbox: only a new goal needs it

    key_env = settings.model.api_key_env if settings.model else None
    with ThreadPoolExecutor(1) as pool:
        # A gate that runs nothing (bash -n, the programs, the pins) writes nothing either: in a repository it
        # reads the commands while the repository is checked. One that runs the checks waits for the answer.
        static = pool.submit(lint_goal, contract, workspace, run=False, key_env=key_env, not_run=_NOT_RUN[lint]) \
            if lint in ("static", "baseline") and _in_repository(workspace) else None
        kept = control.check_settable(workspace, contract, settings.allow_dirty, unverified, goal_file)
        settings = settings.model_copy(update={"own_files": kept})
        if not replace and confirm_replace is not None and _has_goal(store, workspace, thread_id):
            replace = confirm_replace()
        if static is not None:
            report = static.result()
        elif lint == "linted":
            report = lint_report(contract)  # the face has read the commands; the contract's findings are pure
        else:
            report = lint_goal(contract, workspace, key_env=key_env, not_run=_NOT_RUN[lint])
    if report.errors and not force:
        raise GoalLintError(report)
    if lint in ("baseline", "linted") and not force:
        settings = settings.model_copy(update={"lint_at_baseline": True})
    record = control.set_goal(store, workspace, contract, settings, replace_existing=replace, thread_id=thread_id)
    return SetGoal(record, report)


def _in_repository(workspace: Path) -> bool:
    """Whether `workspace` lies in a git repository (elsewhere the pins would walk the whole folder, for a goal
    `check_settable` refuses anyway)."""
    from goalkeeper.workspace.git import toplevel  # remembered: check_settable asks again at no cost

    try:
        toplevel(workspace)
    except WorkspaceError:
        return False
    return True


def pins_to_come(goal: Goal, summary: views.GoalSummary, workspace: Path) -> list[str]:
    """The files the first run's baseline will pin (as `gk lint` lists them), for a goal that has not run: its
    view then shows them; [] once it ran (the baseline's own pins are in the summary) or once it ended."""
    if summary.pinned or summary.baseline or summary.status not in ("pursuing", "paused"):
        return []
    from goalkeeper.verify.pins import pin_verification_surface  # hashes files: only a goal not yet run needs it

    return sorted(pin_verification_surface(workspace, goal.contract, goal.contract.verify.pins).paths)


def current_goal(store: Store, workspace: Path, thread_id: str | None = None) -> Goal:
    """The goal of the workspace's (or the thread's) current thread, or a clear error."""
    return store.current_goal(workspace, thread_id)


def pause(store: Store, goal: Goal) -> ControlResult:
    """Pause: a running runner finishes its tool call and starts no new model request."""
    return _requested(store, goal, ControlRequest("pause"), start=False)


def clear(store: Store, goal: Goal) -> ControlResult:
    """Clear: the thread has no goal afterwards (its history stays readable)."""
    return _requested(store, goal, ControlRequest("clear"), start=False)


def resume(store: Store, goal: Goal, force: bool = False, raise_by: BudgetRaise | None = None,
           wait_s: float | None = None, note: str | None = None) -> ControlResult:
    """Resume (`force` re-opens an achieved or unmet goal), raising the budget first when asked; on a pursuing
    goal a raise is all that happens (`decide` says so). A `note` is the person's feedback: the model reads it
    when its next turn opens."""
    check_price(goal, raise_by)
    asked = ControlRequest("resume", raise_by, force, note=note.strip() or None if note else None)
    return _requested(store, goal, asked, wait_s, start=True)


def raise_budget(store: Store, goal: Goal, raise_by: BudgetRaise | None,
                 wait_s: float | None = None) -> ControlResult:
    """Raise the budget; a budget_limited goal is resumed as well, as `gk goal resume --add-tokens N` does.
    Blocks up to `wait_s` while a live runner applies it (call it off an event loop)."""
    from goalkeeper.goals import control

    if raise_by is None:
        raise control.BudgetAmountError("no budget raise given", f"raise one of them, e.g. {control.BUDGET_FORMS}")
    check_price(goal, raise_by)
    limited = store.get_goal_by_id(goal.goal_id).state.status == "budget_limited"
    asked = ControlRequest("resume" if limited else "budget", raise_by)
    return _requested(store, goal, asked, wait_s, start=True)


def _requested(store: Store, goal: Goal, asked: ControlRequest, wait_s: float | None = None, *,
               start: bool) -> ControlResult:
    """`asked`, applied through control.py (by a live runner within `wait_s`, default control.CONTROL_WAIT_S, or
    here), after which the goal's workflow is woken when the Temporal engine runs it (goals/fleet.py): its
    worker reads the request from the store, as a local runner does. With `start`, an ended workflow is started
    again (a goal resumed after it stopped)."""
    from goalkeeper.goals import control, fleet

    result = control.request(store, goal, asked, control.CONTROL_WAIT_S if wait_s is None else wait_s)
    if (why := fleet.wake(store, goal, start)) is not None:
        result = replace(result, note=f"the goal's workflow was not woken ({why}); a worker sees the request "
                                      "at its next step")
    return result


def check_price(goal: Goal, raise_by: BudgetRaise | None) -> None:
    """A USD raise needs the goal's model to have a known price, or the USD budget could not be enforced."""
    stored = goal.settings.model
    if raise_by is not None and raise_by.usd and stored is not None and stored.price is None:
        raise ConfigError(f"no price is known for model {stored.model}, so a USD budget cannot be enforced",
                          f'add [model_pricing."{stored.model}"] input/cached_input/output to config.toml, '
                          "set the goal again, or raise another budget")


@dataclass(frozen=True)
class GoalDiff:
    """The goal branch's changes (all, or one turn's); no branch before the goal first ran."""

    branch: GoalBranch | None
    head: str | None
    text: str


def goal_diff(store: Store, goal: Goal, turn: int | None = None) -> GoalDiff:
    """The goal branch's whole diff, or one turn's checkpoint (`gk diff`); empty before the goal first ran."""
    from goalkeeper.workspace import checkpoints
    from goalkeeper.workspace.git import commit_of, toplevel
    from goalkeeper.workspace.goal import branch_of

    branch = branch_of(views.goal_events(store, goal, [GoalBranchEvent]))
    if branch is None:
        return GoalDiff(None, None, "")
    workspace = _workspace(store, goal)
    return GoalDiff(branch, commit_of(toplevel(workspace), branch.name), checkpoints.diff(workspace, branch, turn))


def rollback(store: Store, goal: Goal, to: str) -> tuple[str, GoalBranch]:
    """Restore the tree of `to` (best, last-green or a turn number) as a new commit on the goal branch;
    the commit made and the branch."""
    from goalkeeper.workspace import checkpoints
    from goalkeeper.workspace.git import keep_untracked
    from goalkeeper.workspace.goal import branch_of

    target: checkpoints.RollbackTarget = int(to) if to.isdigit() else to  # type: ignore[assignment]
    if not isinstance(target, int) and target not in ("best", "last-green"):
        raise ConfigError(f"--to {to}: not a target", "write --to best, --to last-green or --to 3")
    branch = branch_of(views.goal_events(store, goal, [GoalBranchEvent]))
    if branch is None:
        raise WorkspaceError("this goal has not run yet, so it has no branch", "start it with `gk run`")
    best, green = views.rollback_turns(store, goal)
    workspace = _workspace(store, goal)
    keep_untracked(workspace, goal.settings.own_files)  # the goal file stays out of the rollback
    return checkpoints.rollback(workspace, branch, target, best, green), branch


def runner_elsewhere(store: Store, goal: Goal) -> str | None:
    """`host:pid` of a live runner in another process that holds `goal`, or None."""
    lease = store.lease(goal.goal_id)
    if lease is None or not lease_is_live(lease):
        return None
    if (lease.host, lease.pid) == (socket.gethostname(), os.getpid()):
        return None
    return f"{lease.host}:{lease.pid}"


def _workspace(store: Store, goal: Goal) -> Path:
    return Path(store.get_thread(goal.thread_id).workspace)


def _has_goal(store: Store, workspace: Path, thread_id: str | None) -> bool:
    thread = store.current_thread(workspace) if thread_id is None else store.get_thread(thread_id)
    return thread is not None and store.get_goal(thread.thread_id) is not None
