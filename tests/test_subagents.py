"""Child agents (`spawn_agent`): bounded by [agents] max_threads and max_depth, held to their paths by the file
tools and by the sandbox, charged to the parent goal exactly as the model server bills them, stopped by the
parent's pause, and returned to the parent as a summary plus the files they changed.

The model is a real local Chat Completions server (tests/chat_server.py) that answers the parent from one
script and each child from its own, recognised by the task in the child's opening message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chat_server import ChatServer, Completion, ToolCallReply, UsageReply
from goalkeeper.config.load import load_config
from goalkeeper.errors import ConfigError
from goalkeeper.events import ControlRequestEvent, SubagentEndedEvent, SubagentStartedEvent, payload_of
from goalkeeper.goals.views import summarize
from goalkeeper.models.openai_chat import OpenAIChatModel
from goalkeeper.run.runner import Runner
from goalkeeper.spec.settings import AgentSettings, GoalSettings, ModelSettings, RunSettings
from goalkeeper.store import EventRecord, Goal, Store
from goalkeeper.tools.agents import writable_root
from goalkeeper.tools.paths import BoundaryRefused, PathRefused
from helpers import git
from scenario import FIX_PATCH, events, new_goal, sample_repo


def spawn(task: str, *paths: str) -> ToolCallReply:
    return ToolCallReply("spawn_agent", {"task": task, "paths": list(paths)})


def calls(*replies: ToolCallReply) -> Completion:
    return Completion(tool_calls=replies)


BLOCKED = calls(ToolCallReply("update_goal", {"status": "blocked", "summary": "s", "blocker": "the test ends here"}))


class Router:
    """The server's side: the parent's requests answered from `parent`, each child's from `children[task]`, both
    by the number of assistant messages the request carries; every request billed as it is reported."""

    def __init__(self, parent: list[Completion], children: dict[str, list[Completion]],
                 on_child: dict[str, Callable[[int], None]] | None = None) -> None:
        self.parent, self.children, self.on_child = parent, children, on_child or {}
        self.tokens = 0
        self.bodies: dict[str, list[dict[str, Any]]] = {"parent": []}

    def __call__(self, body: dict[str, Any]) -> Completion:
        messages = body["messages"]
        task = next((task for task in self.children for m in messages
                     if m["role"] == "user" and f"<task>\n{task}\n</task>" in str(m.get("content"))), None)
        self.bodies.setdefault(task or "parent", []).append(body)
        script = self.children[task] if task else self.parent
        answered = sum(m["role"] == "assistant" for m in messages)
        if task in self.on_child:
            self.on_child[task](answered)
        reply = script[min(answered, len(script) - 1)]
        prompt, completion = len(json.dumps(messages)) // 4, 7 + answered
        self.tokens += prompt + completion
        billed: Completion = dataclasses.replace(reply, usage=UsageReply(prompt_tokens=prompt,
                                                                          completion_tokens=completion))
        return billed


def goal_on(store: Store, workspace: Path, max_threads: int = 3) -> Goal:
    goal = new_goal(store, workspace, no_progress_turns=20)
    agents = AgentSettings(max_threads=max_threads, max_depth=1)
    settings = GoalSettings(model=ModelSettings(model="test-model"),
                            run=RunSettings(heartbeat_s=0.2, control_poll_s=0.05, agents=agents))
    store.commit(goal.goal_id, [], settings=settings)
    return store.get_goal_by_id(goal.goal_id)


def run_on(server: ChatServer, store: Store, goal: Goal, workspace: Path) -> str | None:
    model = OpenAIChatModel("test-model", server.base_url, "key")
    return asyncio.run(Runner(store, store.get_goal_by_id(goal.goal_id), model, workspace).run()).status


def spawn_results(store: Store, goal: Goal) -> list[dict[str, Any]]:
    results = [payload_of(e.event) for e in events(store, goal, "tool_result")]
    return [result for result in results if result["name"] == "spawn_agent"]


def child_events(store: Store, goal: Goal, task: str) -> list[EventRecord]:
    [started] = [e.event for e in events(store, goal, "subagent_started")
                 if isinstance(e.event, SubagentStartedEvent) and e.event.task == task]
    return store.events(started.child_thread_id)


@pytest.mark.slow  # a whole goal to achieved, its checks run twice
def test_a_child_fixes_its_file_and_the_goal_is_charged_exactly_what_the_server_billed(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    router = Router([calls(spawn("fix the discount", "cart.py")),
                     calls(ToolCallReply("update_goal", {"status": "complete", "summary": "fixed"})),
                     Completion(text="Done.")],
                    {"fix the discount": [calls(ToolCallReply("apply_patch", {"patch": FIX_PATCH})),
                                          Completion(text="cart.py now divides by 100")]})
    with ChatServer(reply_fn=router) as server, Store() as store:
        goal = goal_on(store, workspace)
        status = run_on(server, store, goal, workspace)
        state = store.get_goal_by_id(goal.goal_id).state
        [result] = spawn_results(store, goal)
        summary = summarize(store, store.get_goal_by_id(goal.goal_id))
        usage = [payload_of(e.event) for e in events(store, goal, "subagent_usage")]
        thread = store.current_thread(workspace)
    assert status == "achieved"  # the parent's checks decided, after the child's work
    assert state.spent.tokens == router.tokens  # parent + child, as the server billed them
    assert len(usage) == len(router.bodies["fix the discount"]) == 2
    assert result["ok"] and "cart.py now divides by 100" in result["output"]
    assert "cart.py  +1 -1" in result["output"] and result["files_touched"] == ["cart.py"]
    [child] = summary.children
    assert (child.status, child.files_changed, child.paths) == ("done", 1, ["/cart.py"])
    assert child.charged_tokens == sum(u["usage"]["charged_tokens"] for u in usage)
    assert thread is not None and thread.thread_id == goal.thread_id  # the child's thread never became current
    child_tools = {tool["function"]["name"] for tool in router.bodies["fix the discount"][0]["tools"]}
    assert "spawn_agent" not in child_tools and "update_goal" not in child_tools  # max_depth 1, no goal tools


def test_a_write_outside_its_paths_is_refused_by_the_file_tool_and_by_the_sandbox(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    (workspace / "other").mkdir()
    (workspace / "other" / "file").write_text("kept\n")
    git(workspace, "add", "other")
    git(workspace, "commit", "-qm", "other")
    shell = "echo x > other/file; echo y > docs/ok.txt; cat other/file"
    router = Router([calls(spawn("write", "docs/")), BLOCKED],
                    {"write": [calls(ToolCallReply("write_file", {"path": "other/file", "content": "x"})),
                               calls(ToolCallReply("shell", {"command": shell})), Completion(text="tried")]})
    with ChatServer(reply_fn=router) as server, Store() as store:
        goal = goal_on(store, workspace)
        run_on(server, store, goal, workspace)
        [result] = spawn_results(store, goal)
        results = [payload_of(e.event) for e in child_events(store, goal, "write") if e.event.kind == "tool_result"]
    written, shelled = results
    assert not written["ok"] and "outside boundaries.paths" in written["output"]
    assert "Read-only file system" in shelled["output"]
    assert (workspace / "other" / "file").read_text() == "kept\n"
    assert (workspace / "docs" / "ok.txt").read_text() == "y\n"
    assert "docs/ok.txt  +1 -0" in result["output"] and "other/file" not in result["output"]


def test_children_are_bounded_by_max_threads_max_depth_and_disjoint_paths(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    narrowed = ToolCallReply("spawn_agent", {"task": "task b", "paths": ["b/"], "tools": ["read_file", "search"]})
    widened = ToolCallReply("spawn_agent", {"task": "task e", "paths": ["e/"], "tools": ["update_goal"]})
    spawns = [spawn("task a", "a/"), narrowed, spawn("task ab", "a/x/"), spawn("task c", "c/"), spawn("task d", "d/"),
              widened]
    child = [Completion(text="did it", delay_s=0.2)]
    deeper = [calls(spawn("deeper", "a/deep/")), Completion(text="could not spawn")]
    router = Router([calls(*spawns), BLOCKED],
                    {"task a": deeper, "task b": child, "task ab": child, "task c": child, "task d": child,
                     "task e": child})
    with ChatServer(reply_fn=router) as server, Store() as store:
        goal = goal_on(store, workspace, max_threads=3)
        run_on(server, store, goal, workspace)
        results = spawn_results(store, goal)
        nested = [payload_of(e.event) for e in child_events(store, goal, "task a") if e.event.kind == "tool_result"]
    assert [r["ok"] for r in results] == [True, True, False, True, False, False]
    assert "overlap" in results[2]["output"] and "a/x" in results[2]["output"]
    assert "max_threads is 3" in results[4]["output"]
    assert "task ab" not in router.bodies and "task d" not in router.bodies  # refused before any request
    assert not nested[0]["ok"] and "unknown tool `spawn_agent`" in nested[0]["output"]  # depth 2 at max_depth 1
    assert {tool["function"]["name"] for tool in router.bodies["task b"][0]["tools"]} == {"read_file", "search"}
    assert "unknown tool(s) update_goal" in results[5]["output"]  # `tools` narrows, never widens


def test_a_pause_stops_a_running_child_at_its_next_boundary(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    goal_ids: dict[str, str] = {}

    def pause_now(answered: int) -> None:
        if answered == 0:  # while the child's first request is in flight, the person pauses the goal
            with Store() as other:
                other.append_events(goal_ids["thread"], [ControlRequestEvent(action="pause", actor="user")],
                                    goal_id=goal_ids["goal"])

    router = Router([calls(spawn("slow", "docs/")), BLOCKED],
                    {"slow": [calls(ToolCallReply("shell", {"command": "true"})), Completion(text="never asked")]},
                    on_child={"slow": pause_now})
    with ChatServer(reply_fn=router) as server, Store() as store:
        goal = goal_on(store, workspace)
        goal_ids.update(thread=goal.thread_id, goal=goal.goal_id)
        status = run_on(server, store, goal, workspace)
        [ended] = [e.event for e in events(store, goal, "subagent_ended")]
    assert status == "paused"
    assert isinstance(ended, SubagentEndedEvent) and ended.status == "stopped"
    assert len(router.bodies["slow"]) == 1  # no request after the pause


@pytest.mark.parametrize(("path", "why"), [(".", "whole workspace"), ("*.py", "whole workspace"),
                                           ("../x", "climbs out"), (".git/hooks", ".git"),
                                           (".goalkeeper/", ".goalkeeper")])
def test_a_child_path_outside_a_part_of_the_workspace_is_refused(tmp_path: Path, path: str, why: str) -> None:
    with pytest.raises((PathRefused, BoundaryRefused), match=why.replace(".", r"\.")):
        writable_root(tmp_path, path)


def test_agents_config_reaches_the_goal_settings_and_a_bad_value_names_its_key(goalkeeper_home: Path,
                                                                              git_repo: Path) -> None:
    assert load_config(git_repo).run.agents.max_threads == 0  # asked for: no spawn_agent schema in every request
    (goalkeeper_home / "config.toml").write_text("[agents]\nmax_threads = 5\nmax_depth = 2\n")
    assert load_config(git_repo).run.agents == AgentSettings(max_threads=5, max_depth=2)
    (goalkeeper_home / "config.toml").write_text("[agents]\nmax_threads = -1\n")
    with pytest.raises(ConfigError, match="max_threads"):
        load_config(git_repo)
