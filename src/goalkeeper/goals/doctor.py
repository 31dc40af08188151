"""`gk doctor`: the store's full integrity check, and the environment facts that decide whether a goal can run.

The integrity check reads every page of the store, so it runs here, on request, and when SQLite reports damage
in use (store/db.py); opening the store checks only that it is a database this goalkeeper can read. A
PostgreSQL store gets its backend's check instead (store/postgres.py: schema, indexes, a gap-free event log).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from goalkeeper.errors import ConfigError, GoalkeeperError, SandboxError
from goalkeeper.goals.service import open_store
from goalkeeper.sandbox.bwrap import require_sandbox
from goalkeeper.sandbox.policy import SandboxPolicy

if TYPE_CHECKING:
    from goalkeeper.config.temporal import TemporalConnection


@dataclass(frozen=True)
class Finding:
    """One thing checked: what, whether it is fine, what was found, and the fix when it is not."""

    name: str
    ok: bool
    detail: str
    hint: str | None = None


def diagnose(store_path: Path | str | None = None, temporal: str | None = None,
             namespace: str = "default") -> list[Finding]:
    """The store (at `store_path`, $GOALKEEPER_HOME/state.db by default), then the sandbox; then the Temporal
    settings when the user's config.toml has a `[temporal]` table, and the server when `temporal` names it."""
    from goalkeeper.config.temporal import user_config, user_table

    found = [store_finding(store_path), sandbox_finding()]
    if temporal is not None or user_table(user_config()):
        found.append(temporal_finding(temporal, namespace))
    return found


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


def temporal_finding(address: str | None, namespace: str = "default") -> Finding:
    """The `[temporal]` table's certificate, key, CA and API key variable, loaded as a connection would load them
    (a certificate and a key that are not a pair fail here, not in a worker's first handshake); with `address`,
    a connection to that server too."""
    from goalkeeper.config.temporal import connection, user_config

    try:
        server = connection(address or "HOST:PORT", namespace)
        _load_tls(server)
        if address is None:
            return Finding("temporal", True, f"the [temporal] table of {user_config()}: {_described(server)} "
                           "load (--temporal HOST:PORT connects as well)")
        from goalkeeper.run.temporal.client import connect

        asyncio.run(connect(server))
    except GoalkeeperError as error:
        return Finding("temporal", False, error.message, error.hint)
    return Finding("temporal", True, f"{address}: connected, namespace {namespace} ({_described(server)})")


def _load_tls(server: TemporalConnection) -> None:
    """The client certificate with its key, and the CA, loaded into a TLS context; a ConfigError naming the
    setting when they do not load."""
    credentials = server.credentials()  # readable PEM files, both halves of a pair, a set API key variable
    context = ssl.create_default_context()
    named = f"{server.name_of('cert')} and {server.name_of('key')}"
    try:
        if server.cert is not None and server.key is not None:
            context.load_cert_chain(server.cert, server.key)
        named = server.name_of("ca")
        if credentials.ca is not None:
            context.load_verify_locations(cadata=credentials.ca.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as error:
        raise ConfigError(f"{named}: {error}", "give the client certificate with its own private key, and the "
                          "CA as PEM; `openssl x509 -noout -modulus` and `openssl pkey -noout -modulus` show "
                          "whether a certificate and a key match") from None


def _described(server: TemporalConnection) -> str:
    """What the connection presents, in words: TLS or not, mTLS, an API key."""
    parts = ["TLS" if server.tls else "no TLS"]
    parts += ["a client certificate"] if server.cert is not None else []
    parts += [f"a CA ({server.ca})"] if server.ca is not None else []
    parts += [f"the API key in ${server.api_key_env}"] if server.api_key_env else []
    return ", ".join(parts)
