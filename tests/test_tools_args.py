"""Tool arguments as typed models: each tool's `Args` is both the schema the providers get and the validation
its calls go through, and the registry refuses a bad argument by name with what to send."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from goalkeeper.models.base import ToolCall, ToolSpec
from goalkeeper.tools.base import CommandApproval, ToolContext, ToolResult
from goalkeeper.tools.registry import default_registry


def execute(workspace: Path, name: str, arguments: str) -> ToolResult:
    return asyncio.run(default_registry().execute(ToolCall("call_1", name, arguments), ToolContext(workspace)))


@pytest.mark.parametrize("spec", default_registry().specs, ids=lambda spec: spec.name)
def test_every_schema_is_plain_json_schema_the_providers_take(spec: ToolSpec) -> None:
    parameters = spec.parameters
    text = json.dumps(parameters)

    assert parameters["type"] == "object" and parameters["additionalProperties"] is False
    assert set(parameters.get("required", [])) <= set(parameters["properties"])
    for word in ('"title"', '"$defs"', '"$ref"', '"anyOf"', '"default"', '"null"'):
        assert word not in text


def test_the_shell_schema_is_the_one_the_models_always_saw() -> None:
    shell = default_registry().tools["shell"].spec

    assert shell.parameters == {"type": "object",
                                "properties": {"command": {"type": "string"},
                                               "timeout_s": {"type": "integer", "minimum": 1}},
                                "required": ["command"], "additionalProperties": False}


@pytest.mark.parametrize(("name", "arguments", "says"), [
    ("read_file", '{"path": 3}', "argument 'path' must be a string, got 3 (int)"),
    ("read_file", '{"path": "a.txt", "limit": "5"}', "argument 'limit' must be an integer, got '5' (str)"),
    ("read_file", '{"path": "a.txt", "limit": true}', "argument 'limit' must be an integer, got True (bool)"),
    ("shell", '{"command": "ls", "timeout": 5}', "unknown argument 'timeout'; shell takes: command, timeout_s"),
    ("update_goal", '{"status": "done", "summary": "s"}',
     "argument 'status' must be one of 'complete', 'blocked' or 'paused', got 'done' (str)"),
    ("get_goal", '{"verbose": true}', "unknown argument 'verbose'; get_goal takes: no arguments"),
    ("checkpoint", '{"done": "d", "remaining": "r"}', "missing required argument 'next' (a string)"),
    ("read_file", "[1]", "read_file: arguments must be a JSON object"),
])
def test_the_registry_refuses_a_bad_argument_by_name(tmp_path: Path, name: str, arguments: str, says: str) -> None:
    result = execute(tmp_path, name, arguments)

    assert not result.ok and result.output == says


def test_a_whole_float_counts_as_an_integer_and_null_as_left_out(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\ntwo\nthree\n")

    result = execute(tmp_path, "read_file", '{"path": "a.txt", "offset": 2.0, "limit": null}')

    assert result.ok and result.output.startswith("    2\ttwo")


def test_the_tool_result_event_keeps_its_data_keys() -> None:
    approval = CommandApproval("git checkout x", "allow", "approved by the person", "git checkout*", True,
                               ("git checkout*",))
    result = ToolResult("ok", note={"done": "d"}, approval=approval, interrupted="pause", blob_id="blob_1",
                        facts={"exit_code": 0})

    assert result.event_data() == {
        "exit_code": 0, "note": {"done": "d"}, "interrupted": "pause", "blob_id": "blob_1",
        "approval": {"command": "git checkout x", "action": "allow", "reason": "approved by the person",
                     "rule": "git checkout*", "asked": True, "remembered": True, "matches": ["git checkout*"]}}


def test_update_goal_hands_its_report_to_the_harness(tmp_path: Path) -> None:
    result = execute(tmp_path, "update_goal", '{"status": "blocked", "summary": "s", "blocker": "no key"}')

    assert result.signal == "blocked"
    assert result.event_data() == {"status": "blocked", "summary": "s", "blocker": "no key", "next_input": None}
