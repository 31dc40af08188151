"""Time from `gk exec` to the goal's first model request, as a multiple of one bare run of its checks.

A sample repository with a slow-ish suite (`--tests` unittest cases that each sleep `--sleep` seconds, one
of them failing) is committed in a temp folder; its check is `python -m unittest -q`. The model is the
local Chat Completions server of tests/chat_server.py (in this process), which timestamps the first
request it receives; `gk exec` runs as a real subprocess against a fresh store and is stopped once that
request has arrived. The store's event timestamps split that time: when the checks started (the baseline's
time less the run's own duration: `gk exec` starts them before it sets the goal, run/head_start.py), goal set
(the interpreter, imports and the lint gate), sandbox (the runner's first step) and baseline (recorded after
the checks ran). One bare
run of the check is `python -m unittest -q` in the same repository, timed the same way (subprocess start
to exit), and so is `gk --help` (the interpreter and the CLI's imports, the constant part). Each
repetition uses a fresh repository and store. Prints figures; asserts nothing.

    PYTHONPATH=src .venv/bin/python bench/exec_first_request.py [--runs 5] [--tests 4] [--sleep 0.5] [--python P]

Point PYTHONPATH at another checkout's src (its tests folder is not needed) to measure that one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from chat_server import ChatServer, Completion

CHECK = "python -m unittest -q"
"""The check, with `python` as PATH finds it (`--python` names another interpreter: a version manager's `python`
is a shim, a chain of shell scripts that the tracer stops at every call)."""


def make_repo(root: Path, tests: int, sleep_s: float) -> Path:
    """A committed repository whose suite takes about `tests * sleep_s` seconds and fails."""
    repo = root / "repo"
    repo.mkdir()
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (repo / ".gitignore").write_text("__pycache__/\n")  # the bare run writes bytecode where it may
    cases = "".join(f"    def test_slow_{index}(self):\n        time.sleep({sleep_s})\n\n" for index in range(tests))
    (repo / "test_calc.py").write_text(
        "import time\nimport unittest\n\nimport calc\n\n\nclass Calc(unittest.TestCase):\n"
        f"{cases}    def test_add(self):\n        self.assertEqual(calc.add(2, 2), 4)\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "base"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


def bare_run(repo: Path, check: str) -> float:
    started = time.perf_counter()
    subprocess.run(check, shell=True, cwd=repo, capture_output=True, check=False)
    return time.perf_counter() - started


def help_run() -> float:
    """`gk --help`: the interpreter and the CLI's imports, the part of the time before any goal work."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "goalkeeper", "--help"], capture_output=True, check=False)
    return time.perf_counter() - started


def first_request(repo: Path, home: Path, check: str, timeout_s: float = 300) -> tuple[float, dict[str, float]]:
    """Seconds from starting `gk exec` to the model server holding its first request, and the seconds from
    the start to some events the goal's store timestamps (its first goal_set, sandbox and baseline)."""
    seen: list[float] = []

    def reply(_body: dict[str, Any]) -> Completion:
        seen.append(time.time())
        return Completion(text="working on it")

    env = {**os.environ, "GOALKEEPER_HOME": str(home), "BENCH_KEY": "x"}
    with ChatServer(reply_fn=reply) as server:
        started = time.time()
        process = subprocess.Popen(
            [sys.executable, "-m", "goalkeeper", "exec", "Make calc.add add", "--check", f"tests={check}",
             "--model", "bench-model", "--base-url", server.base_url, "--api-key-env", "BENCH_KEY",
             "--budget-turns", "1", "--cwd", str(repo)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            while not seen and process.poll() is None and time.time() - started < timeout_s:
                time.sleep(0.002)
        finally:
            with_output = process.poll() is not None
            with contextlib.suppress(ProcessLookupError):  # it may have ended by itself
                os.killpg(process.pid, signal.SIGKILL)
            output = process.communicate()[0]
    if not seen:
        raise SystemExit(f"gk exec sent no request (exited: {with_output}):\n{output[-2000:]}")
    with sqlite3.connect(home / "state.db") as db:
        rows = db.execute("SELECT kind, min(ts) FROM events WHERE kind IN ('goal_set', 'sandbox', 'baseline') "
                          "GROUP BY kind").fetchall()
        baseline = db.execute("SELECT ts, payload FROM events WHERE kind = 'baseline' ORDER BY seq LIMIT 1").fetchone()
    stamps = {kind: stamp - started for kind, stamp in rows}
    if baseline is not None:  # when the checks started: the baseline's time less their own run's
        ran = sum(evidence["duration_s"] for evidence in json.loads(baseline[1])["evidence"])
        stamps["checks started"] = baseline[0] - started - ran
    return seen[0] - started, stamps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tests", type=int, default=4)
    parser.add_argument("--sleep", type=float, default=0.5)
    parser.add_argument("--python", default="python",
                        help="the interpreter the check runs (default: `python` on PATH, perhaps a pyenv shim)")
    args = parser.parse_args()
    check = CHECK.replace("python", shlex.quote(args.python), 1)
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        # Without cached bytecode every `gk` process compiles ~130 modules (+0.2-0.3 s); installed copies have it.
        print("note: PYTHONDONTWRITEBYTECODE is set: a checkout without cached bytecode compiles goalkeeper on "
              "every run; unset it (one run writes the cache) to measure what an installed copy does",
              file=sys.stderr)
    bare, first, helps = [], [], []
    marks: dict[str, list[float]] = {}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="gk-exec-bench-") as scratch:
            root = Path(scratch)
            repo = make_repo(root, args.tests, args.sleep)
            bare.append(bare_run(repo, check))
            helps.append(help_run())
            seconds, stamps = first_request(repo, root / "home", check)
            first.append(seconds)
            for kind, stamp in stamps.items():
                marks.setdefault(kind, []).append(stamp)
    ratios = [time_s / base for time_s, base in zip(first, bare, strict=True)]
    print(f"{args.runs} runs; the suite: {args.tests} tests sleeping {args.sleep}s each; the check: `{check}`")
    print(f"one bare run of the checks: median {statistics.median(bare):.2f} s")
    print(f"gk exec to first request:   median {statistics.median(first):.2f} s "
          f"(min {min(first):.2f}, max {max(first):.2f})")
    print(f"ratio: median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})")
    print(f"gk --help (interpreter and imports): median {statistics.median(helps):.2f} s")
    print("seconds from the start to the first event of each kind (store timestamps), median:")
    for kind in ("checks started", "goal_set", "sandbox", "baseline"):
        if kind in marks:
            print(f"  {kind:<14} {statistics.median(marks[kind]):.2f} s")


if __name__ == "__main__":
    main()
