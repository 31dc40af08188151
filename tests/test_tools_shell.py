"""The shell tool over a real bash, and the output cutting every tool shares."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from goalkeeper.context.tokens import EstimatedTokens
from goalkeeper.store.store import blob_id_of
from goalkeeper.tools.base import ToolContext, ToolResult
from goalkeeper.tools.replies import cut_middle
from goalkeeper.tools.shell import ShellTool


def run_shell(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    return asyncio.run(ShellTool().call(arguments, context))


@pytest.fixture
def context(tmp_path: Path) -> ToolContext:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    return ToolContext(workspace=workspace.resolve())


def process_is_gone(pid: int) -> bool:
    """True when `pid` no longer runs (absent, or a zombie waiting for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_exit_code_zero_is_ok_and_output_follows_the_exit_code_line(context: ToolContext) -> None:
    result = run_shell({"command": "echo hello"}, context)

    assert result.ok
    assert result.output == "exit code: 0\nhello\n"
    assert result.facts["exit_code"] == 0
    assert result.facts["timed_out"] is False
    assert result.full_output is None


def test_non_zero_exit_is_not_ok_and_stderr_is_shown(context: ToolContext) -> None:
    result = run_shell({"command": "echo oops >&2; exit 3"}, context)

    assert not result.ok
    assert result.output == "exit code: 3\noops\n"
    assert result.facts["exit_code"] == 3


def test_command_runs_in_the_workspace_with_the_context_environment(context: ToolContext) -> None:
    context = ToolContext(workspace=context.workspace, env={"PATH": os.environ["PATH"], "GREETING": "hi"})

    result = run_shell({"command": "pwd; echo $GREETING"}, context)

    assert result.output == f"exit code: 0\n{context.workspace}\nhi\n"


def test_no_output_says_so(context: ToolContext) -> None:
    assert run_shell({"command": "true"}, context).output == "exit code: 0\n(no output)\n"


def test_timeout_kills_the_whole_process_group_quickly(context: ToolContext) -> None:
    started = time.monotonic()

    result = run_shell({"command": "sleep 30 & echo $! > bg.pid; sleep 30", "timeout_s": 1}, context)

    assert time.monotonic() - started < 5
    assert not result.ok
    assert result.facts["timed_out"] is True
    assert result.output.startswith("exit code: 124\ntimed out after 1s; the process group was killed\n")
    background = int((context.workspace / "bg.pid").read_text())
    deadline = time.monotonic() + 2
    while not process_is_gone(background) and time.monotonic() < deadline:
        time.sleep(0.01)  # SIGKILL was sent; only the kernel's teardown is left to wait for
    assert process_is_gone(background)


def test_timeout_is_capped_by_the_context_maximum(context: ToolContext) -> None:
    context = ToolContext(workspace=context.workspace, max_timeout_s=0.3)

    result = run_shell({"command": "sleep 30", "timeout_s": 600}, context)

    assert result.facts["timed_out"] is True
    assert "timed out after 0.3s" in result.output


def test_default_timeout_applies_when_none_is_named(context: ToolContext) -> None:
    context = ToolContext(workspace=context.workspace, default_timeout_s=0.3)

    result = run_shell({"command": "sleep 30"}, context)

    assert result.facts["timed_out"] is True
    duration = result.facts["duration_s"]
    assert isinstance(duration, float) and duration < 5


def test_huge_output_is_cut_to_head_and_tail_within_the_token_limit_and_kept_whole(context: ToolContext) -> None:
    context = ToolContext(workspace=context.workspace, output_token_limit=500)

    result = run_shell({"command": "seq 1 100000"}, context)

    assert result.ok
    assert result.output.startswith("exit code: 0\n1\n2\n3\n")
    assert result.output.endswith("99999\n100000\n")
    assert EstimatedTokens().count(result.output) <= 500
    assert result.full_output is not None
    assert result.full_output.startswith("exit code: 0\n1\n")
    assert result.full_output.count("\n") == 100001
    # The marker names the stored full output and where the cut starts, as read_output takes them.
    head = result.output.split("[... ", 1)[0]
    page = json.dumps({"id": blob_id_of(result.full_output), "offset": len(head)})
    assert f"read_output {page} pages through the full output" in result.output


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({}, "missing required argument 'command'"),
        ({"command": 42}, "argument 'command' must be a string, got 42 (int)"),
        ({"command": "ls", "timeout_s": "5"}, "argument 'timeout_s' must be an integer, got '5' (str)"),
        ({"command": "ls", "timeout_s": True}, "argument 'timeout_s' must be an integer"),
        ({"command": "ls", "timeout_s": 0}, "argument 'timeout_s' must be at least 1, got 0"),
        ({"command": "ls", "timeout": 5}, "unknown argument 'timeout'; shell takes: command, timeout_s"),
        ({"command": "   "}, "argument 'command' is empty"),
    ],
)
def test_bad_arguments_are_refused_with_the_argument_named(
    context: ToolContext, arguments: dict[str, Any], expected: str
) -> None:
    result = run_shell(arguments, context)

    assert not result.ok
    assert expected in result.output


def test_integral_float_timeout_is_accepted(context: ToolContext) -> None:
    assert run_shell({"command": "true", "timeout_s": 5.0}, context).ok


def test_cut_middle_leaves_short_text_alone() -> None:
    assert cut_middle("short", 100) == ("short", False)


def test_cut_middle_keeps_more_tail_than_head_and_counts_the_cut() -> None:
    text = "".join(f"line {number}\n" for number in range(1000))

    cut, was_cut = cut_middle(text, 1000)

    head, _, tail = cut.partition("[... ")
    assert was_cut
    assert head.startswith("line 0\n") and head.endswith("\n")
    assert tail.endswith("line 999\n")
    assert 300 <= len(head) <= 400
    assert 500 <= len(tail) <= 650
    removed = int(tail.split(" chars cut")[0])
    assert len(head) + removed + len(tail.split("]\n", 1)[1]) == len(text)


def test_cut_middle_handles_text_without_line_breaks() -> None:
    cut, was_cut = cut_middle("x" * 10_000, 100)

    assert was_cut
    assert cut.startswith("x" * 40 + "\n[... 9900 chars cut")
    assert cut.endswith("\n" + "x" * 60)
