"""Start a goal's runner in another process: `gk run` detached, in its own process group, logging beside the store.

A face that must answer at once (the MCP server's `goal_set` and `goal_resume`) starts the runner this way and
returns: the runner holds the goal's lease, applies pause and clear at its next boundary like any `gk run`, and
goes on after the face that started it has gone. Its output goes to `$GOALKEEPER_HOME/runners/GOAL_ID.log`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from goalkeeper.errors import GoalkeeperError, WorkspaceError
from goalkeeper.goals import fleet, service
from goalkeeper.store import Goal, Store

SETTLE_S = 10.0
"""How long a runner started here may take either to hold the goal's lease or, having let it go, to exit."""

RUNNERS_DIR = "runners"
"""The folder beside the store that holds each started runner's log."""


@dataclass(frozen=True)
class Launch:
    """What starting a runner did: the runner's pid and log, or why none was started."""

    started: bool
    pid: int | None = None
    log: str | None = None
    why_not: str | None = None
    """Set when no runner was started: a live runner already holds the goal, it is not pursuing, or the Temporal
    engine runs it."""


class Launcher:
    """Starts detached runners and remembers them, so a second request never starts a second runner for a goal
    whose first has not taken its lease yet. Each child is reaped when it exits (no zombies)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, store: Store, goal: Goal) -> Launch:
        """Run `goal` with `gk run --thread` in a new process group, unless it is not pursuing or a runner (ours
        still starting, or any live one) holds it."""
        current = store.get_goal_by_id(goal.goal_id)
        if current.state.status != "pursuing":
            return Launch(False, why_not=f"the goal is {current.state.status}, so there is nothing to run")
        if fleet.engine_of(store, current) is not None:
            return Launch(False, why_not="the goal runs on the Temporal workers, which the control path wakes")
        with self._lock:
            if (busy := self._busy(store, current)) is not None:
                return Launch(False, why_not=busy)
            try:
                child, log = _spawn(store, current)
            except (OSError, GoalkeeperError) as error:
                raise WorkspaceError(f"the goal's runner could not start: {error}",
                                     f"the goal stays pursuing; run it with `gk run --thread {current.thread_id}`"
                                     ) from None
            self._children[goal.goal_id] = child
        threading.Thread(target=child.wait, name=f"reap-{child.pid}", daemon=True).start()
        return Launch(True, child.pid, str(log))

    def _busy(self, store: Store, goal: Goal) -> str | None:
        """Why a runner needs no starting: a live one holds the goal, or the one started here still starts.
        One started here that has let the lease go (a pause) is given `SETTLE_S` to exit first."""
        child = self._children.get(goal.goal_id)
        deadline = time.monotonic() + SETTLE_S
        while True:
            if (elsewhere := service.runner_elsewhere(store, goal)) is not None:
                return f"the runner {elsewhere} already runs it"
            if child is None or child.returncode is not None:  # its reaper thread's wait() sets it
                return None
            if time.monotonic() > deadline:
                return f"its runner (pid {child.pid}) is starting already"
            time.sleep(0.05)


def runner_log(store: Store, goal_id: str) -> Path:
    """Where the runner started for `goal_id` writes its output."""
    return store.path.parent / RUNNERS_DIR / f"{goal_id}.log"


def _spawn(store: Store, goal: Goal) -> tuple[subprocess.Popen[bytes], Path]:
    """`python -m goalkeeper run --thread T --cwd WORKSPACE`, detached: its own session and process group, stdin
    closed, output appended to its log (the environment, GOALKEEPER_HOME and the model's key included, is this
    process's)."""
    log = runner_log(store, goal.goal_id)
    service.private_folder(log.parent)
    workspace = store.get_thread(goal.thread_id).workspace
    command = [sys.executable, "-m", "goalkeeper", "run", "--thread", goal.thread_id, "--cwd", workspace]
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
                                 cwd=workspace, start_new_session=True)
    finally:
        os.close(fd)
    return child, log
