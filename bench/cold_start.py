"""Benchmark: cold start of the read-only commands, and the memory of an idle `gk serve`.

Each command runs as a fresh `python -m goalkeeper` process, as a person's shell runs it; its wall time is
taken around the process and its peak RSS and CPU time from `os.wait4`. `python -c pass` runs in the same
rounds as the baseline. The rounds interleave the commands (and the source trees, with several `--src`), so a
busy machine slows them alike. One warm-up round runs first and is not counted: it writes the bytecode caches,
as installing the package does.

`gk serve` is started on a free port, asked for GET /threads once it answers, and its VmRSS read from /proc;
a bare FastAPI app under uvicorn is measured the same way for reference.

    .venv/bin/python bench/cold_start.py [--runs 10] [--store HOME] [--cwd WORKSPACE] [--src SRC ...] [--importtime]

--store is a GOALKEEPER_HOME (its state.db), for example one bench/store_scale.py built; by default a temp
home gets one goal, run to `achieved` by `gk demo --replay`. --cwd is the workspace whose goal the commands
show (default: the newest thread's). Each --src is a source tree to put first on PYTHONPATH (say the `src` of
an older checkout and of this one); by default the goalkeeper this interpreter imports.
--importtime also runs each command under `python -X importtime` three times per tree and prints the sum of
each module's smallest self time, by package: a figure that moves less with the machine's load than a wall time.
It prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

COMMANDS: tuple[tuple[str, ...], ...] = (("--help",), ("status",), ("goal",), ("log",), ("threads",), ("report",))
"""The read-only commands; all but --help and threads also get `--cwd WORKSPACE`."""

BARE_FASTAPI = ("import sys, fastapi, uvicorn; app = fastapi.FastAPI(); app.get('/threads')(lambda: []); "
                "uvicorn.run(app, host='127.0.0.1', port=int(sys.argv[1]), log_level='warning')")
SERVE_WAIT_S = 30.0
IMPORT_GROUPS = {"pydantic": ("pydantic", "pydantic_core", "annotated_types", "typing_inspection"),
                 "typer": ("typer",), "rich": ("rich",), "goalkeeper": ("goalkeeper",)}
"""The packages the import sums are split by; the rest (the standard library, mostly) is "other"."""
IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+\d+ \|\s+(\S+)")
TIME = "/usr/bin/time" if Path("/usr/bin/time").is_file() else None
"""GNU time, for each command's own peak RSS."""


@dataclass
class Samples:
    """One command's runs: wall seconds, CPU seconds (user + system), peak RSS in KiB."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)


def child_env(home: Path, src: str | None) -> dict[str, str]:
    """The environment of a measured process: this one's, with the store, the source tree and bytecode caches."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["GOALKEEPER_HOME"] = str(home)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(src).resolve()), os.environ.get("PYTHONPATH")]))
    return env


def measure(argv: list[str], env: dict[str, str], rss_file: Path) -> tuple[float, float, int]:
    """Run `argv` to the end: its wall seconds, CPU seconds and peak RSS (KiB; 0 without GNU time). It must
    succeed. GNU time forks the command from its own small process: a child forked from this one would report
    this process's RSS as its peak (Linux keeps the higher mark across exec)."""
    wrapped = [TIME, "-f", "%M", "-o", str(rss_file), *argv] if TIME else argv
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(wrapped, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rss = int(rss_file.read_text().split()[-1]) if TIME else 0
    return wall, cpu, rss


def newest_workspace(env: dict[str, str]) -> str:
    """The workspace of the store's newest thread, read through the store API in a child process."""
    code = ("from goalkeeper.goals import service\n"
            "with service.open_store() as store:\n"
            "    threads = store.list_threads()\n"
            "print(threads[0].workspace if threads else '')")
    found = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    if not found.stdout.strip():
        raise SystemExit("the store has no thread: give --cwd, or leave out --store")
    return found.stdout.strip()


def small_store(root: Path, env: dict[str, str]) -> Path:
    """A fresh GOALKEEPER_HOME under `root` with one goal that `gk demo --replay` ran to `achieved`."""
    home = root / "gk-home"
    home.mkdir()
    # TMPDIR puts the demo's copy of the sample repository under `root`, so it goes when `root` does.
    subprocess.run([sys.executable, "-m", "goalkeeper", "demo", "--replay"],
                   env={**env, "GOALKEEPER_HOME": str(home), "TMPDIR": str(root)}, check=True,
                   stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, timeout=300)
    return home


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_serving(server: subprocess.Popen[bytes], port: int) -> None:
    """Wait until the server answers HTTP on `port`. Any answer will do (401 without the token): the socket
    listens before `gk serve` writes its token, the app only after."""
    deadline = time.monotonic() + SERVE_WAIT_S
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/threads", timeout=5):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server on port {port} did not start") from None
            time.sleep(0.05)


def idle_rss_mib(argv: list[str], env: dict[str, str], port: int, token: Callable[[], str | None]) -> float:
    """Start a server, wait until it listens, GET /threads once (with `token()`), and read its VmRSS (MiB)."""
    server = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_serving(server, port)
        bearer = token()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/threads",
                                         headers={"Authorization": f"Bearer {bearer}"} if bearer else {})
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
        time.sleep(0.5)  # let it settle after the request
        status = Path(f"/proc/{server.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def serve_rss(env: dict[str, str]) -> float:
    """The idle VmRSS of `gk serve` (MiB) after one GET /threads with its token (written at its first start)."""
    port = free_port()
    gk = [sys.executable, "-m", "goalkeeper", "serve"]

    def token() -> str:
        return subprocess.run([*gk, "--show-token"], env=env, capture_output=True, text=True, check=True).stdout.strip()

    return idle_rss_mib([*gk, "--port", str(port)], env, port, token)


def command_argv(command: tuple[str, ...], workspace: str) -> list[str]:
    args = list(command) if command[0] in ("--help", "threads") else [*command, "--cwd", workspace]
    return [sys.executable, "-m", "goalkeeper", *args]


def run_rounds(runs: int, trees: list[str | None], home: Path, workspace: str,
               scratch: Path) -> dict[tuple[str, str], Samples]:
    """`runs` interleaved rounds of every command in every tree, after one warm-up round."""
    samples: dict[tuple[str, str], Samples] = {}
    for round_number in range(runs + 1):
        for tree in trees:
            env = child_env(home, tree)
            jobs = [("python -c pass", [sys.executable, "-c", "pass"])]
            jobs += [(f"gk {' '.join(command)}", command_argv(command, workspace)) for command in COMMANDS]
            for name, argv in jobs:
                wall, cpu, rss = measure(argv, env, scratch / "rss")
                if round_number:
                    figures = samples.setdefault((tree or "-", name), Samples())
                    figures.wall.append(wall)
                    figures.cpu.append(cpu)
                    figures.rss_kib.append(rss)
    return samples


def import_sums(argv: list[str], env: dict[str, str], repeats: int = 3) -> dict[str, float]:
    """`argv` under `-X importtime`, `repeats` times: each module's smallest self time (ms), summed by group."""
    best: dict[str, int] = {}
    for _ in range(repeats):
        done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
        for module, micros in ((m[2], int(m[1])) for m in IMPORTTIME.finditer(done.stderr)):
            best[module] = min(micros, best.get(module, micros))
    sums: dict[str, float] = collections.defaultdict(float)
    for module, micros in best.items():
        top = module.split(".")[0]
        group = next((name for name, tops in IMPORT_GROUPS.items() if top in tops), "other")
        sums[group] += micros / 1000
        sums["total"] += micros / 1000
    return dict(sums)


def print_import_sums(trees: list[str | None], home: Path, workspace: str) -> None:
    groups = ["total", *IMPORT_GROUPS, "other"]
    print(f"\n| source | command | import ms: {' / '.join(groups)} |\n|---|---|---|")
    for command in COMMANDS:
        for tree in trees:
            sums = import_sums(command_argv(command, workspace), child_env(home, tree))
            print(f"| {tree or '-'} | gk {' '.join(command)} | {' / '.join(f'{sums.get(g, 0):.0f}' for g in groups)} |")


def print_table(samples: dict[tuple[str, str], Samples], trees: list[str | None]) -> None:
    print("| source | command | best ms | median ms | CPU ms (median) | × python | max RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for tree in trees:
        label = tree or "-"
        base = statistics.median(samples[(label, "python -c pass")].wall)
        for (source, name), figures in samples.items():
            if source != label:
                continue
            median = statistics.median(figures.wall)
            print(f"| {label} | {name} | {min(figures.wall) * 1000:.0f} | {median * 1000:.0f} | "
                  f"{statistics.median(figures.cpu) * 1000:.0f} | {median / base:.1f} | "
                  f"{max(figures.rss_kib) / 1024:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="measured rounds (after one warm-up round)")
    parser.add_argument("--store", type=Path, help="a GOALKEEPER_HOME to read (default: a temp one, one goal)")
    parser.add_argument("--cwd", help="the workspace whose goal the commands show (default: the newest thread's)")
    parser.add_argument("--src", action="append", help="a source tree to measure (repeat to compare trees)")
    parser.add_argument("--importtime", action="store_true", help="also print each command's import time sums")
    parser.add_argument("--no-serve", action="store_true", help="skip the `gk serve` memory figures")
    options = parser.parse_args()
    trees: list[str | None] = list(options.src) if options.src else [None]
    with tempfile.TemporaryDirectory(prefix="gk-cold-start-") as scratch:
        home = options.store or small_store(Path(scratch), child_env(Path(scratch), trees[-1]))
        workspace = options.cwd or newest_workspace(child_env(home, trees[-1]))
        print(f"store {home}, workspace {workspace}, {options.runs} rounds, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.2f}")
        print_table(run_rounds(options.runs, trees, home, workspace, Path(scratch)), trees)
        if options.importtime:
            print_import_sums(trees, home, workspace)
        if options.no_serve:
            return
        print("\n| source | server | idle VmRSS MiB (after GET /threads) |\n|---|---|---|")
        for tree in trees:
            print(f"| {tree or '-'} | gk serve | {serve_rss(child_env(home, tree)):.1f} |")
        port = free_port()
        bare = idle_rss_mib([sys.executable, "-c", BARE_FASTAPI, str(port)], child_env(home, None), port,
                            lambda: None)
        print(f"| - | bare FastAPI app | {bare:.1f} |")
        print(json.dumps({"load_average_after": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
