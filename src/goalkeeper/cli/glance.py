"""The read-only commands at a glance: `gk status`, `gk goal` (show), `gk log`, `gk threads` and `gk report`,
answered from the store's rows before typer, pydantic or rich is imported (together most of a 250 ms start-up).

`answer(argv)` takes only the plain forms: one of those commands with `--cwd DIR` and `--thread ID` (`gk threads`:
`--cwd`; `gk report`: also `--goal ID` and `--pr`), on a store a glance can open (store/glance.py), for a goal
whose summary its rows hold (goals/glance.py). It returns None for anything else (`--json`, `--help`, a flag it
does not know, an error to report, a store that needs migrating, a goal not yet run), and cli/root.py runs the
full command, which prints what it always did: the same lines (render/summary.py, render/lines.py) and the same
report (goals/report.py), or the error with its fix. tests/test_glance.py runs each command both ways and
compares the output.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from goalkeeper.goals.glance import open_glance, summary_of
from goalkeeper.goals.report import REPORT_KINDS, render_markdown, render_pr, report_of
from goalkeeper.goals.where import workspace_of
from goalkeeper.render import ansi
from goalkeeper.render.lines import event_line
from goalkeeper.render.summary import Line, goal_lines, thread_lines

if TYPE_CHECKING:
    from goalkeeper.store.glance import Glance, Row

OPTIONS = {"status": ("--cwd", "--thread"), "goal": ("--cwd", "--thread"), "log": ("--cwd", "--thread"),
           "threads": ("--cwd",), "report": ("--cwd", "--thread", "--goal", "--pr")}
"""The commands a glance answers, and the options it reads for each: FLAGS take no value, the others one."""
FLAGS = ("--pr",)


def answer(argv: list[str]) -> int | None:
    """Run `gk ARGV` from a glance at the store and return its exit code; None when the full command must run."""
    if not argv or argv[0] not in OPTIONS or (options := _options(argv[1:], OPTIONS[argv[0]])) is None:
        return None
    out = Output()
    try:
        glance = open_glance()
        if glance is None:
            return None
        try:
            return _run(glance, argv[0], options, out)
        finally:
            glance.close()
    except BrokenPipeError:  # the reader went away (`gk log | head`): nothing more to say, and no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception:  # a locked or damaged file, a row this reading does not know: the full command says what
        if out.printed:
            raise  # half an answer is out: running the command again would print it twice
        return None


class Output:
    """stdout, remembering whether anything was written to it."""

    def __init__(self) -> None:
        self.printed = False

    def write(self, lines: list[Line]) -> None:
        if lines:
            self.printed = True
            ansi.write(lines, sys.stdout)

    def write_text(self, text: str) -> None:
        """Plain text (a Markdown report), as the full command writes it."""
        self.printed = True
        ansi.write_text(text)


def _options(args: list[str], allowed: tuple[str, ...]) -> dict[str, str] | None:
    """`--name VALUE` / `--name=VALUE` pairs and bare flags, each at most once; None for anything else."""
    found: dict[str, str] = {}
    rest = iter(args)
    for arg in rest:
        name, equals, value = arg.partition("=")
        if name not in allowed or name in found or (name in FLAGS and equals):
            return None
        if name in FLAGS:
            found[name] = name
            continue
        value = value if equals else next(rest, "")
        if not value or value.startswith("-"):
            return None
        found[name] = value
    return found


def _run(glance: Glance, command: str, options: dict[str, str], out: Output) -> int | None:
    cwd = options.get("--cwd")
    if command == "threads":
        return _threads(glance, Path(cwd) if cwd else None, out)
    workspace = workspace_of(Path(cwd or "."))
    goal, thread = _goal(glance, workspace, options)
    if goal is None or thread is None:
        return None
    if command == "log":
        return _log(glance, goal, out)
    summary = summary_of(glance, goal, thread["workspace"])
    if command == "report" and summary is not None:
        data = report_of(summary, goal["contract"], glance.events_of(goal, REPORT_KINDS),
                         glance.implemented_by(goal["goal_id"]))
        out.write_text(render_pr(data) if "--pr" in options else render_markdown(data))
        return 0
    if summary is None or (command == "goal" and _not_run(summary)):
        return None
    out.write(goal_lines(summary))
    return 0


def _not_run(summary: dict[str, object]) -> bool:
    """Whether `gk goal` would list the files the first run's baseline will pin, which the lint gate works out
    (goals/service.pins_to_come): a goal still open that has no baseline and no pins yet."""
    return not summary["pinned"] and not summary["baseline"] and summary["status"] in ("pursuing", "paused")


def _goal(glance: Glance, workspace: Path, options: dict[str, str]) -> tuple[Row | None, Row | None]:
    """The goal the command names (`--goal`, `gk report` only), or the current goal of the thread it names or of
    the workspace's current thread; and that goal's thread."""
    if goal_id := options.get("--goal"):
        goal = glance.goal(goal_id)
        return goal, glance.thread(goal["thread_id"]) if goal else None
    thread_id = options.get("--thread")
    thread = glance.thread(thread_id) if thread_id else glance.current_thread(workspace)
    return (glance.current_goal(thread["thread_id"]) if thread else None), thread


def _log(glance: Glance, goal: Row, out: Output) -> int:
    """`gk log`: a line per event worth one, a page at a time (each page's lines are made before it is printed,
    so a payload this reading does not know, on the first page, leaves the whole log to the full command)."""
    for page in glance.event_pages(goal):
        out.write([[(f"{row['seq']:>5} {line}", "")] for row in page
                   if (line := event_line(row["kind"], row["actor"], row["payload"])) is not None])
    return 0


def _threads(glance: Glance, cwd: Path | None, out: Output) -> int:
    threads = glance.threads()
    current = None
    if cwd is not None:
        workspace = workspace_of(cwd)
        threads = [thread for thread in threads if Path(thread["workspace"]) == workspace]
        found = glance.current_thread(workspace)
        current = found["thread_id"] if found else None
    out.write([[(line, "")] for line in thread_lines(threads, current)])
    return 0
