"""Notifications (`[[notify]]` in config.toml): signed webhooks with retries, every attempt an event, never
blocking the run, and delivered by `gk exec` with no server running.

A real local receiver (http.server in a thread) answers as each test plans: a status code, or never.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from goalkeeper.config.load import load_config
from goalkeeper.config.resolve import scripted_settings
from goalkeeper.config.trust import trust
from goalkeeper.errors import ConfigError
from goalkeeper.events import NotifyAttemptEvent, StatusChangedEvent, payload_of
from goalkeeper.run.engine import run_goal
from goalkeeper.run.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, shown_url, sign, verify_signature
from goalkeeper.store import EventRecord, Store
from helpers import git
from scenario import HONEST_FIX, TESTS, gk, new_goal, sample_repo, write_script

SECRET = "s3cret"


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each request with the next planned status code; "hang" never answers; then 200."""

    plan: list[int | str]
    received: list[Received] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(plan=[])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.received.append(Received(time.monotonic(), dict(self.headers), body))
            answer = state.plan.pop(0) if state.plan else 200
            if answer == "hang":
                state.released.wait(60)
                return
            self.send_response(int(answer))
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    state.released.set()
    server.shutdown()
    server.server_close()


def configure(home: Path, url: str, **extra: Any) -> None:
    """Write `$GOALKEEPER_HOME/config.toml` with one [[notify]] table (and any top-level keys first)."""
    top = {k: v for k, v in extra.items() if k in ("notify_wait_s", "server_url")}
    table = {"url": url, **{k: v for k, v in extra.items() if k not in top}}
    lines = [f"{k} = {json.dumps(v)}" for k, v in top.items()] + ["[[notify]]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    (home / "config.toml").write_text("\n".join(lines) + "\n")


def run_honest_fix(tmp_path: Path) -> tuple[Store, Any, float]:
    """Run the sample goal to `achieved` through the local engine (as `gk run` does); returns when it ended."""
    repo = sample_repo(tmp_path)
    store = Store()
    goal = new_goal(store, repo, objective="Fix the discount bug")
    model = scripted_settings(str(write_script(tmp_path / "script.json", HONEST_FIX)))
    result = run_goal(store, goal, repo, model)
    assert result.status == "achieved"
    return store, goal, time.time()


def attempts(store: Store, goal: Any) -> list[EventRecord]:
    return store.events(goal.thread_id, goal_id=goal.goal_id, kinds=[NotifyAttemptEvent])


def test_a_signed_json_notification_carries_the_goal_and_its_signature_verifies(
        tmp_path: Path, goalkeeper_home: Path, receiver: Receiver) -> None:
    configure(goalkeeper_home, receiver.url, secret=SECRET, server_url="http://127.0.0.1:8765")
    store, goal, _ = run_honest_fix(tmp_path)
    [request] = receiver.received
    timestamp, signature = request.headers[TIMESTAMP_HEADER], request.headers[SIGNATURE_HEADER]
    assert verify_signature(SECRET, timestamp, request.body, signature)
    assert not verify_signature("wrong", timestamp, request.body, signature)
    assert not verify_signature(SECRET, timestamp, request.body + b" ", signature)
    assert not verify_signature(SECRET, timestamp, request.body, signature, now=int(timestamp) + 3600)
    payload = request.json
    assert payload["goal_id"] == goal.goal_id and payload["status"] == "achieved"
    assert payload["reason"] == "checks_passed" and payload["objective"] == "Fix the discount bug"
    assert payload["evidence"]["checks_passing"] == 1 and payload["evidence"]["items"][0]["name"] == "tests"
    assert payload["report_url"] == f"http://127.0.0.1:8765/#/threads/{goal.thread_id}"
    [event] = attempts(store, goal)
    stored = payload_of(event.event)
    assert stored["delivered"] and stored["status_code"] == 200 and stored["attempt"] == 1
    assert payload_of(event.event)["url"] == receiver.url


def test_a_500_is_retried_with_backoff_and_every_attempt_is_an_event(
        tmp_path: Path, goalkeeper_home: Path, receiver: Receiver) -> None:
    receiver.plan = [500, 503, 200]
    configure(goalkeeper_home, receiver.url, events=["achieved"])
    store, goal, _ = run_honest_fix(tmp_path)
    assert len(receiver.received) == 3
    gaps = [b.at - a.at for a, b in zip(receiver.received, receiver.received[1:], strict=False)]
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95  # 0.5 s, then 1 s
    stored = [payload_of(e.event) for e in attempts(store, goal)]
    recorded = [(p["attempt"], p["status_code"], p["delivered"]) for p in stored]
    assert recorded == [(1, 500, False), (2, 503, False), (3, 200, True)]


def test_a_receiver_that_never_answers_costs_the_run_at_most_the_wait(
        tmp_path: Path, goalkeeper_home: Path, receiver: Receiver) -> None:
    receiver.plan = ["hang"]
    configure(goalkeeper_home, receiver.url, notify_wait_s=1, timeout_s=30)
    store, goal, ended = run_honest_fix(tmp_path)
    [achieved] = [e for e in store.events(goal.thread_id, kinds=[StatusChangedEvent])
                  if isinstance(e.event, StatusChangedEvent) and e.event.to == "achieved"]
    assert ended - achieved.ts < 1 + 2.5  # the wait, plus the runner's own wind-down on a loaded machine
    [abandoned] = attempts(store, goal)
    assert not payload_of(abandoned.event)["delivered"] and payload_of(abandoned.event)["error"].startswith("abandoned")


def test_gk_exec_delivers_a_slack_notification_with_no_server_running(
        tmp_path: Path, goalkeeper_home: Path, receiver: Receiver) -> None:
    configure(goalkeeper_home, receiver.url, format="slack", events=["achieved", "unmet"])
    repo = sample_repo(tmp_path)
    script = write_script(tmp_path / "script.json", HONEST_FIX)
    done = gk("exec", "Fix the discount bug", "--check", f"tests={TESTS}", "--model", f"scripted:{script}",
              "--cwd", str(repo), home=goalkeeper_home)
    assert done.returncode == 0, done.stdout + done.stderr
    [request] = receiver.received
    payload = request.json
    assert payload["text"].startswith("Goal achieved: Fix the discount bug")
    assert payload["blocks"][0]["type"] == "header"
    assert any("gk report --thread" in json.dumps(block) for block in payload["blocks"])


def test_a_status_no_target_asked_for_sends_nothing(tmp_path: Path, goalkeeper_home: Path,
                                                    receiver: Receiver) -> None:
    configure(goalkeeper_home, receiver.url, events=["unmet"])
    store, goal, _ = run_honest_fix(tmp_path)
    assert receiver.received == [] and attempts(store, goal) == []


def test_signatures_urls_and_config() -> None:
    body = b'{"a": 1}'
    assert sign("k", "1700000000", body) == sign("k", "1700000000", body) != sign("k", "1700000001", body)
    assert sign("k", "1", body).startswith("sha256=") and len(sign("k", "1", body)) == 7 + 64
    assert not verify_signature("k", "not-a-time", body, sign("k", "1", body))
    assert shown_url("https://hooks.slack.com/services/T0/B0/XXXX?x=1") == "https://hooks.slack.com/services/…"
    assert shown_url("http://user:pw@127.0.0.1:9/hook") == "http://127.0.0.1:9/hook"


def test_notify_tables_are_checked_and_add_up_across_layers(tmp_path: Path, goalkeeper_home: Path) -> None:
    configure(goalkeeper_home, "http://127.0.0.1:9/user")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    git(workspace, "init", "-q", "-b", "main")
    trust(goalkeeper_home, workspace)  # an untrusted project's [[notify]] is ignored (test_containment_config.py)

    def project(text: str) -> None:  # only the committed version is read
        (workspace / ".goalkeeper").mkdir(exist_ok=True)
        (workspace / ".goalkeeper" / "config.toml").write_text(text)
        git(workspace, "add", "-A")
        git(workspace, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "config")

    project('[[notify]]\nurl = "http://127.0.0.1:9/project"\nformat = "slack"\n')
    config = load_config(workspace)
    assert [(t.url, t.format) for t in config.notify] == [("http://127.0.0.1:9/user", "json"),
                                                          ("http://127.0.0.1:9/project", "slack")]
    assert config.notify[0].events == ["achieved", "unmet", "budget_limited", "paused"]
    assert config.notify_wait_s == 10.0
    project('[[notify]]\nurl = "http://x/h"\nevents = ["achieve"]\n')
    with pytest.raises(ConfigError, match="did you mean `achieved`"):
        load_config(workspace)
    project('[[notify]]\nurl = "ftp://x/h"\n')
    with pytest.raises(ConfigError, match="notify"):
        load_config(tmp_path / "ws")


def test_a_slack_payload_shows_the_objective_and_check_names_literally() -> None:
    """`<!channel>` or a `<url|link>` in an objective (the model can shape the evidence names too) never pings
    or links in Slack: its three control characters are escaped."""
    from goalkeeper.run.notify import Notice

    notice = Notice(goal_id="goal_1", thread_id="thr_1", objective="<!channel> fix <https://evil.example|this> & more",
                    status="achieved", previous="pursuing", reason="checks_passed", actor="harness", seq=9,
                    verified=True, checks_passing=1, checks_total=1,
                    evidence=[{"name": "<!here>", "passed": True, "metric": None}])
    payload = json.dumps(notice.as_slack())
    assert "<!channel>" not in payload and "<!here>" not in payload and "<https://evil" not in payload
    assert "&lt;!channel&gt; fix &lt;https://evil.example|this&gt; &amp; more" in notice.as_slack()["text"]
