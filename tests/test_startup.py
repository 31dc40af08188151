"""The read-only commands start without the heavy libraries: no provider SDK, no TUI, no web server.

Each command runs as the real `gk` in a subprocess, on a real store holding a goal that ran, and reports the
modules it had loaded when it exited. Timing is measured by bench/cold_start.py, never asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scenario import HONEST_FIX, TESTS, gk, sample_repo, write_script

#: Libraries only a model call (the SDKs, their HTTP stacks, the tokenizers), `gk tui` or `gk serve` may load.
HEAVY = ("openai", "anthropic", "aiohttp", "httpx", "tiktoken", "quicktok", "llama_cpp", "textual", "fastapi",
         "uvicorn", "starlette", "sse_starlette")

#: Runs `gk` as `python -m goalkeeper` does, and writes the names of the loaded modules at exit.
_RECORD_MODULES = """
import atexit, json, os, runpy, sys
atexit.register(lambda: open(os.environ["GK_MODULES_OUT"], "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["gk", *sys.argv[1:]]
runpy.run_module("goalkeeper", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def ran_goal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A workspace whose goal ran to `achieved`, and the GOALKEEPER_HOME of its store."""
    root = tmp_path_factory.mktemp("startup")
    home = root / "gk-home"
    home.mkdir()
    workspace = sample_repo(root)
    model = f"scripted:{write_script(root / 'script.json', HONEST_FIX)}"
    gk("goal", "Fix the discount bug", "--check", f"tests={TESTS}", "--model", model, "--cwd", str(workspace),
       home=home, check=True)
    gk("run", "--cwd", str(workspace), home=home, check=True)
    return workspace, home


def loaded_modules(args: list[str], home: Path, out: Path) -> set[str]:
    """The modules `gk ARGS` had loaded when it exited (it must succeed)."""
    env = {**os.environ, "GOALKEEPER_HOME": str(home), "GK_MODULES_OUT": str(out)}
    done = subprocess.run([sys.executable, "-c", _RECORD_MODULES, *args], env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    return set(json.loads(out.read_text()))


@pytest.mark.parametrize("command", [
    ["--help"], ["goal", "--help"], ["status"], ["status", "--json"], ["goal"], ["log"], ["log", "--json"],
    ["threads"], ["report"], ["report", "--json"],
], ids=" ".join)
def test_read_only_commands_load_no_provider_sdk_tui_or_server(command: list[str], ran_goal: tuple[Path, Path],
                                                              tmp_path: Path) -> None:
    workspace, home = ran_goal
    args = command if "--help" in command or command == ["threads"] else [*command, "--cwd", str(workspace)]
    modules = loaded_modules(args, home, tmp_path / "modules.json")
    assert "goalkeeper.cli.app" in modules  # the record is of the command that ran
    heavy = sorted({name.split(".")[0] for name in modules}.intersection(HEAVY))
    assert not heavy, f"`gk {' '.join(command)}` loaded {heavy}"

