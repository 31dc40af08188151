"""The baseline's head start: `gk exec` starts a new goal's checks as soon as it knows them, while it sets the
goal and the runner prepares it, and the baseline takes that run's evidence when it would have run exactly the
same commands, the same way, on the same tree.

A goal's first request waits for one run of its checks (prepare.baseline). Everything the harness did before
that run (the CLI's imports and flags, the lint gate's static part, setting the goal, importing the runner, the
goal branch, the mirror) was a constant of about half a second in front of it. The checks depend on little of
that: the tree, the contract's commands, and the sandbox and environment that the contract and config.toml at
the tree's commit make. So they start once those are known, and the rest happens beside them.

What keeps the baseline the baseline:
- **Only on a clean tree** (the person's own untracked goal file aside) with no git operation in progress:
  the commit HEAD names is the tree the checks see, and a goal set now starts from that commit, whose branch
  switch touches no file (workspace/git.py, start_goal).
- **What must precede any command is taken first**: the environment snapshot and the stamps of the tracked
  files (verify/envsnap.py, EarlyBase), which keep_baseline then adopts instead of taking them after the checks ran.
- **Adopted only on equal inputs**: the runner compares the base commit, the workspace, the checks and
  keep_green commands, the sandbox policy and the environment it would use with the ones this run used; on
  any difference (or if it failed) it is killed, as any cancelled command is (its process group), and the
  baseline runs as before.
- **Killed when no goal takes it**: the gate refuses, a goal is already set, Ctrl-C. `close` kills it and
  removes what it made.

Nothing of the model's exists yet at this point; the run is the person's own checks on the person's own
commit, in the same sandbox, under the same tracer.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from goalkeeper.config.load import load_config
from goalkeeper.errors import GoalkeeperError
from goalkeeper.run.policy import command_env, configured, goal_sandbox
from goalkeeper.sandbox.bwrap import require_sandbox, warm_layout
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.spec.contract import Contract
from goalkeeper.verify.checks import run_checks
from goalkeeper.verify.envsnap import EarlyBase, take_early_base
from goalkeeper.verify.trace import Tracer, tracer_problem
from goalkeeper.workspace.git import clean_head, head_from_files, toplevel, vouch_clean

if TYPE_CHECKING:
    from goalkeeper.events import Evidence  # made after the checks ran: the event models load meanwhile

T = TypeVar("T")

SPAWN_WAIT_S = 0.5
"""The longest `gk exec` waits for the checks to start before it goes on (`HeadStart.wait_spawned`)."""
HANDOFF_S = 0.0005
"""The interpreter's switch interval meanwhile: each return from git or bwrap gets the lock at once."""


class HeadStart:
    """One early run of a goal's checks, in a thread of its own (its own event loop)."""

    def __init__(self, workspace: Path, contract: Contract, key_env: str | None, own_paths: Sequence[str]) -> None:
        self.workspace = workspace
        self.contract = contract
        self.key_env = key_env
        self.own_paths = tuple(own_paths)
        self.commit: str | None = None
        """HEAD's commit when it started; None when it did not (not clean, no sandbox, ...)."""
        self.sandbox: SandboxPolicy | None = None
        self.env: dict[str, str] = {}
        self.early: EarlyBase | None = None
        self.problem: str | None = None
        """Why the checks run untraced (tracer_problem), as the baseline would have found it."""
        self.tracer: Tracer | None = None
        self.started: Future[bool] = Future()
        """True once the checks run; False when they never will."""
        self.done: Future[list[Evidence] | None] = Future()
        """The evidence; None when nothing ran or the run failed (the baseline then runs them itself)."""
        self.spawned = threading.Event()
        """Set once the first check's process exists (or nothing will run)."""
        self.failure: BaseException | None = None
        """What broke the early run, if anything but a stop did: it only costs the time (the baseline runs the
        checks itself), so it is kept here for the tests to see, never raised."""
        self._lock = threading.Lock()
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[list[Evidence] | None] | None = None
        self._thread = threading.Thread(target=self._serve, name="goalkeeper-head-start", daemon=True)

    # ------------------------------------------------------------ its thread

    def _serve(self) -> None:
        try:
            with asyncio.Runner(loop_factory=lambda: _Loop(self.spawned)) as runner:
                evidence = runner.run(self._main())
        except asyncio.CancelledError:  # stopped: its checks were killed
            evidence = None
        except BaseException as failure:  # a failed head start is only a lost one: the baseline runs the checks
            evidence, self.failure = None, failure
        with self._lock:
            self._loop = None
        if not self.started.done():
            self.started.set_result(False)
        self.spawned.set()
        self.done.set_result(evidence)

    async def _main(self) -> list[Evidence] | None:
        with self._lock:
            if self._stopped:
                return None
            self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        # HEAD's commit from git's files names the config.toml the flags were read from a moment ago (cached);
        # the sandbox and environment follow from it, and everything before the first command runs side by
        # side: the look at the tree, the self-tests, the snapshot and stamps, the sandbox's first layout scan.
        looked: asyncio.Future[tuple[str, dict[str, str]] | None] = asyncio.ensure_future(
            asyncio.to_thread(clean_head, self.workspace, self.own_paths))
        commit = head_from_files(toplevel(self.workspace))
        if commit is None:  # a packed or unusual ref: the look at the tree says, first
            found = await looked
            commit = found[0] if found is not None else None
        if commit is None:
            return None
        config = load_config(self.workspace, None, commit)
        # The person's own files are protected while untracked (set_goal keeps exactly those): the ones asked for
        # until the look at the tree says which.
        sandbox = configured(goal_sandbox(self.contract, self.workspace, self.own_paths), config)
        env = command_env(config, self.key_env)
        found, usable, self.problem, self.early, _ = await asyncio.gather(
            looked, asyncio.to_thread(_usable, sandbox), asyncio.to_thread(tracer_problem, sandbox),
            asyncio.to_thread(take_early_base, self.workspace, commit),
            asyncio.to_thread(warm_layout, sandbox, Path(env.get("HOME") or Path.home())))
        if found is None or found[0] != commit or not usable:
            return None
        if tuple(found[1]) != self.own_paths:
            sandbox = configured(goal_sandbox(self.contract, self.workspace, found[1]), config)
        self.commit, self.sandbox, self.env = commit, sandbox, env
        vouch_clean(self.workspace, commit)  # what the checks write is not the person's uncommitted work
        self.tracer = Tracer() if self.problem is None else None
        self.started.set_result(True)
        return await run_checks(self.contract, self.workspace, sandbox=sandbox, env=self.env, tracer=self.tracer)

    def wait_spawned(self, timeout_s: float = SPAWN_WAIT_S) -> None:
        """Let the checks start before this process goes on setting the goal: their start is a few milliseconds
        of git, bwrap and file work, which the interpreter lock would otherwise stretch to a hundred (each return
        from a system call waits for the lock while the other thread holds it). Bounded: a slow repository
        (a status over a huge tree) goes on side by side."""
        self.spawned.wait(timeout_s)

    # ------------------------------------------------------------ the runner's side

    def fits(self, contract: Contract, workspace: Path, sandbox: SandboxPolicy, env: dict[str, str],
             commit: str) -> bool:
        """Whether the baseline would run exactly what this run runs (see the module's docstring)."""
        return (self.commit == commit and self.workspace == workspace and self.sandbox == sandbox
                and self.env == env and self.contract.checks == contract.checks
                and self.contract.constraints.keep_green == contract.constraints.keep_green)

    async def running(self) -> bool:
        """Wait for the checks to start (a few milliseconds after `start`); False when they never will."""
        return await self._wait(self.started)

    async def evidence(self) -> list[Evidence] | None:
        """Wait for the checks to end: their evidence, or None when the baseline must run them itself."""
        return await self._wait(self.done)

    async def stop(self) -> None:
        """Kill the checks and wait until they are gone (before the baseline runs them again)."""
        self.cancel()
        await self._wait(self.done)

    async def _wait(self, future: Future[T]) -> T:
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            self.cancel()  # the run was stopped (a pause, Ctrl-C): so are its checks
            raise

    def release_tree(self) -> None:
        """Stop vouching for the tree (the goal branch is made, or no goal will be)."""
        if self.commit is not None:
            vouch_clean(self.workspace, None)

    # ------------------------------------------------------------ its owner's side

    def cancel(self) -> None:
        """Kill the checks (their process groups, as any cancelled command), or keep them from starting."""
        with self._lock:
            self._stopped = True
            if self._loop is not None and self._task is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closing: the run has ended anyway
                    self._loop.call_soon_threadsafe(self._task.cancel)

    def close(self) -> None:
        """Kill the checks unless they ended, wait for the thread, and remove what no goal adopted."""
        if not self.done.done():
            self.cancel()
        self._thread.join()
        self.release_tree()
        if self.early is not None:
            self.early.discard()
        if self.tracer is not None:
            self.tracer.close()


class _Loop(asyncio.SelectorEventLoop):
    """The head start's event loop: says when its first process has started."""

    def __init__(self, spawned: threading.Event) -> None:
        super().__init__()
        self._spawned = spawned

    async def subprocess_exec(self, *args: Any, **kwargs: Any) -> Any:
        made = await super().subprocess_exec(*args, **kwargs)
        self._spawned.set()
        return made


def _usable(sandbox: SandboxPolicy) -> bool:
    """Whether the sandbox can be enforced here (otherwise the runner says why, and nothing runs)."""
    try:
        require_sandbox(sandbox)
    except GoalkeeperError:
        return False
    return True


_OFFERED: dict[Path, HeadStart] = {}
"""Head starts not yet claimed, by workspace: `gk exec` offers one, its goal's first run claims it."""


def offer(workspace: Path, contract: Contract, key_env: str | None, own_paths: Sequence[str]) -> HeadStart | None:
    """Start the checks of the goal about to be set in `workspace` (None when there is nothing to start: no
    commands, or pinned files that deny mode makes read-only, which only the goal's pins name)."""
    if not (contract.checks or contract.constraints.keep_green) or contract.verify.edits == "deny":
        return None
    head = HeadStart(workspace, contract, key_env, own_paths)
    _OFFERED[workspace.resolve()] = head
    switch = sys.getswitchinterval()
    sys.setswitchinterval(HANDOFF_S)
    try:
        head._thread.start()
        head.wait_spawned()
    finally:
        sys.setswitchinterval(switch)
    return head


def claim(workspace: Path) -> HeadStart | None:
    """The head start offered for `workspace`, taken by its goal's first run (at most once)."""
    return _OFFERED.pop(workspace.resolve(), None)


def withdraw(head: HeadStart) -> None:
    """Forget `head` unless claimed, then close it: its owner is done (the goal ended, or was never set)."""
    if _OFFERED.get(key := head.workspace.resolve()) is head:
        del _OFFERED[key]
    head.close()
