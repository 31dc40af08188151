"""README.md stays true: every command its fenced code blocks show is run, in order, and its output must still
read as the README shows it; every `gk` command that reads a workspace takes `--cwd`.

Data-driven from README.md: a new `$ gk …` transcript there is checked without a change here. The commands
run in one shared copy of the bundled sample repository (goalkeeper.cli.demo) with one temporary
GOALKEEPER_HOME whose config.toml picks the bundled scripted model: the model the README's transcripts say they
use (`gk demo --replay`'s), offline and the same every time. A command that cannot run here is named in SKIPPED
with the reason; any other command that is not `gk …` fails the test until it is runnable or listed.

How output is compared: a line that is just `…` stands for any number of lines, and `…` inside a line for any
text; ids, branch names, commits, durations and comma-grouped counts (tokens) are normalised on both sides,
trailing spaces dropped and runs of spaces inside a line (table padding) read as one gap.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import typer.main

import goalkeeper
from goalkeeper.cli.demo import prepare_sample, replay_script
from goalkeeper.cli.group import app
from goalkeeper.cli.root import COMMANDS

README = Path(__file__).resolve().parent.parent / "README.md"

SKIPPED: dict[str, str] = {
    r"scripts/": "sets the machine up with apt and pip (network, minutes) before the demo or the whole suite",
    r"export \w+_API_KEY=": "sets a real provider's API key; the tests never call a real provider",
    r"gk demo(?! --replay)": "runs the real local model, minutes on 2 cores (tests/test_local_model.py drives it)",
    r"gk (local )?serve\b": "serves until Ctrl-C (tests/test_server_api.py and tests/test_dashboard.py drive it)",
}
"""Commands shown in README.md that this test does not run, by pattern (matched at the start), and why."""

WITHOUT_CWD: dict[str, str] = {}
"""`gk` commands that read no workspace and so need no `--cwd`, and why. Every other command must take it."""

VOLATILE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bgoal_[0-9a-f]{12}\b"), "goal_<id>"),
    (re.compile(r"\bgoal/[0-9a-f]{8}-"), "goal/<id>-"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "<commit>"),
    (re.compile(r"\b\d{1,3}(?:,\d{3})+\b"), "<count>"),
    (re.compile(r"\b\d+(?:\.\d+)?(?:ms|s)\b"), "<time>"),
)
"""What differs from run to run: ids, commits, token counts, durations."""

_FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_SHELL = {"bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class Shown:
    """One command as README.md shows it, with the output lines it shows (None: a block shows no output)."""

    command: str
    output: tuple[str, ...] | None
    line: int
    """Where in README.md it is, for the failure message."""


def shown_commands(text: str) -> list[Shown]:
    """Every command in `text`'s fenced blocks, in order: `$ ` lines (with the lines up to the next one as
    output) in any block, and each line of a shell block that has no `$ ` lines."""
    found: list[Shown] = []
    for fence in _FENCE.finditer(text):
        first = text.count("\n", 0, fence.start(2)) + 1
        lines = fence.group(2).splitlines()
        if any(line.startswith("$ ") for line in lines):
            found += _transcript(lines, first)
        elif fence.group(1) in _SHELL:
            found += [Shown(re.sub(r"\s+#\s.*$", "", line).strip(), None, first + i)
                      for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    return found


def _transcript(lines: list[str], first: int) -> list[Shown]:
    """`$ command` (continued by trailing backslashes), then its output up to the next `$ `."""
    found: list[Shown] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        start, command = i, lines[i][2:]
        while command.endswith("\\") and i + 1 < len(lines):
            i += 1
            command += "\n" + lines[i]
        i += 1
        end = next((j for j in range(i, len(lines)) if lines[j].startswith("$ ")), len(lines))
        found.append(Shown(command, tuple(lines[i:end]), first + start))
        i = end
    return found


def skip_reason(command: str) -> str | None:
    return next((why for pattern, why in SKIPPED.items() if re.match(pattern, command)), None)


def normalise(line: str, places: dict[str, str]) -> str:
    for path, name in places.items():
        line = line.replace(path, name)
    for pattern, stand_in in VOLATILE:
        line = pattern.sub(stand_in, line)
    indent = len(line) - len(line.lstrip(" "))
    return line[:indent] + re.sub(r" {2,}", "  ", line[indent:].rstrip())


def mismatch(shown: tuple[str, ...], output: str, places: dict[str, str]) -> str | None:
    """None when `output` reads as `shown`; else the first shown line that it does not match."""
    actual = "".join(normalise(line, places) + "\n" for line in output.splitlines())
    expected = [normalise(line, places) for line in shown]
    while expected and not expected[-1]:
        expected.pop()  # a block's blank last line is layout, not output

    def pattern(count: int) -> str:
        return "".join(r"(?:[^\n]*\n)*?" if line.strip() == "…" else
                       ".*".join(re.escape(part) for part in line.split("…")) + r"\n" for line in expected[:count])

    if re.fullmatch(pattern(len(expected)) + (r"(?:[^\n]*\n)*" if expected[-1:] == ["…"] else ""), actual):
        return None
    matched = next(count for count in range(len(expected), -1, -1) if re.match(pattern(count), actual))
    if matched == len(expected):
        return "the output goes on past the last line shown (end the block with a `…` line, or show the rest)"
    return f"no match for shown line {matched + 1}: {expected[matched]!r}"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The sample repository and the environment every README command runs in: a `gk` on PATH that is this
    checkout's, a fresh GOALKEEPER_HOME whose model is the bundled scripted replay, no provider keys."""
    root = tmp_path_factory.mktemp("readme")
    home, bin_dir = root / "home", root / "bin"
    home.mkdir()
    bin_dir.mkdir()
    (home / "config.toml").write_text(f"model = {json_string('scripted:' + str(replay_script()))}\n")
    # This checkout's goalkeeper, found without PYTHONPATH: the checks the commands run would see it, and
    # report a different verification surface from the one a user's run shows.
    source = Path(goalkeeper.__file__).resolve().parent.parent
    program = f"import sys; sys.path.insert(0, {str(source)!r}); from goalkeeper.cli.root import main; main()"
    shim = bin_dir / "gk"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c {shlex.quote(program)} "$@"\n')
    shim.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if not key.endswith("_API_KEY")
           and key not in ("OPENAI_BASE_URL", "GOALKEEPER_MODEL", "PYTHONPATH")}
    env.update(GOALKEEPER_HOME=str(home), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
               PYTHONUNBUFFERED="1", COLUMNS="120", NO_COLOR="1")
    return prepare_sample(root), env


def json_string(text: str) -> str:
    """A TOML basic string (the JSON escapes are TOML's)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_the_readme_parser_finds_transcripts_and_shell_lines() -> None:
    text = ("```bash\nscripts/demo   # set-up\n# a comment\n```\n\n```text\n$ gk goal \"x\" \\\n    --check t=true\n"
            "Goal goal_0\n…\n$ gk run\ndone\n```\n\n```\nsrc/\n  cli/\n```\n")
    assert shown_commands(text) == [Shown("scripts/demo", None, 2),
                                    Shown('gk goal "x" \\\n    --check t=true', ("Goal goal_0", "…"), 7),
                                    Shown("gk run", ("done",), 11)]
    assert mismatch(("a", "…", "c 1.5s"), "a\nb\nb\nc 12.0s\n", {}) is None
    assert mismatch(("a", "c"), "a\nb\nc\n", {}) == "no match for shown line 2: 'c'"
    assert mismatch(("a",), "a\nb\n", {}) is not None and mismatch(("a", "…"), "a\nb\n", {}) is None


@pytest.mark.slow
def test_every_command_the_readme_shows_runs_and_prints_what_it_shows(
        sandbox: tuple[Path, dict[str, str]]) -> None:
    repo, env = sandbox
    places = {str(repo): "<repo>", env["GOALKEEPER_HOME"]: "<home>"}
    problems: list[str] = []
    ran = 0
    for shown in shown_commands(README.read_text(encoding="utf-8")):
        if skip_reason(shown.command) is not None:
            continue
        if not shown.command.startswith("gk "):
            problems.append(f"README.md:{shown.line}: `{shown.command}` is neither run here nor in SKIPPED")
            continue
        done = subprocess.run(["bash", "-c", shown.command], cwd=repo, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        ran += 1
        if done.returncode != 0:
            problems.append(f"README.md:{shown.line}: `{shown.command}` exited {done.returncode}:\n{done.stdout}")
        elif shown.output is not None and (wrong := mismatch(shown.output, done.stdout, places)):
            problems.append(f"README.md:{shown.line}: `{shown.command}`: {wrong}; it printed:\n{done.stdout}")
    assert not problems, "\n\n".join(problems)
    assert ran >= 5  # the five everyday commands at least


def test_every_command_shown_is_run_or_skipped_with_a_reason() -> None:
    skipped = {shown.command: skip_reason(shown.command) for shown in shown_commands(README.read_text(encoding="utf-8"))
               if not shown.command.startswith("gk ") or skip_reason(shown.command)}
    assert all(skipped.values()), [command for command, why in skipped.items() if not why]
    assert "scripts/demo" in skipped  # the set-up lines are found, and skipped by name


def listed_commands() -> list[tuple[str, click.Command]]:
    """Each command of the static COMMANDS table (`gk --help`'s listing); a group stands for its subcommands."""
    group = typer.main.get_command(app)
    found: list[tuple[str, click.Command]] = []
    for name in COMMANDS:
        command = group.commands[name]  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None) or {}
        found += [(f"{name} {sub}", each) for sub, each in subcommands.items()] or [(name, command)]
    return found


def test_every_listed_command_that_reads_a_workspace_takes_cwd() -> None:
    commands = listed_commands()
    without = [name for name, command in commands if name not in WITHOUT_CWD
               and not any("--cwd" in getattr(param, "opts", ()) for param in command.params)]
    assert without == [], "these commands need --cwd (or a WITHOUT_CWD entry saying why they read no workspace)"
    assert set(WITHOUT_CWD) <= {name for name, _ in commands}, "WITHOUT_CWD names a command gk no longer has"
