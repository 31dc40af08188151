"""A real PostgreSQL 15 server for the tests, in a temp folder on a free port, and a fresh database per test.

`initdb` refuses to run as root, so as root the server runs as the `postgres` system user (made if missing,
as a Debian package would); otherwise as the current user. The superuser `gk` logs in over TCP with a
password (scram), so a wrong one is refused as a real deployment would refuse it. One server per test
session: with xdist, each worker process starts its own, in its own folder and on its own port.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from helpers import free_port

_BIN = Path("/usr/lib/postgresql/15/bin")
_USER = "postgres"


def _binary(name: str) -> str:
    """The server program `name`: Debian's PostgreSQL 15 first, else the one on PATH."""
    if (_BIN / name).is_file():
        return str(_BIN / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is missing: run scripts/setup (it installs postgresql-15)")
    return found


@dataclass
class Postgres:
    """A running server: its folder, port and superuser password, and how it was started."""

    root: Path
    port: int
    password: str
    as_user: list[str]
    options: str = ""

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://gk:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database's URL."""
        import psycopg

        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}".encode())
        return self.url(name)

    def halt(self) -> None:
        """Stop the server as an administrator would (every connection is closed); `resume` starts it again."""
        self._pg_ctl("stop", "-m", "fast")

    def resume(self) -> None:
        self._pg_ctl("start", "-l", str(self.root / "run" / "log"), "-o", self.options)

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run([*self.as_user, _binary("pg_ctl"), "-D", str(self.root / "data"), "-w", "-t", "60", *args],
                       check=True, capture_output=True, timeout=90)

    def stop(self) -> None:
        subprocess.run([*self.as_user, _binary("pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate",
                        "-w", "-t", "30", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> Postgres:
    """Start a throwaway server (no fsync: nothing in it must outlive the tests)."""
    root = Path(tempfile.mkdtemp(prefix="gk-pg-"))
    as_user: list[str] = []
    run = root / "run"
    run.mkdir()
    (root / "data").mkdir(mode=0o700)
    password = secrets.token_hex(8)
    (run / "pw").write_text(password + "\n")
    if os.geteuid() == 0:
        _system_user()
        os.chmod(root, 0o755)  # the server's user reaches its folders through it
        for folder in (run, root / "data", run / "pw"):
            shutil.chown(folder, _USER, _USER)
        as_user = ["runuser", "-u", _USER, "--"]
    try:
        subprocess.run([*as_user, _binary("initdb"), "-D", str(root / "data"), "-U", "gk", f"--pwfile={run / 'pw'}",
                        "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        port = free_port()
        options = (f"-p {port} -k {run} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=50 -c shared_buffers=16MB")
        subprocess.run([*as_user, _binary("pg_ctl"), "-D", str(root / "data"), "-l", str(run / "log"), "-w",
                        "-t", "60", "-o", options, "start"], check=True, capture_output=True, timeout=90)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return Postgres(root, port, password, as_user, options)


def _system_user() -> None:
    """The `postgres` system user that Debian's package makes, made the same way if it is missing."""
    try:
        pwd.getpwnam(_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        _USER], check=True, capture_output=True, timeout=60)
