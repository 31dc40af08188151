"""One runner per goal: the lease rules (who may take a goal's lease, and when it counts as abandoned).

Functions run inside a transaction the Store opened; they never open or commit one themselves.
"""

from __future__ import annotations

import socket

from goalkeeper.errors import GoalNotFoundError, LeaseHeldError
from goalkeeper.store.dialect import Connection
from goalkeeper.store.locks import describe_process, holder_is_live
from goalkeeper.store.records import Lease

Holder = tuple[str, int]
"""(host, pid) of a lease holder."""


def lease_is_live(lease: Lease, stale_after_s: float = 15.0, *, now: float | None = None) -> bool:
    """True while the lease's runner can be presumed to be running.

    A heartbeat older than `stale_after_s` means abandoned, wherever the holder runs. On this host the
    process must also still exist. The freshness test applies even when it does, because after a crash
    and a reboot its pid may belong to some unrelated process.
    """
    return holder_is_live(lease.host, lease.pid, lease.heartbeat_at, stale_after_s, now=now)


def acquire(conn: Connection, goal_id: str, me: Holder, stale_after_s: float, now: float) -> Lease:
    """Take the goal's lease for `me`, unless another live runner holds it (then LeaseHeldError)."""
    if conn.execute("SELECT 1 FROM goals WHERE goal_id = ?", (goal_id,)).fetchone() is None:
        raise GoalNotFoundError(f"no goal {goal_id}", hint="`gk goal` shows the current goal")
    held = read(conn, goal_id)
    mine = held is not None and (held.host, held.pid) == me
    if held is not None and not mine and lease_is_live(held, stale_after_s, now=now):
        raise held_error(held, now)
    # A runner that re-acquires keeps its original acquired_at; a takeover starts afresh.
    acquired_at = held.acquired_at if held is not None and mine else now
    lease = Lease(goal_id=goal_id, host=me[0], pid=me[1], heartbeat_at=now, acquired_at=acquired_at)
    conn.execute(
        "INSERT INTO leases (goal_id, host, pid, heartbeat_at, acquired_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (goal_id) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
        "heartbeat_at = excluded.heartbeat_at, acquired_at = excluded.acquired_at",
        (lease.goal_id, lease.host, lease.pid, lease.heartbeat_at, lease.acquired_at),
    )
    return lease


def heartbeat(conn: Connection, goal_id: str, me: Holder, now: float) -> None:
    """Refresh `me`'s lease; LeaseHeldError when it was taken over or released meanwhile."""
    held = read(conn, goal_id)
    if held is None:
        raise LeaseHeldError(
            f"this process (pid {me[1]}) no longer holds the lease on goal {goal_id}: it was released",
            hint="acquire the lease again before running the goal",
        )
    if (held.host, held.pid) != me:
        raise held_error(held, now)
    conn.execute("UPDATE leases SET heartbeat_at = ? WHERE goal_id = ?", (now, goal_id))


def release(conn: Connection, goal_id: str, me: Holder) -> None:
    """Drop `me`'s lease; someone else's lease is left alone."""
    conn.execute("DELETE FROM leases WHERE goal_id = ? AND host = ? AND pid = ?", (goal_id, *me))


def read(conn: Connection, goal_id: str) -> Lease | None:
    row = conn.execute(
        "SELECT goal_id, host, pid, heartbeat_at, acquired_at FROM leases WHERE goal_id = ?", (goal_id,)
    ).fetchone()
    return None if row is None else Lease(*row)


def held_error(lease: Lease, now: float) -> LeaseHeldError:
    """The refusal that names the runner holding the goal and how recently it was seen."""
    here = lease.host == socket.gethostname()
    who = describe_process(lease.pid) if here else f"pid {lease.pid}"
    return LeaseHeldError(
        f"goal {lease.goal_id} is already being run by {who} on host {lease.host}; "
        f"its last heartbeat was {max(0.0, now - lease.heartbeat_at):.1f}s ago",
        hint="pause it with `gk goal pause`, or wait",
    )
