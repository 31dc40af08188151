"""Goals run by the Temporal engine: submit one, and wake its workflow after a control request.

A submitted goal is set in the store like any other, in a staging clone of its repository (`--repo`, at
`--ref`) kept beside the store: that clone is the goal's thread workspace, where the contract is checked and
where `gk status --cwd` finds it; the work itself happens in a worker's own clone. The goal's engine facts
(server, namespace, workflow id, queue, remote, ref) are its `engine_started` event: the workers read the
remote from it, and the faces the workflow to wake. Only these functions load temporalio, and only when a
Temporal goal is involved.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from goalkeeper.config.temporal import TemporalConnection
from goalkeeper.events import EngineStartedEvent
from goalkeeper.goals import control
from goalkeeper.run.temporal.shapes import GoalArgs
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import GoalSettings
from goalkeeper.store import Goal, Store, new_id
from goalkeeper.workspace import remote

#: How long a face waits for a workflow to take its wake signal (the store holds the request either way).
WAKE_TIMEOUT_S = 20.0


def stage(store: Store, repo: str, ref: str | None) -> Path:
    """A clone of `repo` at `ref` beside the store, where a submitted goal is set (one per goal)."""
    remote.remote_has(repo, ref)  # one clear error before anything is made
    folder = store.path.parent / "submitted" / new_id("stage")
    remote.clone(repo, folder, ref, None)
    return folder


async def submit(store: Store, contract: Contract, settings_in: Callable[[Path], GoalSettings], *, repo: str,
                 ref: str | None, server: TemporalConnection, task_queue: str, takeover_s: float = 30.0,
                 continue_every: int = 200, unverified: bool = False) -> tuple[Goal, str]:
    """Stage `repo` at `ref`, set `contract` as a goal there (its settings, the model included, are
    `settings_in(the staging clone)`) and start its workflow; (the goal, its workflow id). The server is
    reached first, so an unreachable one refuses before anything is made."""
    import asyncio  # only a submit needs it: every face imports this module (tests/test_startup.py)

    from goalkeeper.run.temporal import client
    from goalkeeper.verify.lint import lint_goal_async

    connected = await client.connect(server)
    staged = await asyncio.to_thread(stage, store, repo, ref)
    settings = settings_in(staged)
    control.check_settable(staged, contract, settings.allow_dirty, unverified)
    key_env = settings.model.api_key_env if settings.model else None
    report = await lint_goal_async(contract, staged, run=False, key_env=key_env,
                                   not_run="the goal runs on a Temporal worker")
    if report.errors:
        from goalkeeper.contract.lint import GoalLintError

        raise GoalLintError(report)
    goal = control.set_goal(store, staged, contract, settings)
    workflow_id = client.workflow_id_of(goal.goal_id)
    store.append_events(goal.thread_id, [EngineStartedEvent(engine="temporal", address=server.address,
                                                            namespace=server.namespace, workflow_id=workflow_id,
                                                            task_queue=task_queue, remote=repo, ref=ref,
                                                            takeover_s=takeover_s, continue_every=continue_every,
                                                            tls=server.tls)], goal_id=goal.goal_id)
    await client.start(connected, GoalArgs(goal.goal_id, task_queue, takeover_s=takeover_s,
                                           continue_every=continue_every))
    return goal, workflow_id


def engine_of(store: Store, goal: Goal) -> EngineStartedEvent | None:
    """The goal's engine facts; None for a goal the local runner drives."""
    for record in store.events(goal.thread_id, goal_id=goal.goal_id, kinds=[EngineStartedEvent]):
        if isinstance(record.event, EngineStartedEvent):
            return record.event
    return None


def wake(store: Store, goal: Goal, start: bool) -> str | None:
    """Signal a Temporal goal's workflow to look at the store again (after a control request); with `start`
    (a resume, a budget raise) a workflow that has ended is started again, so a goal resumed after it stopped
    goes on. None for a local goal or when woken, else why it could not be (the request stays in the store
    either way). The signal is sent by a child process, so the SDK's abort at exit (sdk-python#300) never
    reaches the face; it connects as this machine's `[temporal]` table says (TLS, the API key's variable)."""
    engine = engine_of(store, goal)
    if engine is None:
        return None
    args = GoalArgs(goal.goal_id, engine.task_queue, takeover_s=engine.takeover_s,
                    continue_every=engine.continue_every)
    command = [sys.executable, "-m", "goalkeeper.run.temporal.client", "wake" if not start else "start",
               engine.address, engine.namespace, json.dumps(asdict(args))]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=WAKE_TIMEOUT_S, check=False,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    except subprocess.TimeoutExpired:
        return f"the Temporal server at {engine.address} did not answer within {WAKE_TIMEOUT_S:.0f}s"
    return None if "woken" in done.stdout else (done.stderr.strip() or f"exit code {done.returncode}")
