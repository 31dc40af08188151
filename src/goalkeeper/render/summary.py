"""What `gk goal` and `gk status` show of a goal, and what `gk threads` lists, as styled lines built from plain
dicts: the summary's JSON form (goals/views.GoalSummary.as_json, or goals/glance.py's, which is the same dict).

A line is a list of (text, style) segments, style "" for plain. The CLI's rich console draws them (cli/console.py)
and so does the glance's plain writer (render/ansi.py), so both paths print the same text. No rich, no pydantic:
showing a goal loads neither.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from goalkeeper.core.figures import format_duration
from goalkeeper.core.lifecycle import status_label
from goalkeeper.render.instructions import instruction_lines
from goalkeeper.render.review import review_lines
from goalkeeper.render.surface import summary_lines, surface_lines

Segment = tuple[str, str]
"""Text and its style ("" for none): rich's style names, which render/ansi.py also knows."""
Line = list[Segment]

STATUS_STYLE = {"pursuing": "cyan", "paused": "yellow", "achieved": "green", "unmet": "red",
                "budget_limited": "magenta"}
EVIDENCE_COLUMNS = ("check", "kind", "result", "metric", "exit", "time")
RESUME_HINT = 'gk goal resume --note "what you want changed or kept"'


def goal_lines(summary: dict[str, Any], to_pin: Sequence[str] = (), now: float | None = None) -> list[Line]:
    """The `gk goal` / `gk status` view of a summary dict; `to_pin`, before the first run, the files its baseline
    will pin; `now` (default: the clock) dates a wait's deadline."""
    verified = summary["verified"]
    lines: list[Line] = [[("Goal", "bold"), (f" {summary['goal_id']}", ""),
                          ("" if verified else " (unverified: no checks)", "yellow")],
                         _plain(f"  objective: {summary['objective']}")]
    lines += _checklist(summary["checklist"])
    label = status_label(summary["status"], verified)
    status = label if summary["status"] == "pursuing" else f"{label} ({summary['reason']})"
    runner = f"  · runner {summary['runner']}" if summary["runner"] else ""
    lines.append([("  status:    ", ""), (status, STATUS_STYLE.get(summary["status"], "white")), (runner, "")])
    lines += [_plain(f"  {line}") for line in review_lines(summary["review_point"], RESUME_HINT)]
    if summary["waiting"]:
        lines += waiting_lines(summary["waiting"], running=summary["runner"] is not None, now=now)
    lines += [_plain(text) for text in _figures(summary)]
    if summary["keep_green_dropped"]:
        lines.append([("  ", ""), ("red at baseline, not required:", "yellow"),
                      (f" {', '.join(summary['keep_green_dropped'])}", "")])
    lines += [_plain(text) for text in _surroundings(summary, to_pin)]
    if summary["evidence"]:
        lines += evidence_lines(summary["evidence"])
    lines += [_plain(f"  child:     {child_line(child)}") for child in summary["children"]]
    checkpoint = summary["last_checkpoint"]
    if checkpoint:
        note = checkpoint["note"]
        lines.append(_plain(f"  last checkpoint (turn {checkpoint['turn']}): {note.get('done') or '(no note)'}"))
        if note.get("next"):
            lines.append(_plain(f"    next: {note['next']}"))
    return lines


def _checklist(items: list[dict[str, Any]]) -> list[Line]:
    if not items:
        return []
    finished = sum(item["done"] for item in items)
    return [_plain(f"  checklist: {finished}/{len(items)} done")] + [
        [("    ", ""), ("[x]", "green") if item["done"] else ("[ ]", ""), (f" {item['number']}. {item['item']}", "")]
        for item in items]


def _figures(summary: dict[str, Any]) -> list[str]:
    """Checks, tokens, cost, time and turns, each against its budget."""
    checks = f"  checks:    {summary['checks_passing']}/{summary['checks_total']} passing"
    shown = [checks] if summary["verified"] else []
    budget = f" / {summary['tokens_budget']:,}" if summary["tokens_budget"] else ""
    shown.append(f"  tokens:    {summary['tokens_used']:,}{budget}")
    shown.append(f"  cost:      ${summary['usd_used']:.4f}"
                 + (f" / ${summary['usd_budget']:.2f}" if summary["usd_budget"] else ""))
    time_limit = f" / {format_duration(summary['time_budget_s'])}" if summary["time_budget_s"] else ""
    shown.append(f"  elapsed:   {format_duration(summary['elapsed_s'])}{time_limit}")
    turns = f" / {summary['turns_budget']}" if summary["turns_budget"] else ""
    shown.append(f"  turns:     {summary['turns']}{turns}")
    return shown


def _surroundings(summary: dict[str, Any], to_pin: Sequence[str]) -> list[str]:
    """Instruction files, pinned files and the verification surface."""
    shown = []
    for number, line in enumerate(instruction_lines(summary["instructions"])):
        shown.append(("  instructions: " if number == 0 else "                ") + line)
    pinned = summary["pinned"] or list(to_pin)
    if pinned:
        listed = ", ".join(pinned[:6]) + (f" … (+{len(pinned) - 6})" if len(pinned) > 6 else "")
        shown.append(f"  pinned:    {listed}"
                     + ("" if summary["pinned"] else " (to be pinned by the first run's baseline)"))
    shown += [f"  {line}" for line in surface_lines(summary["surface"])]
    shown += [f"  {line}" for line in summary_lines(summary["observed_surface"])]
    return shown


def waiting_lines(waiting: dict[str, Any], running: bool, now: float | None = None) -> list[Line]:
    """The wait a goal is in: what is probed, how often, when it ends at the latest, and who carries it on."""
    left = waiting["deadline"] - (time.time() if now is None else now)
    ends = f"ends within {format_duration(left)}" if left > 0 else "its deadline has passed (one last probe)"
    carried = "" if running else "; no runner: `gk run` carries the wait on"
    return [[("  waiting:   ", ""), (f"until `{waiting['until']}` exits 0", "cyan")],
            _plain(f"             probed every {format_duration(waiting['interval_s'])}, {ends}{carried}")]


def evidence_lines(evidence: list[dict[str, Any]]) -> list[Line]:
    """The newest evidence as a table: a header, then a row per check, each cell padded by two spaces a side."""
    rows: list[list[Segment]] = [[(column, "bold") for column in EVIDENCE_COLUMNS]]
    for item in evidence:
        metric = f"{item['metric']} ({item['target']})" if item.get("target") else ""
        rows.append([(item["name"], ""), (item["kind"], ""), ("PASS", "green") if item["passed"] else ("FAIL", "red"),
                     (metric, ""), (str(item["exit_code"]), ""), (f"{item['duration_s']:.1f}s", "")])
    widths = [max(len(row[column][0]) for row in rows) for column in range(len(EVIDENCE_COLUMNS))]
    return [[segment for (text, style), width in zip(row, widths, strict=True)
             for segment in (("  ", ""), (text, style), (" " * (width - len(text)) + "  ", ""))] for row in rows]


def child_line(child: dict[str, Any]) -> str:
    """A child agent in one line: `thr_1a2b… done · 2 files · 1,234 tok · docs/: fix the API docs`."""
    paths = ", ".join(path.lstrip("/") for path in child["paths"])
    task = child["task"].strip()
    return (f"{child['thread_id']} {child['status']} · {child['files_changed']} file(s) · "
            f"{child['charged_tokens']:,} tok · {paths}: {task.splitlines()[0][:60] if task else ''}")


def thread_lines(threads: list[dict[str, Any]], current: str | None = None) -> list[str]:
    """`gk threads`: a line per thread (its id, creation time, workspace, the thread it was forked from);
    with `current` (listing one workspace's threads), that one is marked `*`."""
    return [("* " if thread["thread_id"] == current else "  " if current is not None else "")
            + f"{thread['thread_id']}  {time.strftime('%Y-%m-%d %H:%M', time.localtime(thread['created_at']))}  "
            f"{thread['workspace']}" + (f"  (fork of {thread['parent_thread_id']})" if thread["parent_thread_id"]
                                        else "")
            for thread in threads]


def _plain(text: str) -> Line:
    return [(text, "")]
