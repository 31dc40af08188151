"""`gk doctor`: the store's full integrity check, and the environment facts that decide whether a goal can run.

The integrity check reads every page of the store, so it runs here, on request, and when SQLite reports damage
in use (store/db.py); opening the store checks only that it is a database this goalkeeper can read. A
PostgreSQL store gets its backend's check instead (store/postgres.py: schema, indexes, a gap-free event log).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from goalkeeper.errors import GoalkeeperError, SandboxError
from goalkeeper.goals.service import open_store
from goalkeeper.sandbox.bwrap import require_sandbox
from goalkeeper.sandbox.policy import SandboxPolicy


@dataclass(frozen=True)
class Finding:
    """One thing checked: what, whether it is fine, what was found, and the fix when it is not."""

    name: str
    ok: bool
    detail: str
    hint: str | None = None


def diagnose(store_path: Path | str | None = None) -> list[Finding]:
    """The store (at `store_path`, $GOALKEEPER_HOME/state.db by default), then the sandbox."""
    return [store_finding(store_path), sandbox_finding()]


def store_finding(store_path: Path | str | None = None) -> Finding:
    """Open the store and run its backend's full check of it."""
    try:
        with open_store(store_path) as store:
            problems = store.check_integrity()
            size = f", {store.path.stat().st_size / 2**20:.1f} MiB" if store.backend == "sqlite" else ""
            where = f"{store.shown} (schema {store.schema_version()}{size})"
    except GoalkeeperError as error:
        return Finding("store", False, error.message, error.hint)
    if problems and store.backend == "sqlite":
        return Finding("store", False, f"{where} failed SQLite's integrity check: {'; '.join(problems[:5])}",
                       f"restore {store.path} from a backup, or move it aside (and its -wal and -shm files) "
                       "to start a fresh store")
    if problems:
        return Finding("store", False, f"{where} failed its check: {'; '.join(problems[:5])}",
                       "fix what it names, or restore the database from a backup (pg_restore)")
    return Finding("store", True, f"{where}: intact")


def sandbox_finding() -> Finding:
    """Whether bubblewrap can build the sandbox goals run in by default (workspace-write)."""
    try:
        require_sandbox(SandboxPolicy(mode="workspace-write", workspace=Path.cwd().resolve()))
    except SandboxError as error:
        return Finding("sandbox", False, error.message, error.hint)
    return Finding("sandbox", True, "bubblewrap builds the sandbox")
