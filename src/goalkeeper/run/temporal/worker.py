"""A Temporal worker process (`gk worker`): the goal workflows and `claim` on the shared queue, every step on a
queue of its own, until SIGINT or SIGTERM.

`--max-goals N` bounds the goals this worker holds at once: `claim` refuses an (N+1)th (it is retried, here
later or on another worker), and its own queue runs at most N activities at a time, one per goal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

from temporalio.worker import Worker

from goalkeeper.config.temporal import TemporalConnection
from goalkeeper.run.temporal.activities import ReportFiles, Steps
from goalkeeper.run.temporal.client import connect
from goalkeeper.run.temporal.workflow import GoalWorkflow
from goalkeeper.store import Store


def own_queue(shared: str) -> str:
    """This process's queue: the shared one's name, the host, the pid and a random tail (a restarted worker
    with the same pid must not inherit a dead one's steps)."""
    return f"{shared}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def serve(store: Store, server: TemporalConnection, task_queue: str, workspaces: Path, max_goals: int,
                report_files: ReportFiles, on_ready: Callable[[str], None]) -> None:
    """Run the worker until SIGINT or SIGTERM; `on_ready` hears its own queue once it polls."""
    client = await connect(server)
    workspaces.mkdir(parents=True, exist_ok=True)
    mine = own_queue(task_queue)
    steps = Steps(store, workspaces.resolve(), mine, max_goals, report_files)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    shared = Worker(client, task_queue=task_queue, workflows=[GoalWorkflow], activities=[steps.claim],
                    max_concurrent_activities=max_goals)
    own = Worker(client, task_queue=mine, activities=steps.activities(), max_concurrent_activities=max_goals + 1)
    async with shared, own:
        on_ready(mine)
        await stop.wait()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):
            loop.remove_signal_handler(signum)
