"""The real `gk` binary's TUI in a real terminal (tmux): /goal → running → /goal pause → /goal resume → achieved,
then Ctrl-C twice to leave.

The model is a local Chat Completions server scripted with an honest fix (test_tui.FixOverChat); its first
answer is slow, so the pause lands while the goal is running. Keys go in with `send-keys`, the screen comes
back with `capture-pane`.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat_server import ChatServer
from goalkeeper.events import StatusChangedEvent, payload_of
from goalkeeper.store import Store
from scenario import TESTS, sample_repo
from test_tui import FixOverChat, write_config

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]


class Terminal:
    """One tmux session on a private server socket, running one command in a 160×48 window."""

    def __init__(self, command: str) -> None:
        self.socket = f"gk-test-{uuid.uuid4().hex[:8]}"
        self.tmux("new-session", "-d", "-s", "gk", "-x", "160", "-y", "48", command)

    def tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True,
                              timeout=30)
        return done.stdout

    def type(self, line: str) -> None:
        """Type `line` and press Enter."""
        self.tmux("send-keys", "-t", "gk", "-l", line)
        self.tmux("send-keys", "-t", "gk", "Enter")

    def keys(self, *names: str) -> None:
        """Press keys by tmux's names, e.g. `C-c`."""
        self.tmux("send-keys", "-t", "gk", *names)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "gk")

    def alive(self) -> bool:
        return subprocess.run(["tmux", "-L", self.socket, "has-session", "-t", "gk"], capture_output=True,
                              timeout=30).returncode == 0

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        """The screen once it shows `text`; fails with the last screen after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen() if self.alive() else screen
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"the terminal never showed {text!r}; last screen:\n{screen}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    """Terminals a test opens, each closed (its tmux server killed) at the end, pass or fail."""
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


def test_gk_in_tmux_sets_pauses_resumes_and_achieves_a_goal(tmp_path: Path, goalkeeper_home: Path,
                                                            terminals: list[Terminal]) -> None:
    workspace = sample_repo(tmp_path)
    replies = FixOverChat(first_delay_s=20.0)
    with ChatServer(reply_fn=replies) as server:
        write_config(goalkeeper_home, server)
        # COLUMNS and LINES would override the terminal's real size (rich and Textual read them first).
        command = shlex.join(["env", "-u", "COLUMNS", "-u", "LINES", f"GOALKEEPER_HOME={goalkeeper_home}",
                              "TERM=xterm-256color", sys.executable, "-m", "goalkeeper", "--cwd", str(workspace)])
        terminal = Terminal(command)
        terminals.append(terminal)
        terminal.wait_for("/help lists the commands")
        terminal.type(f"/goal Fix the discount bug --check tests={TESTS}")
        terminal.wait_for("Pursuing goal")
        terminal.wait_for("turn 1 (continuation)")  # the slow first model request is out
        terminal.type("/goal pause")
        terminal.wait_for("Goal paused (/goal resume)", timeout=20)
        terminal.type("/goal resume")
        screen = terminal.wait_for("Goal achieved · 1/1 checks")
        terminal.keys("C-c")  # a real terminal's Ctrl-C reaches the app as a key, not as SIGINT
        terminal.wait_for("Ctrl-C again to quit")
        terminal.keys("C-c")
        deadline = time.monotonic() + 30
        while terminal.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not terminal.alive(), "gk did not exit on the second Ctrl-C"
    assert "✔ checkpoint turn 1: fixed apply_discount" in screen, screen
    with Store() as store:
        [thread] = store.list_threads()
        goal = store.get_goal(thread.thread_id)
        assert goal is not None and goal.state.status == "achieved"
        changes = store.events(thread.thread_id, kinds=[StatusChangedEvent])
        moves = [(payload_of(e.event)["to"], e.event.actor) for e in changes]
    assert moves == [("pursuing", "user"), ("paused", "user"), ("pursuing", "user"), ("achieved", "harness")]
