"""Terminal rendering for the CLI: errors, goal summaries, event lines and the live status line.

Only presentation lives here; every decision was made elsewhere. Everything printed is untrusted until shown
otherwise (model text, tool output, the objective), so both consoles read no markup or emoji codes in strings,
and a render hook neutralises control and escape sequences in every segment they write (safe_text.py): our own
styles come from `Text` objects, never from markup inside an f-string.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console, ConsoleRenderable, RenderHook
from rich.table import Table
from rich.text import Text

from goalkeeper import events as ev
from goalkeeper.core.safe_text import neutralise
from goalkeeper.errors import GoalkeeperError
from goalkeeper.goals.views import GoalSummary
from goalkeeper.render.ansi import write_text as write_text  # the CLI's writer of plain text
from goalkeeper.render.summary import Line, goal_lines, thread_lines
from goalkeeper.render.surface import summary_lines
from goalkeeper.render.terminal import Inert, event_line

if TYPE_CHECKING:
    from rich.live import Live

    from goalkeeper.contract.lint import Finding, LintReport
    from goalkeeper.goals.doctor import Finding as DoctorFinding
    from goalkeeper.goals.prd import Distilled, Implementation
    from goalkeeper.sessions.drafting import DraftResult
    from goalkeeper.sessions.planning import PlanResult
    from goalkeeper.sessions.session import ToolUse
    from goalkeeper.sessions.side import SideAnswer
    from goalkeeper.store import EventRecord, ThreadRecord
    from goalkeeper.templates import Template


class _Neutralise(RenderHook):
    """The output boundary: whatever either console prints is drawn through `Inert`."""

    def process_renderables(self, renderables: list[ConsoleRenderable]) -> list[ConsoleRenderable]:
        return [Inert(renderable) for renderable in renderables]


def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False, emoji=False)
    console.push_render_hook(_Neutralise())
    return console


out = _console(stderr=False)
err = _console(stderr=True)


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line from pieces: a str is plain text (never markup), a (text, style) pair is styled."""
    return Text.assemble(*parts)


def write_lines(lines: Iterable[str]) -> None:
    """Lines of JSON (already escaped by json.dumps) to stdout, flushed together: one page of `gk log --json`."""
    sys.stdout.writelines(line + "\n" for line in lines)
    sys.stdout.flush()


def show_event_lines(records: list[EventRecord]) -> None:
    """One page of `gk log`: a line per event worth one, printed (and flushed) in one go."""
    lines = [f"{record.seq:>5} {line}" for record in records if (line := event_line(record)) is not None]
    if lines:
        out.print("\n".join(lines))


def show_findings(findings: list[DoctorFinding]) -> None:
    """`gk doctor`: each thing checked, ok or not, with the fix for what is not."""
    for finding in findings:
        mark = ("ok", "green") if finding.ok else ("problem", "bold red")
        out.print(styled(mark, f"  {finding.name}: ", finding.detail))
        if finding.hint:
            out.print(styled(("  fix: ", "bold"), finding.hint))


def show_error(error: GoalkeeperError) -> None:
    """The one place errors are rendered: what happened, then how to fix it."""
    err.print(Text("error: ", style="bold red") + Text(error.message))
    if error.hint:
        err.print(Text("  fix: ", style="bold") + Text(error.hint))


def show_summary(summary: GoalSummary, to_pin: Sequence[str] = ()) -> None:
    """The `gk goal` / `gk status` view; `to_pin`, before the first run, the files its baseline will pin."""
    draw(goal_lines(summary.as_json(), to_pin))


def draw(lines: list[Line]) -> None:
    """Styled lines (render/summary.py) on stdout, in one print."""
    if lines:
        out.print(Text("\n").join(Text.assemble(*line) for line in lines))


def show_threads(threads: list[ThreadRecord], current: str | None = None) -> None:
    """`gk threads`, printed in one go (a line at a time flushes a line at a time); `current`'s line is marked."""
    lines = thread_lines([dataclasses.asdict(thread) for thread in threads], current)
    if lines:
        out.print("\n".join(lines))


class TextStream:
    """Model text as it arrives, and the read-only tool calls in between (`gk side`, `gk plan`).

    The text is written as is, never read as markup: it is the model's.
    """

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.mid_line = False

    def text(self, delta: str) -> None:
        if self.quiet or not delta:
            return
        sys.stdout.write(neutralise(delta))
        sys.stdout.flush()
        self.mid_line = not delta.endswith("\n")

    def tool(self, use: ToolUse) -> None:
        if self.quiet:
            return
        self.end_line()
        arguments = use.arguments if len(use.arguments) <= 100 else use.arguments[:99] + "…"
        out.print(Text(f"  → {use.name} {arguments}" + ("" if use.ok else "  ✗"), style="dim"))

    def end_line(self) -> None:
        """Finish a line the text left open."""
        if self.mid_line:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.mid_line = False


def show_side_footer(answer: SideAnswer) -> None:
    """What a side question cost, and that the goal was not charged for it."""
    out.print(Text(f"side question · {answer.cost.line()}", style="dim"))
    out.print(Text(f"  not charged to the goal's budget; stored as side event {answer.seq}, outside the goal's "
                   "context", style="dim"))


def show_plan(result: PlanResult, markdown: str, adopt: str) -> None:
    """The plan as Markdown (neutralised, not rendered), what it cost, then the command that adopts it."""
    write_text(markdown)
    out.print(Text(f"\nplan stored (event {result.seq}) · {result.cost.line()}", style="dim"))
    out.print("Review it, then adopt it (suggested checks become checks only through this command):")
    out.print(Text(f"  {adopt}", style="bold"))


SEVERITY_MARK = {"error": ("✗ error  ", "bold red"), "warning": ("! warning", "yellow"), "info": ("· note   ", "dim")}
SCORE_STYLE = {0: "red", 1: "yellow", 2: "green"}


def show_lint(report: LintReport) -> None:
    """`gk lint`: the score of each element, then every finding with its fix, then the verdict."""
    ran = "checks run once in a sandboxed copy" if report.ran else "checks read, not run (--no-run)"
    out.print(Text(f"goal score {report.total}/{2 * len(report.scores)} · ", style="bold")
              + Text(f"{_count(len(report.errors), 'error')}, {_count(len(report.warnings), 'warning')} · {ran}"))
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    for column in ("element", "score", "has"):
        table.add_column(column)
    for score in report.scores:
        table.add_row(score.element, Text(f"{score.score} {score.label}", style=SCORE_STYLE[score.score]),
                      Text(score.note))
    out.print(table)
    for finding in report.findings:
        _show_finding(out, finding)
    for note in report.notes:
        out.print(Text(f"· {note}", style="dim"))
    if report.pinned:
        shown = ", ".join(report.pinned[:8]) + (f" … (+{len(report.pinned) - 8})" if len(report.pinned) > 8 else "")
        out.print(Text(f"pinned at baseline (tamper-evident): {shown}", style="dim"))
    for line in summary_lines(report.surface):
        out.print(Text(line, style="dim"))
    if report.errors:
        out.print(Text(f"{_count(len(report.errors), 'error')}: `gk goal` and `gk exec` refuse this goal until "
                       "they are fixed (or --force)", style="bold red"))
    else:
        out.print(Text("no errors: ready for `gk goal`", style="bold green"))


def show_lint_gate(report: LintReport, forced: bool) -> None:
    """Before a goal is set: its lint errors and warnings on stderr, and whether it was refused."""
    shown = [finding for finding in report.findings if finding.severity != "info"]
    for finding in shown:
        _show_finding(err, finding)
    if report.errors and forced:
        err.print(Text(f"setting it anyway (--force), despite {_count(len(report.errors), 'lint error')}",
                       style="yellow"))
    elif report.errors:
        err.print(Text(f"refused: {_count(len(report.errors), 'lint error')}, so the goal was not started (exit 4). "
                       "Fix them (`gk lint` shows each element's score), or pass --force to set the goal anyway",
                       style="bold red"))
        return
    for line in summary_lines(report.surface):  # what the lint run saw; the baseline records its own
        err.print(Text(line, style="dim"))


def _show_finding(console: Console, finding: Finding) -> None:
    mark, style = SEVERITY_MARK[finding.severity]
    console.print(Text(mark, style=style) + Text(f" {finding.element}/{finding.code}: ", style="bold")
                  + Text(finding.message))
    console.print(Text("    fix: ", style="bold") + Text(finding.fix))


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def show_draft(result: DraftResult) -> None:
    """`gk draft`: the file as written, what lint says about it, what it cost, and what to do next."""
    write_text(result.text)
    show_lint(result.lint)
    out.print(Text(f"draft written to {result.path} (event {result.seq}) · {result.cost.line()}", style="dim"))
    out.print(Text("It is not set. Review and edit it, then: ") + Text(f"gk goal --file {result.path}", style="bold"))


def show_distilled(result: Distilled) -> None:
    """`gk distill`: where the PRD went and what it cost."""
    usage = result.usage
    out.print(Text(f"PRD for goal {result.goal_id} written to ") + Text(str(result.path), style="bold"))
    out.print(Text(f"1 request · {usage.input_tokens:,} input tokens, {usage.output_tokens:,} output · "
                   f"{result.model} · not charged to the goal", style="dim"))
    out.print(Text(f"Review it, then start a clean implementation: gk implement {result.path}"))


def show_implementation(started: Implementation, summary: GoalSummary, running: bool) -> None:
    """`gk implement`: the new goal, its branch, and the spike it re-implements."""
    out.print(styled(("Goal", "bold"), f" {started.goal.goal_id} implements the PRD of spike {started.spike.goal_id}"))
    out.print(f"  branch:    {started.branch.name} (new, from the spike's base commit "
              f"{started.branch.base_commit[:12]})")
    out.print(f"  spike:     {started.spike.branch} (left as it is)")
    out.print(f"  checks:    {summary.checks_total}, the spike's, with its constraints, boundaries and budget")
    if not running:
        out.print("Run it with: gk run")


def show_templates(templates: list[Template]) -> None:
    """`gk init --list`."""
    width = max(len(template.name) for template in templates)
    for template in templates:
        out.print(Text(template.name.ljust(width), style="bold") + Text(f"  {template.summary}"))
    out.print(Text("Write one with: gk init --template NAME [--output goal.toml]", style="dim"))


class EventPrinter:
    """Prints event lines as they are committed, with a live status line on a terminal."""

    def __init__(self, as_json: bool, status: Any = None) -> None:
        self.as_json = as_json
        self.status = status
        self.live: Live | None = None
        self._shown = 0.0
        if not as_json and sys.stdout.isatty() and status is not None:
            from rich.live import Live  # its refresh thread: only a run on a terminal shows a live line

            self.live = Live(Text(""), console=out, refresh_per_second=4, transient=True)

    def __enter__(self) -> EventPrinter:
        if self.live:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.live.stop()

    def __call__(self, record: EventRecord) -> None:
        if self.as_json:
            print(json.dumps({"seq": record.seq, "kind": record.event.kind, "actor": record.event.actor,
                              "goal_id": record.goal_id, "ts": record.ts, "payload": ev.payload_of(record.event)}),
                  flush=True)
            return
        line = event_line(record)
        if line:
            out.print(line)
        if self.live and self.status and time.monotonic() - self._shown > 0.25:
            self._shown = time.monotonic()  # the status line reads the store; a few times a second is enough
            # Live draws this after the render hooks ran, so it is made inert here.
            self.live.update(Inert(Text(self.status(), style="bold cyan")))
