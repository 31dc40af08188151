"""Worker processes for a local batch: its goals spread over one process a core, so that their Python (one
interpreter lock a process) can use every core.

A batch's goals start in waves (`--parallel` of them at once), and a start is mostly the harness's own Python
around ~20 git processes. In one process that Python runs on one core at a time: on 2 cores a wave of starts
kept the machine only 76-84% busy, and two `gk batch` processes of half the goals each finished 100 goals
1.9-2.5 s sooner than one (bench/README.md).

The pool is forked from the batch's process before it has started any thread (`fork_pool` returns None
otherwise, and the goals run in threads of that process as before). Each worker inherits the fleet as it was
made (its slots, `prepare`, where the store is) and runs the goals it is sent with `start_local`, each in a
thread of its own, as the batch's process would. The batch's process keeps the fleet: the slots,
`--parallel`, the cap, the table, the signals. What crosses a worker's pipe:

- to the worker: run a goal (its name, and its id once it has one); stop (pause every goal at its next
  boundary); a rate-limit hold a goal of another worker met; exit;
- from the worker: a goal's id once it is set; its events (only when a face watches them); its end, or what
  crashed it; a rate-limit hold one of its goals met.

A worker dies with the batch's process (PR_SET_PDEATHSIG), as the batch's threads would; a worker that dies
crashes its own goals only, and `gk batch --resume` runs them again.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, NoReturn

from goalkeeper.errors import GoalkeeperError
from goalkeeper.models.retry import GateKey, RateGates
from goalkeeper.run.batch import STARTING, Fleet, Slot, cap_goal, describe, start_local
from goalkeeper.run.runner import RunResult
from goalkeeper.store import Store

#: At most this many worker processes, whatever the cores: each holds an interpreter (~80 MB) of its own.
MAX_WORKERS = 8

#: How long `close` waits for the workers to exit once told to (their goals have ended by then) before killing.
EXIT_WAIT_S = 10.0

_PR_SET_PDEATHSIG = 1


class WorkerGoalError(GoalkeeperError):
    """A goal of the batch crashed in its worker process (its words are the crash's), or the worker died."""


def worker_count(fleet: Fleet) -> int:
    """How many worker processes the fleet's goals are worth: one a core, no more than the goals that run at
    once (or there are), at most MAX_WORKERS; fewer than two is none."""
    count = min(os.cpu_count() or 1, MAX_WORKERS, fleet.batch.parallel, len(fleet.slots))
    return count if count >= 2 else 0


def fork_pool(fleet: Fleet) -> Pool | None:
    """The fleet's goals handed to worker processes forked now, or None when they should run in this process's
    threads: one core, a goal or `--parallel 1`, or threads already running (a fork would copy locks they hold;
    a UI runs its batch in a thread of its own)."""
    count = worker_count(fleet)
    if count == 0 or threading.active_count() != 1 or threading.current_thread() is not threading.main_thread():
        return None
    starts = max(1, STARTING // count)  # the batch's starts at once, shared out
    for stream in (sys.stdout, sys.stderr):  # what is buffered is the batch's to print, once
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    parent, workers = os.getpid(), list[_Worker]()
    for _ in range(count):
        ours, theirs = multiprocessing.Pipe()
        try:
            pid = os.fork()
        except OSError:  # out of processes or memory: the workers made so far run the goals, or this process
            ours.close()
            theirs.close()
            break
        if pid == 0:  # the worker: it never returns
            ours.close()
            for earlier in workers:
                earlier.conn.close()
            try:
                _serve(fleet, theirs, parent, starts)
            finally:
                os._exit(1)
        theirs.close()
        workers.append(_Worker(pid, ours))
    return Pool(workers) if workers else None


# ---------------------------------------------------------------- the batch's side


@dataclass
class _Worker:
    pid: int
    conn: Connection
    alive: bool = True
    sending: threading.Lock = field(default_factory=threading.Lock)
    reader: threading.Thread | None = None


class Pool:
    """The worker processes of one batch, as the fleet's `start` and `on_stop`."""

    def __init__(self, workers: list[_Worker]) -> None:
        self.workers = workers
        self._lock = threading.Lock()
        self._running: dict[str, tuple[_Worker, queue.SimpleQueue[tuple[Any, ...]]]] = {}
        """Each goal running in a worker: that worker, and the box its messages go to."""
        for worker in workers:
            worker.reader = threading.Thread(target=self._read, args=(worker,), name=f"worker-{worker.pid}",
                                             daemon=True)
            worker.reader.start()

    def start(self, fleet: Fleet, slot: Slot, store: Store) -> RunResult:
        """Run the slot's goal in the worker with the fewest goals, and return once it has ended there: its id,
        its events and its end come back through this slot's box (so this thread is the goal's, as in a
        batch without workers)."""
        name, box = slot.entry.name, queue.SimpleQueue[tuple[Any, ...]]()
        with self._lock:
            alive = [worker for worker in self.workers if worker.alive]
            if not alive:
                raise WorkerGoalError("every worker process of the batch has died",
                                      "see the error above; `gk batch --resume` runs the goals again")
            worker = min(alive, key=lambda each: sum(held is each for held, _ in self._running.values()))
            self._running[name] = (worker, box)
        try:
            self._send(worker, ("run", name, slot.goal_id))
            while True:
                kind, *rest = box.get()
                if kind == "goal":
                    with fleet.lock:
                        slot.goal_id = rest[0]
                    cap_goal(fleet, slot, store)  # the cap came while the goal was being made: it wraps up now
                elif kind == "event" and fleet.on_event is not None:
                    fleet.on_event(name, rest[0])
                elif kind == "ended":
                    result, error = rest
                    if error is not None:
                        raise WorkerGoalError(error)
                    return result  # type: ignore[no-any-return]
        finally:
            with self._lock:
                self._running.pop(name, None)

    def stop(self) -> None:
        """Tell every worker to pause its goals at their next boundary. Called from a signal handler on the main
        thread, which may have interrupted a send: a thread of its own sends."""
        threading.Thread(target=self._tell_all, args=(("stop",),), name="workers-stop", daemon=True).start()

    def close(self) -> None:
        """Tell the workers to exit (their goals have ended, or the batch gave up waiting for them) and reap
        them; one still there after EXIT_WAIT_S is killed: its goals' leases go stale and a resume takes
        them over."""
        self._tell_all(("exit",))
        deadline = time.monotonic() + EXIT_WAIT_S
        for worker in self.workers:
            while _running(worker.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _running(worker.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(worker.pid, 0)
            if worker.reader is not None:
                worker.reader.join(timeout=1.0)
            worker.conn.close()

    def _tell_all(self, message: tuple[Any, ...], but: _Worker | None = None) -> None:
        for worker in self.workers:
            if worker is not but and worker.alive:
                self._send(worker, message)

    def _send(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        with worker.sending, contextlib.suppress(OSError):  # a worker that died: its reader says so
            worker.conn.send(message)

    def _read(self, worker: _Worker) -> None:
        """One worker's messages, each to its goal's box (a hold to every other worker), until its pipe closes:
        then the goals it was running end as crashed."""
        while True:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                break
            if message[0] == "hold":
                self._tell_all(message, but=worker)
                continue
            with self._lock:
                running = self._running.get(message[1])
            if running is not None:
                running[1].put((message[0], *message[2:]))
        how = _reaped(worker.pid)
        with self._lock:
            worker.alive = False
            boxes = [box for held, box in self._running.values() if held is worker]
        for box in boxes:
            box.put(("ended", None, f"its worker process ({worker.pid}) {how}"))


def _running(pid: int) -> bool:
    """Whether the worker `pid` has not exited yet (reaping it if it has)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    return False


def _reaped(pid: int) -> str:
    """How the worker `pid` ended, once it has (its pipe closed: it is exiting or gone)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return "ended"  # reaped already (by `close`)
        if done:
            if os.WIFSIGNALED(status):
                return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
            return f"exited with {os.WEXITSTATUS(status)}"
        time.sleep(0.02)
    return "closed its pipe"


# ---------------------------------------------------------------- the worker's side


def _serve(fleet: Fleet, conn: Connection, parent: int, starts: int) -> NoReturn:
    """A worker's life: run the goals it is sent until told to exit, or until the batch's process is gone."""
    _die_with(parent)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the batch's process says
    sending = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        with sending, contextlib.suppress(OSError):  # the batch's process is gone: this one dies with it
            conn.send(message)

    gates = RateGates(on_hold=lambda key, until: send(("hold", key, until)))
    watched = fleet.on_event is not None
    local = dataclasses.replace(
        fleet, slots=[], gates=gates, start=start_local, capped=None, stopping=False, stopped_at=None,
        lock=threading.RLock(), ended=threading.Event(), starting=threading.BoundedSemaphore(starts),
        on_event=(lambda name, record: send(("event", name, record))) if watched else None,
        on_goal=lambda slot: send(("goal", slot.entry.name, slot.goal_id)), on_stop=None)
    entries = {slot.entry.name: slot.entry for slot in fleet.slots}  # the provider is imported already
    threads: list[threading.Thread] = []
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            os._exit(1)  # the batch's process is gone
        if message[0] == "run":
            slot = Slot(entries[message[1]], message[2], state="running")
            with local.lock:
                local.slots.append(slot)
            thread = threading.Thread(target=_run_goal, args=(local, slot, send), name=f"goal-{slot.entry.name}",
                                      daemon=True)
            thread.start()
            threads.append(thread)
        elif message[0] == "stop":
            local.stop()
        elif message[0] == "hold":
            _hold(gates, message[1], message[2])
        elif message[0] == "exit":
            break
    for thread in threads:
        thread.join(timeout=EXIT_WAIT_S)
    os._exit(0)  # not the batch's atexit handlers, nor its store's finalizers: they are the batch's to run


def _run_goal(local: Fleet, slot: Slot, send: Callable[[tuple[Any, ...]], None]) -> None:
    """One goal, start to end, in this worker's thread; its end (or what crashed it) goes to the batch."""
    name = slot.entry.name
    try:
        with local.open_store() as store:
            result = start_local(local, slot, store)
    except Exception as error:  # the goal's own failure: the batch records it, as for a goal in its thread
        send(("ended", name, None, describe(error)))
    else:
        send(("ended", name, result, None))


def _hold(gates: RateGates, key: GateKey, until: float) -> None:
    """A hold another worker's goal met, on this worker's gate of the same provider (not passed on again)."""
    gates.gate_of(tuple(key)).hold_until(until)  # type: ignore[arg-type]


def _die_with(parent: int) -> None:
    """SIGKILL this process when the batch's process dies (as the batch's own threads would die with it)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)
