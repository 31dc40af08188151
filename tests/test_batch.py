"""`gk batch`: many goals at once, each in its own worktree, over one fake Chat Completions server.

Everything is real (git worktrees, bwrap, SQLite, the `gk` process); the model is a local HTTP server whose
answer depends on the goal asking: each goal's objective names its script (`[script:NAME]`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chat_server import ChatServer, Completion, Failure, Reply, ToolCallReply, UsageReply
from goalkeeper.contract.toml import load_contract
from goalkeeper.errors import ConfigError, ContractError, WorkspaceError
from goalkeeper.events import ToolIntentEvent
from goalkeeper.goals import service
from goalkeeper.goals.batch import (
    Hooks,
    batch_rows,
    check_caps,
    check_goals,
    check_parallel,
    read_goal_files,
    resume_batch,
)
from goalkeeper.run import batch as fleets
from goalkeeper.run.batch import Fleet, Slot, run_fleet
from goalkeeper.run.runner import RunResult
from goalkeeper.spec.settings import GoalSettings, ModelSettings, RunSettings
from goalkeeper.store import Store
from goalkeeper.store.batches import BatchNotFoundError, Caps, NewGoal, batch_goals, latest_batch, put_batch
from goalkeeper.workspace.worktrees import add_worktree, ensure_worktree, start_commit, worktree_path
from helpers import git
from scenario import gk

SCRIPT = re.compile(r"\[script:([a-z_]+)\]")


def goal_file(folder: Path, name: str, script: str, check: str = "test -f done.txt", **extra: str) -> Path:
    """A goal.toml whose objective names its script; `extra` adds TOML tables (`budget = "turns = 1"`)."""
    folder.mkdir(exist_ok=True)
    tables = "".join(f"\n[{table}]\n{body}\n" for table, body in extra.items())
    path = folder / f"{name}.toml"
    path.write_text(f'outcome = "Goal {name} [script:{script}]"\n[[checks]]\nname = "done"\nrun = "{check}"\n'
                    f"{tables}")
    return path


def call(name: str, **arguments: Any) -> Completion:
    return Completion(tool_calls=(ToolCallReply(name, arguments),), usage=UsageReply(100, 20))


WRITE_DONE = call("write_file", path="done.txt", content="done\n")
COMPLETE = call("update_goal", status="complete", summary="done")
BLOCKED = call("update_goal", status="blocked", summary="tried", blocker="needs a person")

SCRIPTS: dict[str, list[Reply]] = {
    "achieve": [WRITE_DONE, COMPLETE, Completion(text="Done.")],
    "claim": [COMPLETE, Completion(text="Done.")],  # claims completion without the work: max_attempts 1 → unmet
    "blocked": [BLOCKED, Completion(text="Blocked.")],
}
"""Each script's answers in order (the last repeats). `spin` (Model.reply) works forever: only a budget stops it."""


class Model:
    """The server's answers: each goal's script by the number of answers its conversation already holds; every
    request's arrival time and script are recorded."""

    def __init__(self, scripts: dict[str, list[Reply]] | None = None, delay_s: float = 0.0) -> None:
        self.scripts = scripts or SCRIPTS
        self.delay_s = delay_s
        self.arrivals: list[tuple[float, str, int]] = []
        self.lock = threading.Lock()

    def script_of(self, body: dict[str, Any]) -> str:
        text = json.dumps(body.get("messages", []))
        found = SCRIPT.search(text)
        assert found is not None, "every goal's objective names its script"
        return found.group(1)

    def __call__(self, body: dict[str, Any]) -> Reply:
        script = self.script_of(body)
        answered = sum(message["role"] == "assistant" for message in body.get("messages", []))
        with self.lock:
            self.arrivals.append((time.monotonic(), script, answered))
        if "shell" not in {tool["function"]["name"] for tool in body.get("tools", [])}:
            return self.slowed(Completion(text="Wrapping up: what was done, what remains.", usage=UsageReply(100, 20)))
        return self.reply(script, answered)

    def reply(self, script: str, answered: int) -> Reply:
        if script == "spin":  # a tool call, then the turn's end, again and again: new work every time
            return self.slowed(call("shell", command=f"echo {answered} > spin.txt") if answered % 2 == 0
                               else Completion(text=f"step {answered} done", usage=UsageReply(100, 20)))
        steps = self.scripts[script]
        return self.slowed(steps[min(answered, len(steps) - 1)])

    def slowed(self, step: Reply) -> Reply:
        if isinstance(step, Completion) and self.delay_s:
            return Completion(step.text, step.tool_calls, step.usage, delay_s=self.delay_s)
        return step


def batch(home: Path, repo: Path, server: ChatServer | None, *args: str,
          timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`gk batch ARGS` on `repo` with the model at `server` (None: the model the batch started with)."""
    return gk("batch", *args, "--cwd", str(repo), *(model_flags(server) if server else []), home=home,
              timeout=timeout, env_extra={"OPENAI_API_KEY": "test-key"})


def model_flags(server: ChatServer) -> list[str]:
    return ["--base-url", server.base_url, "--model", "test-model"]


def summary_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The final JSON line of `gk batch --json`."""
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-3000:]
    last: dict[str, Any] = json.loads(lines[-1])
    assert "goals" in last, done.stdout[-2000:] + done.stderr[-2000:]
    return last


def statuses(summary: dict[str, Any]) -> dict[str, str]:
    return {goal["name"]: goal["status"] for goal in summary["goals"]}


def event_lines(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in done.stdout.strip().splitlines()[:-1]]


# ---------------------------------------------------------------- bad input


def test_bad_input_is_one_clear_error_and_starts_nothing(tmp_path: Path, git_repo: Path,
                                                          goalkeeper_home: Path) -> None:
    goals = tmp_path / "goals"
    goal_file(goals, "a", "achieve")
    (goals / "broken.toml").write_text('outcome = "x"\n[[checks]]\nname = 1\n')
    with pytest.raises(ContractError, match=r"broken\.toml"):
        read_goal_files([goals])
    other = tmp_path / "other"
    goal_file(other, "a", "achieve")
    with pytest.raises(ConfigError, match="two goals are named 'a'"):
        read_goal_files([goals / "a.toml", other / "a.toml"])
    with pytest.raises(ConfigError, match="no goal file or folder"):
        read_goal_files([tmp_path / "missing.toml"])
    with pytest.raises(ConfigError, match="--parallel must be 1 or more"):
        check_parallel(0)
    with pytest.raises(ConfigError, match="--cap-usd must be positive"):
        check_caps(None, -1.0, None)
    speed = goal_file(tmp_path / "speed", "speed", "achieve")
    speed.write_text(speed.read_text().replace("Goal speed", "Make the p95 latency fast"))
    with pytest.raises(ConfigError, match=r"speed\.toml: the outcome is about speed"):
        check_goals(git_repo, read_goal_files([speed]))
    with Store() as store, pytest.raises(BatchNotFoundError, match="has no batch"):
        resume_batch(store, git_repo, None, RunSettings(), Hooks())
    done = gk("batch", str(goals), "--cwd", str(git_repo), "--model", "scripted:/nope.json", home=goalkeeper_home)
    assert done.returncode == 4 and "broken.toml" in done.stderr
    assert not Path(f"{goalkeeper_home}-worktrees").exists() or not any(Path(f"{goalkeeper_home}-worktrees").iterdir())
    with Store() as store, pytest.raises(BatchNotFoundError):
        latest_batch(store, str(git_repo))


def test_a_batch_refuses_a_goal_whose_check_runs_a_program_that_is_not_there(tmp_path: Path, git_repo: Path) -> None:
    goals = tmp_path / "goals"
    goal_file(goals, "fine", "achieve")
    goal_file(goals, "typo", "achieve", check="pytset -q")
    with pytest.raises(ConfigError, match=r"typo\.toml: .*pytset"):
        check_goals(git_repo, read_goal_files([goals]))


def test_a_goal_that_ends_frees_its_slot_for_the_next_at_once(tmp_path: Path, goalkeeper_home: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The next goal starts when one ends, not at the fleet's next tick: a second wave would otherwise wait up to
    a tick for every slot. With a tick of a minute, three goals one at a time still take no time."""
    monkeypatch.setattr(fleets, "TICK_S", 60.0)
    contract = load_contract(goal_file(tmp_path / "goals", "a", "achieve"))
    started: list[str] = []

    def start(fleet: Fleet, slot: Slot, store: Store) -> RunResult:
        started.append(slot.entry.name)
        return RunResult(f"goal-{slot.entry.name}", "achieved", "checks_pass")

    def prepare(store: Store, entry: object) -> Any:
        raise AssertionError("the fleet's own start prepares nothing")

    with Store() as store:
        made = put_batch(store, str(tmp_path), "0" * 40, [], 1, Caps(), None,
                         [NewGoal(name, "a.toml", contract, str(tmp_path / name)) for name in ("g1", "g2", "g3")])
        fleet = Fleet(made, [Slot(entry) for entry in batch_goals(store, made.batch_id)], Store, prepare, None,
                      start=start)
        began = time.monotonic()
        slots = run_fleet(fleet)
    assert [slot.state for slot in slots] == ["done"] * 3 and started == ["g1", "g2", "g3"]
    assert time.monotonic() - began < 30


def test_the_goals_of_a_batch_share_what_the_first_start_found(tmp_path: Path, git_repo: Path,
                                                                goalkeeper_home: Path) -> None:
    """Each git process a goal's start needs costs every goal of the batch: the batch's commit is checked once
    (no `rev-parse` per goal), the shared mirror once per process (no `rev-list` per goal), a stale worktree is
    pruned only when `git worktree add` finds one, the base checkout reads the mirror's config once, what the
    commit holds (its config, its instructions, its tree) is read once."""
    trace = tmp_path / "trace2.json"
    config = tmp_path / "global.gitconfig"
    config.write_text(f"[trace2]\n\teventTarget = {trace}\n\teventBrief = true\n")
    goals = tmp_path / "goals"
    for name in ("a", "b", "c"):
        goal_file(goals, name, "achieve")
    with ChatServer(reply_fn=Model()) as server:
        done = gk("batch", str(goals), "--parallel", "1", "--json", "--cwd", str(git_repo), *model_flags(server),
                  home=goalkeeper_home, timeout=120,
                  env_extra={"OPENAI_API_KEY": "test-key", "GIT_CONFIG_GLOBAL": str(config)})
    assert statuses(summary_of(done)) == {"a": "achieved", "b": "achieved", "c": "achieved"}
    started = Counter(" ".join(json.loads(line)["argv"][1:3]) for line in trace.read_text().splitlines()
                      if json.loads(line).get("event") == "start")
    assert started["worktree prune"] == 0 and started["worktree add"] == 3
    assert started["rev-list --objects"] == 2  # the shared mirror's pack and its check, at the first goal only
    assert started["rev-parse --verify"] == 3 + 1, started  # each goal's branch looked for; the batch's commit
    assert started["rev-parse --show-toplevel"] == 1, started  # the repository's: a worktree made is known
    # Each worktree's and each goal mirror's, the repository's and the shared mirror's (it was 14).
    assert started["config --list"] == 3 * 2 + 2, started
    # The project config and the instructions at the batch's commit are read once for all three (it was 3 x 3).
    assert started["cat-file blob"] == 1 and started["--literal-pathspecs ls-tree"] == 1, started
    # A tree is written only for each goal's one writing turn: the baseline's and the verification's trees are
    # clean, so they are their HEAD's, read from the commit object (it was 3 x 3).
    assert started["write-tree"] == 3, started


# ---------------------------------------------------------------- a batch of 20


@pytest.mark.slow
def test_twenty_goals_four_at_a_time_each_end_as_scripted_in_its_own_worktree(
        tmp_path: Path, git_repo: Path, goalkeeper_home: Path) -> None:
    goals = tmp_path / "goals"
    expected: dict[str, str] = {}
    kinds = [("achieve", {}, "achieved"), ("claim", {"iteration": "max_attempts = 1"}, "unmet"),
             ("blocked", {}, "unmet"), ("spin", {"budget": "turns = 2"}, "budget_limited")]
    for number in range(20):
        script, extra, status = kinds[number % 4]
        name = f"g{number:02d}-{script}"
        goal_file(goals, name, script, **extra)
        expected[name] = status
    model = Model()
    with ChatServer(reply_fn=model) as server:
        done = batch(goalkeeper_home, git_repo, server, str(goals), "--parallel", "4", "--json", timeout=240)
    summary = summary_of(done)
    assert statuses(summary) == expected
    assert done.returncode == summary["exit_code"] == 2  # the worst: budget_limited (2) over unmet (1)
    worktrees = {goal["worktree"] for goal in summary["goals"]}
    assert len(worktrees) == 20 and not any(Path(tree).is_relative_to(git_repo) for tree in worktrees)
    listed = subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=git_repo, capture_output=True,
                            text=True, check=True).stdout
    assert all(f"worktree {tree}" in listed for tree in worktrees)
    assert (git_repo / "done.txt").exists() is False  # the repository's own tree is never a goal's
    lines = event_lines(done)
    assert {line["batch_id"] for line in lines} == {summary["batch_id"]}
    assert {line["goal"] for line in lines} == set(expected)
    with Store() as store:
        rows = batch_rows(store, summary["batch_id"])
    assert [row.name for row in rows] == sorted(expected)
    assert all(row.checks_passing == (row.status == "achieved") and row.checks_total == 1 for row in rows)


# ---------------------------------------------------------------- the global cap


@pytest.mark.slow
def test_the_global_cap_stops_every_goal_within_one_wrap_up_turn(tmp_path: Path, git_repo: Path,
                                                                   goalkeeper_home: Path) -> None:
    goals = tmp_path / "goals"
    for number in range(4):
        goal_file(goals, f"spin{number}", "spin")
    model = Model(delay_s=0.2)
    with ChatServer(reply_fn=model) as server:
        done = batch(goalkeeper_home, git_repo, server, str(goals), "--parallel", "3", "--cap-tokens", "6000",
                     "--json")
    summary = summary_of(done)
    # The three running spin until the cap; the fourth, waiting for a slot, is never started.
    assert statuses(summary) == {"spin0": "budget_limited", "spin1": "budget_limited", "spin2": "budget_limited",
                                 "spin3": "not_started"}
    assert summary["capped"] == "tokens" and done.returncode == 3  # a goal not started needs a resume
    by_goal: dict[str, list[dict[str, Any]]] = {}
    for line in event_lines(done):
        by_goal.setdefault(line["goal"], []).append(line)
    for name, lines in by_goal.items():
        kinds = [line["kind"] for line in lines]
        capped = kinds.index("budget_capped")
        after = [line for line in lines[capped:] if line["kind"] in ("turn_started", "status_changed")]
        # The cap opens the wrap-up turn; the next status change ends the goal; no other turn starts.
        assert [(line["kind"], line["payload"].get("kind") or line["payload"].get("to")) for line in after] \
            == [("turn_started", "wrap_up"), ("status_changed", "budget_limited")], name
        assert lines[capped]["payload"]["reason"] == "budget_tokens"
        assert kinds[capped - 1] == "control_applied"  # the fleet's `cap` request, applied by the goal's runner


# ---------------------------------------------------------------- isolation


@pytest.mark.slow
def test_a_crashing_goal_and_a_hanging_goal_do_not_affect_the_others(tmp_path: Path, git_repo: Path,
                                                                       goalkeeper_home: Path) -> None:
    goals = tmp_path / "goals"
    goal_file(goals, "a-fine", "achieve")
    goal_file(goals, "b-crash", "crash")
    goal_file(goals, "c-hang", "hang", budget='time = "3s"')
    goal_file(goals, "d-fine", "achieve")
    # A provider error the runner re-raises (a wrong key) crashes b; c's tool call would sleep 10 minutes.
    scripts: dict[str, list[Reply]] = {**SCRIPTS, "crash": [Failure.unauthorized()],
                                       "hang": [call("shell", command="sleep 600")]}
    with ChatServer(reply_fn=Model(scripts)) as server:
        started = time.monotonic()
        done = batch(goalkeeper_home, git_repo, server, str(goals), "--parallel", "4", "--json")
        took = time.monotonic() - started
    summary = summary_of(done)
    assert statuses(summary) == {"a-fine": "achieved", "b-crash": "crashed", "c-hang": "budget_limited",
                                 "d-fine": "achieved"}
    crashed = next(goal for goal in summary["goals"] if goal["name"] == "b-crash")
    assert crashed["error"] and crashed["goal_id"] is not None
    assert done.returncode == 4  # a crash is the worst outcome
    assert took < 60, f"the hanging goal held the batch {took:.0f}s"


# ---------------------------------------------------------------- resume after a kill


@pytest.mark.slow
def test_resume_after_the_batch_is_killed_finishes_it_and_runs_no_goal_twice(tmp_path: Path, git_repo: Path,
                                                                             goalkeeper_home: Path) -> None:
    goals = tmp_path / "goals"
    for number in range(4):
        goal_file(goals, f"g{number}", "achieve")
    model = Model(delay_s=0.6)
    env = {**os.environ, "GOALKEEPER_HOME": str(goalkeeper_home), "OPENAI_API_KEY": "test-key"}
    with ChatServer(reply_fn=model) as server:
        process = subprocess.Popen([sys.executable, "-m", "goalkeeper", "batch", str(goals), "--parallel", "2",
                                    "--cwd", str(git_repo), *model_flags(server)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            before = wait_for(lambda: _one_ended_one_running(goalkeeper_home), timeout=60)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        done = batch(goalkeeper_home, git_repo, None, "--resume", "--json")
    summary = summary_of(done)
    ended = [(goal["name"], goal["status"], goal["error"]) for goal in summary["goals"]]
    assert set(statuses(summary).values()) == {"achieved"} and done.returncode == 0, ended
    ended_before = {name for name, (status, _) in before.items() if status == "achieved"}
    resumed = {line["goal"] for line in event_lines(done)}
    assert ended_before and not resumed & ended_before  # a goal that had stopped was not driven again
    with Store() as store:
        entries = batch_goals(store, summary["batch_id"])
        for entry in entries:
            assert entry.goal_id is not None
            goal = store.get_goal_by_id(entry.goal_id)
            kinds = Counter(record.event.kind for record in store.events(goal.thread_id, goal_id=goal.goal_id))
            assert kinds["goal_set"] == 1 and kinds["goal_branch"] == 1, entry.name
            intents = [record.event.call_id for record in store.events(goal.thread_id, goal_id=goal.goal_id)
                       if isinstance(record.event, ToolIntentEvent)]
            assert len(set(intents)) == len(intents)  # no tool call ran twice
        assert {entry.goal_id for entry in entries} >= {goal_id for _, goal_id in before.values() if goal_id}


def test_a_worktree_a_killed_run_left_half_made_is_made_again(git_repo: Path, goalkeeper_home: Path) -> None:
    """`git worktree add` killed halfway (a batch killed as its next goal starts) leaves its admin folder locked
    ("initializing"), HEAD a placeholder and the checkout unfinished, or the folder without its `.git` file yet.
    A resume makes such a worktree again for a goal never set there; for a goal that was, it is still an error."""
    commit = start_commit(git_repo)
    checkout_stopped, before_git_file = worktree_path("batch_half", "a"), worktree_path("batch_half", "b")
    for path in (checkout_stopped, before_git_file):
        add_worktree(git_repo, path, commit)
        admin = Path(git(path, "rev-parse", "--absolute-git-dir").strip())
        (admin / "locked").write_text("initializing\n")
        (admin / "HEAD").write_text("0" * 40 + "\n")
    (checkout_stopped / "README.md").unlink()
    (before_git_file / ".git").unlink()
    for path in (checkout_stopped, before_git_file):
        made = ensure_worktree(git_repo, path, None, commit)
        assert git(made, "rev-parse", "HEAD").strip() == commit and (made / "README.md").is_file()
        assert git(made, "status", "--porcelain") == ""
    assert "locked" not in git(git_repo, "worktree", "list", "--porcelain")
    set_before = worktree_path("batch_half", "c")
    set_before.mkdir()
    with pytest.raises(WorkspaceError, match="no longer a git worktree"):
        ensure_worktree(git_repo, set_before, "goal/c", commit)


def test_a_goal_set_by_a_killed_run_before_the_batch_recorded_it_is_taken_up(
        tmp_path: Path, git_repo: Path, goalkeeper_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch killed between setting a goal and recording its id leaves the goal in the worktree, which is the
    entry's alone: the resume runs that goal instead of refusing the worktree as taken."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    [goal] = read_goal_files([goal_file(tmp_path / "goals", "g0", "achieve")])
    with ChatServer(reply_fn=Model()) as server, Store() as store:
        model = ModelSettings(provider="custom", wire_api="chat", model="test-model", base_url=server.base_url,
                              api_key_env="OPENAI_API_KEY")
        commit = start_commit(git_repo)
        path = worktree_path("batch_killed", "g0")
        put_batch(store, str(git_repo), commit, [str(goal.file)], 1, Caps(), model,
                  [NewGoal("g0", str(goal.file), goal.contract, str(path))], "batch_killed")
        workspace = ensure_worktree(git_repo, path, None, commit)
        set_before = service.set_goal(store, workspace, goal.contract, GoalSettings(model=model), lint="linted").goal
        end = resume_batch(store, git_repo, "batch_killed", RunSettings(), Hooks())
    assert [(row.status, row.goal_id) for row in end.rows] == [("achieved", set_before.goal_id)]


def _one_ended_one_running(home: Path) -> dict[str, tuple[str, str | None]] | None:
    """The batch's goals (status, goal id) once one has ended and another is running, else None."""
    with Store() as store:
        try:
            found = latest_batch_any(store)
        except BatchNotFoundError:
            return None
        rows = batch_rows(store, found)
    seen = {row.name: (row.status, row.goal_id) for row in rows}
    statuses_now = [status for status, _ in seen.values()]
    return seen if "achieved" in statuses_now and "pursuing" in statuses_now else None


def latest_batch_any(store: Store) -> str:
    with store._db.read() as conn:
        row = conn.execute("SELECT batch_id FROM batches ORDER BY created_at DESC LIMIT 1").fetchone()
    if row is None:
        raise BatchNotFoundError("no batch yet")
    return str(row[0])


def wait_for(probe: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := probe()) is not None:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


# ---------------------------------------------------------------- shared rate limits


@pytest.mark.slow
def test_a_429_on_one_goal_makes_its_siblings_on_the_same_provider_wait_too(tmp_path: Path, git_repo: Path,
                                                                            goalkeeper_home: Path) -> None:
    goals = tmp_path / "goals"
    goal_file(goals, "a", "achieve")
    goal_file(goals, "b", "achieve")
    retry_after = 2.0

    class Limited(Model):
        """The first request of all gets a 429 with Retry-After; every other first answer is slow, so the other
        goal has a request to make while the limit holds."""

        limited_at: float | None = None

        def reply(self, script: str, answered: int) -> Reply:
            if self.limited_at is None:
                self.limited_at = time.monotonic()
                return Failure.rate_limited(retry_after=str(retry_after))
            step = super().reply(script, answered)
            return Completion(step.text, step.tool_calls, step.usage, delay_s=0.5) \
                if answered == 0 and isinstance(step, Completion) else step

    model = Limited()
    with ChatServer(reply_fn=model) as server:
        done = batch(goalkeeper_home, git_repo, server, str(goals), "--parallel", "2", "--json")
    assert set(statuses(summary_of(done)).values()) == {"achieved"}
    limited_at = model.limited_at
    assert limited_at is not None
    # Requests already on their way when the 429 came may arrive just after it; none is sent while it holds.
    during = [arrival - limited_at for arrival, _, _ in model.arrivals
              if 0.3 < arrival - limited_at < retry_after - 0.05]
    assert not during, f"requests arrived {during} s after the 429, before its {retry_after} s Retry-After"
    # After it: the limited goal's retry and its completion, and at least one request of the other goal.
    assert len([arrival for arrival, _, _ in model.arrivals if arrival >= limited_at + retry_after - 0.05]) >= 3


# ---------------------------------------------------------------- hostile


HOSTILE = """set +e
for target in "$MAIN/.git/hooks/post-checkout" "$MAIN/.git/config" "$MAIN/README.md"; do
  echo 'touch /tmp/pwned-by-batch' >> "$target" && echo "WROTE $target"
done
for sibling in ../*; do
  [ "$sibling" = "../$(basename "$PWD")" ] && continue
  echo 'touch /tmp/pwned-by-batch' >> "$sibling/README.md" && echo "WROTE $sibling/README.md"
  echo pwned > "$sibling/pwned" && echo "WROTE $sibling/pwned"
done
for gitdir in "$MAIN"/.git/worktrees/*; do
  echo '[core]' >> "$gitdir/config" && echo "WROTE $gitdir/config"
  echo 'ref: refs/heads/evil' > "$gitdir/HEAD" && echo "WROTE $gitdir/HEAD"
  echo '#!/bin/sh' > "$gitdir/hooks-pwned" && echo "WROTE $gitdir/hooks-pwned"
done
echo 'gitdir: /tmp/evil' > .git && echo "WROTE .git"
ls "$MAIN/.git/worktrees" | wc -l | sed 's/^/SEEN /'
for fd in /proc/self/fd/*; do readlink "$fd"; done | grep -c '^socket:' | sed 's/^/SOCKETS /'
for pid in /proc/[0-9]*; do tr '\0' ' ' < "$pid/cmdline"; echo; done 2>/dev/null | grep -c 'goalkeeper[ ]batch' \
  | sed 's/^/WORKERS /'
touch done.txt
"""
"""Run by every goal of the batch: each tries the repository's `.git` (hooks, config), the gitdirs of every
worktree, its own `.git` file and its siblings' trees, and looks for the batch's worker processes and the pipes
to them (whose messages are unpickled)."""


@pytest.fixture
def visible_repo(tmp_path: Path) -> Iterator[Path]:
    """A repository outside /tmp, where the sandbox shows it (read-only) as it shows a person's repositories:
    the sandbox's /tmp is private, so one under /tmp would be out of sight rather than protected."""
    folder = Path(tempfile.mkdtemp(prefix="gk-batch-", dir="/var/tmp"))
    try:
        repo = folder / "repo"
        repo.mkdir()
        for args in (["init", "-q", "-b", "main"], ["config", "user.email", "t@example.com"],
                     ["config", "user.name", "T"]):
            git(repo, *args)
        (repo / "README.md").write_text("sample\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "initial")
        yield repo
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_a_batch_goal_cannot_reach_the_repository_git_or_a_sibling_worktree(tmp_path: Path, visible_repo: Path,
                                                                          goalkeeper_home: Path) -> None:
    git_repo = visible_repo
    goals = tmp_path / "goals"
    goal_file(goals, "a", "hostile")
    goal_file(goals, "b", "hostile")
    config_before = (git_repo / ".git" / "config").read_text()
    hostile = call("shell", command=HOSTILE.replace("$MAIN", str(git_repo)))
    scripts: dict[str, list[Reply]] = {**SCRIPTS, "hostile": [hostile, COMPLETE, Completion(text="Done.")]}
    with ChatServer(reply_fn=Model(scripts)) as server:
        done = batch(goalkeeper_home, git_repo, server, str(goals), "--parallel", "2", "--json")
    summary = summary_of(done)
    assert set(statuses(summary).values()) == {"achieved"}, summary
    outputs = [line["payload"]["output"] for line in event_lines(done) if line["kind"] == "tool_result"]
    assert outputs and not any("WROTE" in output for output in outputs), "\n".join(outputs)
    assert sum("SEEN 2" in output for output in outputs) == 2  # each goal did see the real gitdirs
    # Neither the batch's workers nor a descriptor of their pipes reaches a sandboxed command.
    assert sum("SOCKETS 0" in output and "WORKERS 0" in output for output in outputs) == 2, "\n".join(outputs)
    assert not (git_repo / ".git" / "hooks" / "post-checkout").exists()
    assert (git_repo / ".git" / "config").read_text() == config_before
    for goal in summary["goals"]:
        tree = Path(goal["worktree"])
        assert not (tree / "pwned").exists() and (tree / "README.md").read_text() == "sample\n"
        assert (tree / ".git").read_text().startswith(f"gitdir: {git_repo}/.git/worktrees/")
    assert (git_repo / "README.md").read_text() == "sample\n"
    for gitdir in (git_repo / ".git" / "worktrees").iterdir():
        assert not (gitdir / "config").exists() and not (gitdir / "hooks-pwned").exists()
        assert "evil" not in (gitdir / "HEAD").read_text()


# ---------------------------------------------------------------- SIGTERM, then a resume without a worktree


@pytest.mark.slow
def test_sigterm_pauses_every_running_goal_and_resume_remakes_a_deleted_worktree(
        tmp_path: Path, git_repo: Path, goalkeeper_home: Path) -> None:
    goals = tmp_path / "goals"
    for number in range(3):
        goal_file(goals, f"g{number}", "achieve")
    model = Model(delay_s=1.0)
    env = {**os.environ, "GOALKEEPER_HOME": str(goalkeeper_home), "OPENAI_API_KEY": "test-key"}
    with ChatServer(reply_fn=model) as server:
        process = subprocess.Popen([sys.executable, "-m", "goalkeeper", "batch", str(goals), "--parallel", "3",
                                    "--cwd", str(git_repo), "--json", *model_flags(server)], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: True if len({script for _, script, _ in model.arrivals}) == 1
                 and len(model.arrivals) >= 3 else None, timeout=60)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
        stopped = json.loads(out.strip().splitlines()[-1])
        assert process.returncode == 3 and set(statuses(stopped).values()) == {"paused"}, stopped
        assert {goal["reason"] for goal in stopped["goals"]} == {"interrupted"}
        gone = Path(stopped["goals"][0]["worktree"])
        shutil.rmtree(gone)
        done = batch(goalkeeper_home, git_repo, None, "--resume", "--json")
    summary = summary_of(done)
    assert set(statuses(summary).values()) == {"achieved"} and done.returncode == 0
    assert [goal["goal_id"] for goal in summary["goals"]] == [goal["goal_id"] for goal in stopped["goals"]]
    assert (gone / "done.txt").is_file()  # the goal went on in its worktree, made again from its branch


# ---------------------------------------------------------------- worker processes

ENOUGH_CORES = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="a batch forks worker processes from 2 cores")


def _workers(parent: int) -> list[int]:
    """The worker processes of the `gk batch` process `parent`: its children running goalkeeper."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(pid) for pid in children if b"goalkeeper" in _cmdline(int(pid))]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _leases(home: Path, count: int) -> dict[str, int] | None:
    """Goal name → the pid holding its lease, once `count` goals of the latest batch hold one."""
    with Store() as store:
        try:
            found = latest_batch_any(store)
        except BatchNotFoundError:
            return None
        names = {entry.goal_id: entry.name for entry in batch_goals(store, found) if entry.goal_id}
        with store._db.read() as conn:
            rows = conn.execute("SELECT goal_id, pid FROM leases").fetchall()
    held = {names[goal_id]: int(pid) for goal_id, pid in rows if goal_id in names}
    return held if len(held) >= count else None


def _started(goals: Path, repo: Path, server: ChatServer, home: Path) -> subprocess.Popen[str]:
    """`gk batch GOALS --parallel 4 --json` on `repo`, running, in a session of its own."""
    env = {**os.environ, "GOALKEEPER_HOME": str(home), "OPENAI_API_KEY": "test-key"}
    return subprocess.Popen([sys.executable, "-m", "goalkeeper", "batch", str(goals), "--parallel", "4", "--json",
                             "--cwd", str(repo), *model_flags(server)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@contextlib.contextmanager
def _running(tmp_path: Path, git_repo: Path, home: Path, count: int) -> Iterator[tuple[subprocess.Popen[str],
                                                                                      dict[str, int]]]:
    """A batch of `count` goals against a slow model, once every goal holds its lease: the `gk batch` process and
    each goal's lease holder (goal name → pid). The model answers until the block ends, and the batch's process
    group is killed then."""
    goals = tmp_path / "goals"
    for number in range(count):
        goal_file(goals, f"g{number}", "achieve")
    with ChatServer(reply_fn=Model(delay_s=1.5)) as server:
        process = _started(goals, git_repo, server, home)
        try:
            yield process, wait_for(lambda: _leases(home, count), timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


@ENOUGH_CORES
@pytest.mark.slow
def test_a_worker_process_that_dies_crashes_only_its_own_goals_and_resume_runs_them_again(
        tmp_path: Path, git_repo: Path, goalkeeper_home: Path) -> None:
    """The goals run in worker processes, not the batch's (their leases name the workers); a worker killed
    mid-goal ends its goals `crashed`, saying how it died; the other worker's goals go on to their end; a resume
    runs the crashed ones again, and no tool call runs twice."""
    with _running(tmp_path, git_repo, goalkeeper_home, 4) as (process, held):
        workers = _workers(process.pid)
        assert len(workers) == 2 and set(held.values()) == set(workers), (held, workers)
        victim = held["g0"]
        os.kill(victim, signal.SIGKILL)
        out, err = process.communicate(timeout=90)
        summary = json.loads(out.strip().splitlines()[-1])
        crashed = {goal["name"]: goal["error"] for goal in summary["goals"] if goal["status"] == "crashed"}
        assert set(crashed) == {name for name, pid in held.items() if pid == victim}, (summary, err[-2000:])
        assert all(f"worker process ({victim}) was killed by SIGKILL" in error for error in crashed.values())
        assert {goal["status"] for goal in summary["goals"] if goal["name"] not in crashed} == {"achieved"}
        assert process.returncode == 4
        done = batch(goalkeeper_home, git_repo, None, "--resume", "--json")
    again = summary_of(done)
    assert set(statuses(again).values()) == {"achieved"} and done.returncode == 0
    with Store() as store:
        for entry in batch_goals(store, again["batch_id"]):
            assert entry.goal_id is not None
            goal = store.get_goal_by_id(entry.goal_id)
            intents = [record.event.call_id for record in store.events(goal.thread_id, goal_id=goal.goal_id)
                       if isinstance(record.event, ToolIntentEvent)]
            assert len(set(intents)) == len(intents), entry.name  # no tool call ran twice


@ENOUGH_CORES
@pytest.mark.slow
def test_the_worker_processes_die_with_the_batch_and_resume_finishes_it(tmp_path: Path, git_repo: Path,
                                                                        goalkeeper_home: Path) -> None:
    """SIGKILL to the `gk batch` process alone (not its group): its workers die with it at once, as its threads
    would, so no goal runs on unwatched; a resume finishes every goal."""
    with _running(tmp_path, git_repo, goalkeeper_home, 2) as (process, _):
        workers = _workers(process.pid)
        assert len(workers) == 2
        process.kill()
        process.communicate(timeout=30)
        wait_for(lambda: True if all(_gone(pid) for pid in workers) else None, timeout=5)
        done = batch(goalkeeper_home, git_repo, None, "--resume", "--json")
    assert set(statuses(summary_of(done)).values()) == {"achieved"} and done.returncode == 0
