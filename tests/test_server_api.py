"""The HTTP API (`gk serve`): the token on every route, every goal operation through control.py, reads of a
real run, and server-sent events that resume with Last-Event-ID without gaps or repeats.

httpx against the app in-process (ASGI), plus a real uvicorn on a free port for the streams.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import socket
import stat
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.routing import APIRoute

from goalkeeper.events import ChatMessageEvent, Event, NudgeEvent
from goalkeeper.run.runner import Runner
from goalkeeper.server import close_app, create_app, ensure_token, is_loopback, read_token
from goalkeeper.server.app import bind
from goalkeeper.store import Store
from scenario import HONEST_FIX, TESTS, events, new_goal, run, sample_repo, scripted, shell, step

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def store(goalkeeper_home: Path) -> Iterator[Store]:
    with Store() as opened:
        yield opened


@pytest.fixture
def app(store: Store) -> Iterator[FastAPI]:
    built = create_app(token=TOKEN, poll_s=0.02)
    yield built
    close_app(built)


@asynccontextmanager
async def client_of(app: FastAPI, headers: dict[str, str] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gk", headers=AUTH if headers is None
                                 else headers) as client:
        yield client


def call(app: FastAPI, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        async with client_of(app, headers) as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


# ---------------------------------------------------------------- the token


def test_every_data_route_answers_401_without_the_token(app: FastAPI) -> None:
    routes = [(method, route.path) for route in _routes(app) for method in sorted(route.methods or ())
              if route.path != "/"]
    assert len(routes) >= 15 and ("GET", "/openapi.json") in routes
    for method, path in routes:
        concrete = re.sub(r"\{[^}]+\}", "thr_x", path)
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            answer = call(app, method, concrete, headers=headers, json={})
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert answer.headers["www-authenticate"] == "Bearer"
            assert answer.json()["detail"]


def test_the_dashboard_page_and_its_files_need_no_token(app: FastAPI) -> None:
    # They hold no data (docs/decisions.md): the page asks for the token and keeps it in the browser session.
    assert call(app, "GET", "/", headers={}).status_code in (200, 404)
    assert call(app, "GET", "/static/no-such-file.js", headers={}).status_code == 404
    # Normalised to /state.db, which is no dashboard file: without the token, a 401 before any lookup.
    assert call(app, "GET", "/static/../../state.db", headers={}).status_code in (401, 404)


def test_the_token_is_made_once_with_mode_0600_and_read_back(goalkeeper_home: Path) -> None:
    assert read_token() is None
    token, created = ensure_token()
    path = goalkeeper_home / "server-token"
    assert created and len(token) >= 40 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_token() == (token, False) and read_token() == token
    path.chmod(0o644)
    assert read_token() == token and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_only_loopback_is_served_without_allow_remote() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10") and not is_loopback("example.com")
    with pytest.raises(Exception, match="not a loopback address"):
        bind("0.0.0.0", 0, allow_remote=False)
    bind("0.0.0.0", 0, allow_remote=True).close()


def test_gk_serve_refuses_a_remote_host_and_show_token_needs_a_token(goalkeeper_home: Path) -> None:
    from scenario import gk

    refused = gk("serve", "--host", "0.0.0.0", "--port", "8765", home=goalkeeper_home)
    assert refused.returncode == 4 and "not a loopback address" in refused.stderr and "--allow-remote" in refused.stderr
    missing = gk("serve", "--show-token", home=goalkeeper_home)
    assert missing.returncode == 4 and "gk serve" in missing.stderr
    token, _ = ensure_token()
    shown = gk("serve", "--show-token", home=goalkeeper_home)
    assert shown.returncode == 0 and shown.stdout.strip() == token


# ---------------------------------------------------------------- threads and goals


def test_threads_are_listed_newest_first_with_their_goals(app: FastAPI, store: Store, tmp_path: Path) -> None:
    repo = sample_repo(tmp_path)
    goal = new_goal(store, repo)
    other = store.create_thread(tmp_path)
    listed = call(app, "GET", "/threads").json()
    assert [t["thread_id"] for t in listed] == [other.thread_id, goal.thread_id]
    assert listed[0]["goal"] is None
    shown = listed[1]["goal"]
    assert shown["goal_id"] == goal.goal_id and shown["status"] == "pursuing" and shown["checks_total"] == 1
    assert call(app, "GET", f"/threads/{goal.thread_id}").json()["goal"]["objective"] == "Fix the discount bug"
    missing = call(app, "GET", "/threads/thr_nope")
    assert missing.status_code == 404 and "no thread" in missing.json()["detail"]
    assert call(app, "GET", f"/threads/{other.thread_id}/goal").status_code == 404


def test_a_goal_is_set_as_gk_goal_sets_it_and_not_run(app: FastAPI, store: Store, tmp_path: Path) -> None:
    repo = sample_repo(tmp_path)
    thread = store.create_thread(repo)
    path = f"/threads/{thread.thread_id}/goal"
    body = {"objective": "Fix the discount bug", "checks": [f"tests={TESTS}"], "protect": ["tests/**"],
            "budget_tokens": 50_000, "budget_time": "30m"}
    answer = call(app, "PUT", path, json=body)
    assert answer.status_code == 200, answer.text
    goal = answer.json()
    assert goal["status"] == "pursuing" and goal["tokens_budget"] == 50_000 and goal["time_budget_s"] == 1800
    assert goal["contract"]["boundaries"]["protect"] == ["tests/**"] and goal["runner"] is None
    assert goal["run_command"] == f"gk run --cwd {shlex.quote(str(repo.resolve()))}"  # nothing runs it: how to
    assert answer.headers["x-goalkeeper-next"] == f"gk run --thread {thread.thread_id}"
    assert [e.event.kind for e in store.events(thread.thread_id)] == ["goal_set", "status_changed"]

    again = call(app, "PUT", path, json=body)
    assert again.status_code == 409 and "already has a goal" in again.json()["detail"]
    replaced = call(app, "PUT", path, json={"toml": 'outcome = "From TOML"\n[[checks]]\nname = "t"\nrun = "true"\n',
                                            "replace": True})
    assert replaced.status_code == 200 and replaced.json()["objective"] == "From TOML"
    assert replaced.json()["goal_id"] != goal["goal_id"]


def test_setting_a_goal_refuses_what_gk_goal_refuses(app: FastAPI, store: Store, tmp_path: Path) -> None:
    repo = sample_repo(tmp_path)
    path = f"/threads/{store.create_thread(repo).thread_id}/goal"
    missing = call(app, "PUT", path, json={"objective": "x", "checks": ["t=no-such-program-here --flag"]})
    assert missing.status_code == 422
    assert missing.json()["detail"] == "check `t` runs `no-such-program-here`, which is not a command here"
    assert call(app, "PUT", path, json={"checks": ["t=true"]}).status_code == 422  # no objective
    unknown = call(app, "PUT", path, json={"objective": "x", "chekcs": ["t=true"]})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["loc"] == ["body", "chekcs"]
    (repo / "cart.py").write_text("# uncommitted\n")
    dirty = call(app, "PUT", path, json={"objective": "x", "checks": ["t=true"]})
    assert dirty.status_code == 409 and "--allow-dirty" in (dirty.json()["hint"] or "")
    assert call(app, "PUT", path, json={"objective": "x", "checks": ["t=true"],
                                        "allow_dirty": True}).status_code == 200


def test_pause_resume_budget_and_clear_apply_at_once_without_a_runner(app: FastAPI, store: Store,
                                                                      tmp_path: Path) -> None:
    goal = new_goal(store, sample_repo(tmp_path), budget_turns=3)
    base = f"/threads/{goal.thread_id}/goal"
    assert call(app, "POST", f"{base}/pause").json() == {"status": "paused", "applied": True, "applied_by": "here"}
    assert call(app, "POST", f"{base}/pause").status_code == 409  # a paused goal cannot be paused again
    assert call(app, "POST", f"{base}/resume").json()["status"] == "pursuing"
    raised = call(app, "POST", f"{base}/budget", json={"add_turns": 2, "add_tokens": 1000})
    assert raised.status_code == 200 and raised.json()["applied"]
    shown = call(app, "GET", base).json()
    assert shown["turns_budget"] == 5 and shown["tokens_budget"] is None  # no token limit stays no limit
    assert call(app, "POST", f"{base}/budget", json={}).status_code == 422
    assert call(app, "POST", f"{base}/budget", json={"add_turns": -1}).status_code == 422
    assert call(app, "POST", f"{base}/clear").json() == {"status": None, "applied": True, "applied_by": "here"}
    assert call(app, "GET", base).status_code == 404
    assert call(app, "POST", f"{base}/pause").status_code == 404
    kinds = [e.event.kind for e in events(store, goal)]
    assert kinds.count("status_changed") == 3 and kinds[-1] == "goal_cleared"


def test_a_running_runner_honours_a_pause_from_the_api_at_its_next_boundary(app: FastAPI, store: Store,
                                                                           tmp_path: Path) -> None:
    repo = sample_repo(tmp_path)
    goal = new_goal(store, repo)
    slow = scripted([step("", shell("sleep 0.3")) for _ in range(40)])
    results: list[Any] = []
    runner = threading.Thread(target=lambda: results.append(
        asyncio.run(Runner(store, store.get_goal_by_id(goal.goal_id), slow, repo, handle_signals=False).run())))
    runner.start()
    try:
        _wait_for(lambda: events(store, goal, "tool_result"))
        held = call(app, "GET", f"/threads/{goal.thread_id}/goal").json()
        assert held["runner"] and held["run_command"] is None
        paused = call(app, "POST", f"/threads/{goal.thread_id}/goal/pause")
        assert paused.status_code == 200 and paused.json()["applied_by"] in ("runner", "queued")
    finally:
        runner.join(30)
    assert results and results[0].status == "paused" and results[0].reason == "user_pause"
    applied = events(store, goal, "control_applied")
    assert applied and applied[0].event.actor == "harness"  # the runner applied it, not the server


def test_resume_force_reopens_and_resume_with_a_raise_lifts_a_budget_limit(app: FastAPI, store: Store,
                                                                           tmp_path: Path) -> None:
    repo = sample_repo(tmp_path)
    goal = new_goal(store, repo)
    assert run(store, goal, repo, scripted(HONEST_FIX)).status == "achieved"
    base = f"/threads/{goal.thread_id}/goal"
    assert call(app, "POST", f"{base}/resume").status_code == 409
    reopened = call(app, "POST", f"{base}/resume", json={"force": True})
    assert reopened.status_code == 200 and reopened.json()["status"] == "pursuing"

    limited = new_goal(store, repo, budget_turns=1)
    assert run(store, limited, repo, scripted([step("", shell("ls")), step("looked"), step("summary")])).status \
        == "budget_limited"
    assert call(app, "POST", f"{base}/resume").status_code == 409  # the budget is still used up
    resumed = call(app, "POST", f"{base}/resume", json={"add_turns": 5})
    assert resumed.json()["status"] == "pursuing" and call(app, "GET", base).json()["turns_budget"] == 6


# ---------------------------------------------------------------- what a run left


def test_events_checkpoints_evidence_report_and_diff_of_a_real_run(app: FastAPI, store: Store,
                                                                   tmp_path: Path) -> None:
    repo = sample_repo(tmp_path)
    goal = new_goal(store, repo)
    assert run(store, goal, repo, scripted(HONEST_FIX)).status == "achieved"
    base = f"/threads/{goal.thread_id}"
    every = [e.seq for e in store.events(goal.thread_id)]
    first = call(app, "GET", f"{base}/events", params={"limit": 5}).json()
    assert [e["seq"] for e in first["events"]] == every[:5] and first["next_after"] == every[4]
    rest = call(app, "GET", f"{base}/events", params={"after": first["next_after"], "limit": 500}).json()
    assert [e["seq"] for e in rest["events"]] == every[5:]
    assert call(app, "GET", f"{base}/events", params={"after": every[-1]}).json() == \
        {"events": [], "next_after": every[-1]}
    assert call(app, "GET", f"{base}/events", params={"limit": 501}).status_code == 422

    shown = call(app, "GET", f"{base}/goal").json()
    assert shown["status"] == "achieved" and shown["checks_passing"] == 1
    assert shown["last_checkpoint"].startswith("turn")
    assert shown["evidence"][0] == {"name": "tests", "kind": "check", "passed": True, "exit_code": 0, "metric": None,
                                    "target": None, "duration_s": shown["evidence"][0]["duration_s"], "error": None}
    checkpoints = call(app, "GET", f"{base}/checkpoints").json()
    assert checkpoints and checkpoints[-1]["note"]["done"] == "fixed apply_discount"
    runs = call(app, "GET", f"{base}/evidence").json()
    assert runs[0]["kind"] == "baseline" and not runs[0]["evidence"][0]["passed"] and runs[-1]["evidence"][0]["passed"]
    report = call(app, "GET", f"{base}/report")
    assert report.json()["status"] == "achieved"
    markdown = call(app, "GET", f"{base}/report", params={"format": "markdown"})
    assert markdown.headers["content-type"].startswith("text/markdown") and markdown.text.startswith("# Goal report")
    assert call(app, "GET", f"{base}/report", params={"format": "pr"}).text.startswith("Fix the discount bug")
    diff = call(app, "GET", f"{base}/diff").json()
    assert diff["branch"].startswith("goal/") and "percent / 100" in diff["diff"] and len(diff["head"]) == 40
    assert call(app, "GET", f"{base}/diff", params={"turn": 99}).status_code == 409
    assert call(app, "GET", f"{base}/checkpoints", params={"goal_id": "goal_other"}).status_code == 404


# ---------------------------------------------------------------- server-sent events


@contextmanager
def real_server(app: FastAPI) -> Iterator[str]:
    """`app` on uvicorn at a free loopback port, in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    _wait_for(lambda: server.started)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


async def read_events(url: str, count: int, headers: dict[str, str] | None = None,
                      timeout: float = 30) -> list[dict[str, Any]]:
    """The first `count` events of the stream at `url`: each `{"id", "event", "data"}`."""
    return await asyncio.wait_for(_read_events(url, count, headers), timeout)


async def _read_events(url: str, count: int, headers: dict[str, str] | None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=None) as client, \
            client.stream("GET", url, headers={**AUTH, **(headers or {})}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if not line:
                if current:
                    found.append(current)
                    current = {}
                if len(found) == count:
                    return found
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                current[field] = json.loads(value) if field == "data" else value
    return found


def append(store: Store, thread_id: str, count: int, live: bool = False) -> list[int]:
    """`count` events: nudges, or chat messages when `live`."""
    events: list[Event] = [ChatMessageEvent(content=str(n)) if live else NudgeEvent(why=str(n)) for n in range(count)]
    return [r.seq for r in store.append_events(thread_id, events)]


def test_a_stream_replays_the_thread_then_follows_it_and_resumes_with_last_event_id(app: FastAPI,
                                                                                    store: Store) -> None:
    thread = store.create_thread(Path("/tmp"))
    other = store.create_thread(Path("/var"))
    history = append(store, thread.thread_id, 3)

    async def scenario(base: str) -> None:
        url = f"{base}/threads/{thread.thread_id}/events/stream"
        reading = asyncio.create_task(read_events(url, 6))
        while not app.state.broadcaster.subscribers:
            await asyncio.sleep(0.02)
        append(store, other.thread_id, 2)  # never on this stream
        live = append(store, thread.thread_id, 3, live=True)
        got = await reading
        assert [int(e["id"]) for e in got] == history + live
        assert [e["event"] for e in got] == ["nudge"] * 3 + ["chat_message"] * 3
        assert got[0]["data"]["thread_id"] == thread.thread_id and got[0]["data"]["payload"] == {"why": "0"}

        # Disconnected after live[0]; more events are committed; reconnecting resumes right after it.
        later = append(store, thread.thread_id, 4)
        resumed = await read_events(url, 6, headers={"Last-Event-ID": str(live[0])})
        assert [int(e["id"]) for e in resumed] == [*live[1:], *later]
        by_query = await read_events(f"{url}?after={live[1]}", 5)
        assert [int(e["id"]) for e in by_query] == [live[2], *later]

    with real_server(app) as base:
        asyncio.run(scenario(base))


def test_the_all_threads_stream_starts_now_and_many_streams_get_every_event_once(app: FastAPI,
                                                                                 store: Store) -> None:
    first = store.create_thread(Path("/tmp"))
    second = store.create_thread(Path("/var"))
    append(store, first.thread_id, 2)  # before anyone listens: not on a stream that starts now

    async def scenario(base: str) -> None:
        readers = [asyncio.create_task(read_events(f"{base}/events/stream", 40)) for _ in range(5)]
        while len(app.state.broadcaster.subscribers) < 5:  # each stream starts at "now": let all five start
            await asyncio.sleep(0.02)
        sent: list[int] = []
        for _ in range(10):  # interleaved commits from two threads, while the poller runs
            sent += append(store, first.thread_id, 2) + append(store, second.thread_id, 2)
            await asyncio.sleep(0.01)
        for reader in readers:
            assert [int(e["id"]) for e in await reader] == sent

    with real_server(app) as base:
        asyncio.run(scenario(base))


def test_an_idle_stream_sends_keep_alive_comments(store: Store) -> None:
    thread = store.create_thread(Path("/tmp"))
    app = create_app(token=TOKEN, poll_s=0.02, keep_alive_s=0.2)

    async def first_lines(url: str) -> list[str]:
        lines: list[str] = []
        async with httpx.AsyncClient(timeout=None) as client, client.stream("GET", url, headers=AUTH) as response:
            async for line in response.aiter_lines():
                lines.append(line)
                if line.startswith(":"):
                    return lines
        return lines

    try:
        with real_server(app) as base:
            lines = asyncio.run(asyncio.wait_for(first_lines(f"{base}/threads/{thread.thread_id}/events/stream"), 20))
        assert lines[-1].startswith(": ping")  # a comment: EventSource ignores it; it keeps the connection open
    finally:
        close_app(app)


def test_gk_serve_prints_its_address_and_the_token_only_the_first_time(goalkeeper_home: Path) -> None:
    from scenario import gk_popen

    first = gk_popen("serve", "--port", str(_free_port()), home=goalkeeper_home)  # --port 0 is refused
    try:
        assert first.stdout is not None
        announced, token_line = first.stdout.readline(), first.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", announced)
        assert found, announced
        token = token_line.rsplit(" ", 1)[-1].strip()
        assert "printed once" in token_line and token == read_token()
        _wait_for(lambda: _answers(found.group(0) + "threads", token))
    finally:
        first.terminate()
        first.wait(20)
    second = gk_popen("serve", "--port", str(_free_port()), home=goalkeeper_home)
    try:
        assert second.stdout is not None
        assert "goalkeeper server:" in second.stdout.readline()
    finally:
        second.terminate()
        rest = second.communicate(timeout=20)[0]
    assert token not in rest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str, token: str) -> bool:
    try:
        return httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_stream_of_an_unknown_thread_is_404_and_a_bad_last_event_id_422(app: FastAPI) -> None:
    assert call(app, "GET", "/threads/thr_nope/events/stream").status_code == 404
    assert call(app, "GET", "/events/stream", headers={**AUTH, "Last-Event-ID": "x"}).status_code == 422


def _routes(app: FastAPI) -> list[APIRoute]:
    """Every API route, those of included routers too (FastAPI keeps included routers as one entry each)."""
    found: list[APIRoute] = []
    for route in app.routes:
        original = getattr(route, "original_router", None)
        found += [r for r in (original.routes if original else [route]) if isinstance(r, APIRoute)]
    return found


def _wait_for(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)
