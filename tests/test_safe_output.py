"""Escape sequences and markup from the model, tools, summaries and the objective are shown, never obeyed.

A hostile model plants ESC/CSI/OSC sequences, C1 controls, bidi overrides and Rich markup everywhere it can
write; the real `gk` prints its live lines, log, report, status and goal view in subprocesses. No terminal
control byte comes out, no fake status line can be drawn, and the JSON keeps the exact text.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text

from goalkeeper.cli import console
from goalkeeper.core.safe_text import is_inert, neutralise
from scenario import FIX_PATCH, TESTS, call, gk, sample_repo, shell, step, write_script

FAKE = "● pursuing → achieved (met, by FAKE)"
"""A status line as the harness draws it; the model tries to draw it over its own line."""

CSI_ERASE = "\x1b[1A\x1b[2K\x1b[G"  # up a line, erase it, back to column 1
OSC_TITLE = "\x1b]0;pwned\x07"
MODEL_TEXT = f"Looking [bold green]achieved[/] \x9b31m\u202edesrever{OSC_TITLE}{CSI_ERASE}{FAKE}"
SUMMARY = f"fixed it\r\x1b[32m{FAKE}\x1b[0m"
OBJECTIVE = f"Fix the discount bug{CSI_ERASE}{FAKE}"
TOOL_PRINTS = f"printf '\\033[1A\\033[2K\\r{FAKE}\\033]0;t\\007\\n'; exit 3"
"""A tool whose output tries the same, on a failing call (its first line is shown live)."""
CONTROL_BYTES = ("\x1b", "\x9b", "\x07", "\r", "\u202e")


def _assert_inert(output: str) -> None:
    for byte in CONTROL_BYTES:
        assert byte not in output, (byte, output)
    for line in output.splitlines():
        assert not line.strip().startswith(FAKE), line  # the fake line never stands on its own


@pytest.fixture
def hostile_goal(tmp_path: Path, goalkeeper_home: Path) -> tuple[Path, str]:
    """A goal driven by `gk exec` whose model writes escape sequences into everything it touches."""
    workspace = sample_repo(tmp_path)
    steps = [
        step(MODEL_TEXT, shell(TESTS)),
        step(MODEL_TEXT, shell(TOOL_PRINTS)),
        step("", call("apply_patch", patch=FIX_PATCH)),
        step("", shell(TESTS), call("checkpoint", done=SUMMARY, verified="unittest passes", remaining="nothing",
                                    next=MODEL_TEXT)),
        step("", call("update_goal", status="complete", summary=SUMMARY)),
        step(MODEL_TEXT),
    ]
    model = f"scripted:{write_script(tmp_path / 'script.json', steps)}"
    live = gk("exec", OBJECTIVE, "--check", f"tests={TESTS}", "--model", model, "--cwd", str(workspace),
              home=goalkeeper_home)
    assert live.returncode == 0, live.stdout + live.stderr
    return workspace, live.stdout + live.stderr


def test_live_exec_lines_show_escape_sequences_instead_of_obeying_them(hostile_goal: tuple[Path, str]) -> None:
    _, output = hostile_goal
    _assert_inert(output)
    assert "␛[1A␛[2K" in output and "[bold green]achieved[/]" in output  # shown, and markup printed literally


@pytest.mark.parametrize("command", [["log"], ["report"], ["report", "--pr"], ["status"], ["goal"]])
def test_log_report_status_and_goal_are_inert(hostile_goal: tuple[Path, str], goalkeeper_home: Path,
                                              command: list[str]) -> None:
    workspace, _ = hostile_goal
    shown = gk(*command, "--cwd", str(workspace), home=goalkeeper_home)
    assert shown.returncode == 0, shown.stderr
    _assert_inert(shown.stdout + shown.stderr)
    assert "␛" in shown.stdout  # the planted sequence is visible, not silently dropped


def test_threads_and_errors_are_inert(hostile_goal: tuple[Path, str], goalkeeper_home: Path) -> None:
    _assert_inert(gk("threads", home=goalkeeper_home).stdout)
    missing = gk("report", "--goal", f"goal_x{CSI_ERASE}{FAKE}", home=goalkeeper_home)
    assert missing.returncode == 4 and "Traceback" not in missing.stderr
    _assert_inert(missing.stdout + missing.stderr)
    assert "␛" in missing.stderr


def test_json_keeps_the_exact_text(hostile_goal: tuple[Path, str], goalkeeper_home: Path) -> None:
    workspace, _ = hostile_goal
    rows = [json.loads(line) for line in gk("log", "--json", "--cwd", str(workspace),
                                            home=goalkeeper_home).stdout.splitlines()]
    texts = [row["payload"].get("content") for row in rows if row["kind"] == "model_response"]
    assert MODEL_TEXT in texts
    report = json.loads(gk("report", "--json", "--cwd", str(workspace), home=goalkeeper_home).stdout)
    assert report["objective"] == OBJECTIVE
    status = gk("status", "--json", "--cwd", str(workspace), home=goalkeeper_home).stdout
    assert "\x1b" not in status and json.loads(status)["objective"] == OBJECTIVE  # escaped as \u001b
    goal = gk("goal", "--json", "--cwd", str(workspace), home=goalkeeper_home).stdout
    assert "\x1b" not in goal and json.loads(goal)["objective"] == OBJECTIVE


def test_neutralise_shows_every_control_and_keeps_plain_text() -> None:
    assert neutralise("plain text, ünïcode ✓\n\ttabbed") == "plain text, ünïcode ✓\n\ttabbed"
    assert neutralise("a\r\nb") == "a\nb"
    assert neutralise("\x1b[2K\rover") == "␛[2K␍over"
    assert neutralise("\x00\x7f") == "␀␡"
    assert neutralise("\x9b31m\u202e\u2066") == "\\u009b31m\\u202e\\u2066"
    assert is_inert(neutralise(MODEL_TEXT)) and not is_inert(MODEL_TEXT)


def test_the_consoles_read_no_markup_and_neutralise_everything(capsys: pytest.CaptureFixture[str]) -> None:
    console.out.print(f"model: {MODEL_TEXT} :smile:")
    console.out.print(Text(SUMMARY))
    console.err.print(console.styled(("error: ", "bold red"), OBJECTIVE))
    console.write_text(MODEL_TEXT)
    captured = capsys.readouterr()
    _assert_inert(captured.out + captured.err)
    assert "[bold green]achieved[/]" in captured.out and ":smile:" in captured.out


def _transcript_text(app: Any) -> str:
    """What the transcript's widgets hand Textual to draw, as text: with no terminal, Rich adds no escape
    sequence of its own, so any control byte here came from the content."""
    from textual.widgets import Static

    from goalkeeper.tui.transcript import ToolCallView, Transcript

    drawn = Console(width=200, file=io.StringIO(), force_terminal=False, color_system=None)
    for child in app.query_one(Transcript).children:
        if isinstance(child, ToolCallView):
            drawn.print(child.title, child.output.content)
        elif isinstance(child, Static):
            drawn.print(child.content)
    file = drawn.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def test_the_tui_shows_the_hostile_history_inert(hostile_goal: tuple[Path, str]) -> None:
    from goalkeeper.store import Store
    from goalkeeper.tui.app import GoalkeeperApp
    from test_tui import SIZE, submit, until

    workspace, _ = hostile_goal

    async def look() -> str:
        with Store() as store:
            app = GoalkeeperApp(workspace, store=store, poll_s=0.1)
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: "model:" in _transcript_text(app), "the goal's history")
                await submit(pilot, "/goal")
                await until(pilot, lambda: "objective" in _transcript_text(app), "the /goal summary")
                return _transcript_text(app)

    shown = asyncio.run(look())
    _assert_inert(shown)
    assert "[bold green]achieved[/]" in shown and "␛[1A" in shown  # markup literal, sequences visible
