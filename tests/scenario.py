"""Helpers for scenario tests: the bundled sample repo, scripted steps, and a goal run in-process.

Everything is real: a git repository in tmp_path, bash, the SQLite store; only the model is scripted.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

from goalkeeper.cli.demo import prepare_sample
from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.core.decide import decide
from goalkeeper.core.outcomes import ModelResponded, RequestDue
from goalkeeper.events import Event
from goalkeeper.goals import control
from goalkeeper.models.base import Model
from goalkeeper.models.scripted import ScriptedModel, ScriptedToolCall, ScriptStep
from goalkeeper.run.runner import Runner, RunResult
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import GoalSettings, ModelSettings, RunSettings
from goalkeeper.store import EventRecord, Goal, Store

TESTS = "python -m unittest -q"

FIX_PATCH = """*** Begin Patch
*** Update File: cart.py
@@ def apply_discount(total: float, percent: float) -> float:
-    return round(total - total * percent, 2)
+    return round(total - total * percent / 100, 2)
*** End Patch"""


def call(name: str, **arguments: Any) -> ScriptedToolCall:
    return ScriptedToolCall(name, arguments)


def step(text: str = "", *calls: ScriptedToolCall, delay_s: float = 0.0) -> ScriptStep:
    return ScriptStep(text=text, tool_calls=tuple(calls), delay_s=delay_s)


def shell(command: str) -> ScriptedToolCall:
    return call("shell", command=command)


def complete(summary: str = "done") -> ScriptedToolCall:
    return call("update_goal", status="complete", summary=summary)


HONEST_FIX = [
    step("Run the tests.", shell(TESTS)),
    step("Percent means 10 for 10%.", call("apply_patch", patch=FIX_PATCH)),
    step("", shell(TESTS), call("checkpoint", done="fixed apply_discount", verified="unittest passes",
                                remaining="nothing", next="request completion")),
    step("", complete("apply_discount divides by 100")),
    step("Done."),
]


def sample_repo(tmp_path: Path) -> Path:
    """A fresh copy of the demo's sample repository (git, one commit, a failing test)."""
    return prepare_sample(tmp_path)


def contract_with(**fields: Any) -> Contract:
    """The sample's contract (its tests as the check) with more contract fields: `review={...}`, `artifacts=[...]`."""
    contract = contract_from_flags("Fix the discount bug", checks=[f"tests={TESTS}"])
    return Contract.model_validate({**contract.model_dump(by_alias=True), **fields})


def new_goal(store: Store, workspace: Path, contract: Contract | None = None, **flags: Any) -> Goal:
    """Set a goal on `workspace` (the tests check by default)."""
    contract = contract or contract_from_flags(flags.pop("objective", "Fix the discount bug"),
                                               checks=flags.pop("checks", [f"tests={TESTS}"]), **flags)
    settings = GoalSettings(model=ModelSettings(provider="scripted", model="scripted", script="inline"),
                            run=RunSettings(heartbeat_s=0.2, control_poll_s=0.05))
    return control.set_goal(store, workspace, contract, settings, replace_existing=True)


def limit_by_tokens(store: Store, goal: Goal) -> Goal:
    """Stop `goal` (a budget of 1000 tokens) budget_limited at 1000/1000, through `decide`: 1000 tokens
    charged, the wrap-up begun, and its first request too big to fit."""
    for outcome in (ModelResponded(1000, 0, 0.0, 1.0), RequestDue(10, 1.0), RequestDue(10**6, 1.0)):
        goal = store.get_goal_by_id(goal.goal_id)
        control.commit_decision(store, goal, decide(goal.state, outcome))
    goal = store.get_goal_by_id(goal.goal_id)
    state = goal.state
    assert (state.status, state.spent.tokens, state.limits.tokens) == ("budget_limited", 1000, 1000)
    return goal


def run(store: Store, goal: Goal, workspace: Path, model: Model) -> RunResult:
    """Drive the goal in this process until it stops."""
    current = store.get_goal_by_id(goal.goal_id)
    return asyncio.run(Runner(store, current, model, workspace).run())


def scripted(steps: list[ScriptStep]) -> ScriptedModel:
    return ScriptedModel(steps)


def scripted_after(store: Store, goal: Goal, steps: list[ScriptStep]) -> ScriptedModel:
    """A script that continues an existing conversation: steps are chosen by assistant-message count."""
    answered = len(events(store, goal, "model_response"))
    return ScriptedModel([step("(earlier)")] * answered + steps)


def event_class(kind: str) -> type[Event]:
    """The event class of a kind, for the store's `kinds=` filter in tests that name kinds."""
    [union, _] = typing.get_args(Event)
    return typing.cast(type[Event], next(cls for cls in typing.get_args(union)
                                         if cls.model_fields["kind"].default == kind))


def events(store: Store, goal: Goal, kind: str | None = None) -> list[EventRecord]:
    return store.events(goal.thread_id, goal_id=goal.goal_id, kinds=[event_class(kind)] if kind else None)


def write_script(path: Path, steps: list[ScriptStep]) -> Path:
    """Write steps as the JSON script `--model scripted:PATH` reads."""
    def encode(s: ScriptStep) -> dict[str, Any]:
        data: dict[str, Any] = {"text": s.text, "tool_calls": [{"name": c.name, "arguments": c.arguments}
                                                                for c in s.tool_calls]}
        if s.delay_s:
            data["delay_s"] = s.delay_s
        return data

    path.write_text(json.dumps({"steps": [encode(s) for s in steps]}))
    return path


def gk(*args: str, home: Path, check: bool = False, timeout: float = 120, env_extra: dict[str, str] | None = None,
       **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the real `gk` command in a subprocess against the store in `home`."""
    env = {**os.environ, "GOALKEEPER_HOME": str(home)}
    for variable in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "GOALKEEPER_MODEL"):
        env.pop(variable, None)  # the tests choose their model explicitly
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "goalkeeper", *args], env=env, capture_output=True, text=True,
                          check=check, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)


def gk_popen(*args: str, home: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "GOALKEEPER_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "goalkeeper", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
