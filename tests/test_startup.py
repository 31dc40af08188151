"""The read-only commands start without the heavy libraries: no provider SDK, no TUI, no web server, no asyncio
and no sandbox.

Each command runs as the real `gk` in a subprocess, on a real store holding a goal that ran, and reports the
modules it had loaded when it exited. Timing is measured by bench/cold_start.py, never asserted here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup

from goalkeeper.cli.app import commands
from goalkeeper.cli.group import app
from goalkeeper.cli.lazy import Commands, lazy_group
from goalkeeper.cli.root import COMMANDS
from scenario import HONEST_FIX, TESTS, gk, sample_repo, write_script

#: Libraries only a model call (the SDKs, their HTTP stacks, the tokenizers), `gk tui`, `gk serve` or the fleet
#: commands (temporalio) may load; psycopg, only a PostgreSQL store (store_url).
HEAVY = ("openai", "anthropic", "aiohttp", "httpx", "tiktoken", "quicktok", "llama_cpp", "textual", "fastapi",
         "uvicorn", "starlette", "sse_starlette", "temporalio", "psycopg")

#: What only running a goal or its checks needs: asyncio, the sandbox that confines the checks, the tracer and
#: the clean room; what only changing a goal needs: `decide` and the outcomes it is told (a goal's state is
#: core/state.py), the control path and the fleet's wake-up; and the goal's git side and the verifier's surface
#: (a stored surface is shown by render/surface.py). Showing a goal reads the store and nothing else.
NOT_TO_READ = ("asyncio", "goalkeeper.sandbox.bwrap", "goalkeeper.sandbox.process", "goalkeeper.verify.checks",
               "goalkeeper.verify.cleanroom", "goalkeeper.verify.trace", "goalkeeper.verify.lint",
               "goalkeeper.core.decide", "goalkeeper.core.outcomes", "goalkeeper.goals.control",
               "goalkeeper.goals.fleet", "goalkeeper.workspace.git", "goalkeeper.workspace.checkpoints",
               "goalkeeper.workspace.goal", "goalkeeper.verify.surface", "goalkeeper.verify.observed",
               "goalkeeper.verify.pins")

#: What `gk serve` must not load while idle: the runner, the model sessions and the SDKs (a request loads them
#: only if it needs them).
NOT_IN_SERVER = ("openai", "anthropic", "aiohttp", "httpx", "tiktoken", "quicktok", "llama_cpp", "textual",
                 "goalkeeper.run.runner", "goalkeeper.run.engine", "goalkeeper.sessions.session",
                 "goalkeeper.tools.registry")

#: Runs `gk` as `python -m goalkeeper` does, and writes the names of the loaded modules at exit, or on SIGUSR1
#: (a server never exits by itself, and uvicorn ends on the signal that stops it, so no atexit hook runs).
_RECORD_MODULES = """
import atexit, json, os, runpy, signal, sys
def record(*_):
    open(os.environ["GK_MODULES_OUT"], "w").write(json.dumps(sorted(sys.modules)))
atexit.register(record)
signal.signal(signal.SIGUSR1, record)
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
def test_read_only_commands_load_no_provider_sdk_tui_server_or_sandbox(command: list[str],
                                                                       ran_goal: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    workspace, home = ran_goal
    args = command if "--help" in command or command == ["threads"] else [*command, "--cwd", str(workspace)]
    modules = loaded_modules(args, home, tmp_path / "modules.json")
    assert "goalkeeper.cli.root" in modules  # the record is of the command that ran
    # The listing needs none of the commands' imports; a command (or its own help) loads them, unless a glance
    # at the store answers it (cli/glance.py): then not even typer, pydantic or rich is loaded.
    glanced = command in (["status"], ["goal"], ["log"], ["threads"], ["report"])
    assert ("goalkeeper.cli.app" in modules) == (command != ["--help"] and not glanced)
    if glanced:
        libraries = sorted({name.split(".")[0] for name in modules}.intersection({"typer", "pydantic", "rich"}))
        assert not libraries, f"`gk {' '.join(command)}` at a glance loaded {libraries}"
    heavy = sorted({name.split(".")[0] for name in modules}.intersection(HEAVY))
    assert not heavy, f"`gk {' '.join(command)}` loaded {heavy}"
    runtime = sorted(modules.intersection(NOT_TO_READ))
    assert not runtime, f"`gk {' '.join(command)}` loaded {runtime}"


def test_the_listing_table_holds_each_command_as_it_describes_itself() -> None:
    """`gk --help` lists cli/root.py's COMMANDS without importing the commands: a row per registered command,
    in registration order, with the first paragraph of the help typer takes from the command."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    listed = group.commands
    assert isinstance(listed, Commands)
    built = {name: listed[name] for name in listed.registered()}
    expected = {name: " ".join((command.help or "").split("\n\n")[0].split()) for name, command in built.items()
                if not command.hidden}
    rows = "\n".join(f"    {name!r}: {line!r}," for name, line in expected.items())
    assert list(expected.items()) == list(COMMANDS.items()), (
        "`gk --help` lists the commands from COMMANDS in src/goalkeeper/cli/root.py, which must name every "
        "command registered with @commands.command() (or commands.add_typer), in the same order, with the first "
        "paragraph of its docstring: add a row there for each new command (or change the row of one whose "
        f"docstring changed). The table should read:\n{rows}")
    assert list(expected)[:3] == ["tui", "goal", "run"] and "local" in expected  # the sub-app included
    for name in expected:
        outline = listed.outline(name)
        for width in (30, 60, 200):
            assert outline.get_short_help_str(width) == built[name].get_short_help_str(width), (name, width)
        assert built[name].params or name in ("threads", "local")  # the real command, with its options


def test_the_listing_loads_no_command() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    listed = group.commands
    assert isinstance(listed, Commands)
    help_text = group.get_help(typer.Context(group, info_name="gk"))
    assert "status" in help_text and "threads" in help_text
    assert not listed.loaded()  # the listing came from the table alone
    assert listed.get("status") is not None and listed.get("nosuch") is None
    assert [name for name in listed if listed.built(name)] == ["status"]


def test_a_command_registered_on_the_root_is_refused() -> None:
    """Commands go on the catalogue (`@commands.command()`): one on the root would be built on every call."""
    root = typer.Typer(cls=lazy_group(lambda: commands, COMMANDS))
    root.callback()(lambda: None)
    root.command("extra")(lambda: None)
    with pytest.raises(TypeError, match="register commands on the catalogue"):
        typer.main.get_command(root)


def test_serve_idles_without_the_runner_or_a_model_sdk(ran_goal: tuple[Path, Path], tmp_path: Path) -> None:
    _, home = ran_goal
    out = tmp_path / "modules.json"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "GOALKEEPER_HOME": str(home), "GK_MODULES_OUT": str(out)}
    server = subprocess.Popen([sys.executable, "-c", _RECORD_MODULES, "serve", "--port", str(port)], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        token = gk("serve", "--show-token", home=home) if _serving(server, port) else None
        assert token is not None and token.returncode == 0, server.stderr.read().decode() if server.stderr else ""
        request = urllib.request.Request(f"http://127.0.0.1:{port}/threads",
                                         headers={"Authorization": f"Bearer {token.stdout.strip()}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        server.send_signal(signal.SIGUSR1)
        modules = _recorded(out)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "goalkeeper.server.api" in modules
    loaded = sorted(name for name in modules if name in NOT_IN_SERVER or name.split(".")[0] in NOT_IN_SERVER)
    assert not loaded, f"an idle `gk serve` loaded {loaded}"


def _serving(server: subprocess.Popen[bytes], port: int, timeout_s: float = 60) -> bool:
    """Whether the server answers HTTP on `port` within `timeout_s` (False once it has exited). Any answer
    will do (401 without the token): the socket listens before the token is written, the app only after."""
    deadline = time.monotonic() + timeout_s
    while server.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/threads", timeout=5):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.05)
    return False


def _recorded(out: Path, timeout_s: float = 30) -> set[str]:
    """The module names the recorder wrote to `out`, once it has written them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if out.is_file() and (text := out.read_text()).endswith("]"):
            return set(json.loads(text))
        time.sleep(0.05)
    raise AssertionError(f"the server wrote no module list to {out}")
