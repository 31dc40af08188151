"""A stored event's one-line form, read from its row: kind, actor and payload as stored (events.payload_of).

Plain text from plain dicts, so `gk log` can print a history without building an event model (or loading
pydantic); the typed faces (the run's printer, the TUI's transcript) pass `payload_of(event)`, and both read the
same lines. Optional fields are absent from a payload that never set them: those are read with their defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from goalkeeper.tools.shell_call import command_of

Payload = dict[str, Any]


def event_line(kind: str, actor: str | None, payload: Payload) -> str | None:
    """A short human line for an event, or None for events not worth a line."""
    shown = _LINES.get(kind)
    return None if shown is None else shown(payload, kind, actor)


def _model_response(p: Payload, kind: str, actor: str | None) -> str:
    text = p["content"].strip().splitlines()
    names = ", ".join(call["name"] for call in p["tool_calls"])
    return "  model: " + (text[0][:100] if text else "") + (f" → {names}" if names else "")


def _tool_intent(p: Payload, kind: str, actor: str | None) -> str | None:
    if p["name"] == "shell":
        return f"  $ {command_of(p['arguments'])[:120]}"
    if "__" in p["name"]:  # an MCP server's NAME__tool
        return f"  ⇄ {p['name']} {p['arguments'][:100]}"
    return None


def _tool_result(p: Payload, kind: str, actor: str | None) -> str | None:
    if p["ok"]:
        return None
    output = p["output"]
    return f"  ✗ {p['name']}: {output.splitlines()[0][:120] if output else ''}"


def _check_run(p: Payload, kind: str, actor: str | None) -> str:
    verdicts = ", ".join(f"{e['name']} {'PASS' if e['passed'] else 'FAIL'}" for e in p["evidence"])
    return f"  {kind}: {verdicts or '(no checks)'}"


def _attempts(p: Payload, kind: str, actor: str | None) -> str:
    counts = ", ".join(f"{name} {count}" for name, count in p["attempts"].items())
    return f"  completion refused: failing {', '.join(p['failing'])} (attempts: {counts})"


def _instructions(p: Payload, kind: str, actor: str | None) -> str:
    shown = ", ".join(f"{item['path']}{' (cut)' if item.get('cut') else ' (not read)' if item.get('skipped') else ''}"
                      for item in p["files"])
    return f"  instructions: {shown}"


def _wait_started(p: Payload, kind: str, actor: str | None) -> str:
    return f"  wait: until `{p['until'][:100]}` exits 0, every {p['interval_s']:g}s for at most {p['timeout_s']:g}s"


def _wait_ended(p: Payload, kind: str, actor: str | None) -> str:
    probes = p["probes"]
    return f"  wait ended ({p['reason']}) after {p['waited_s']:.1f}s, {probes} probe{'s' if probes != 1 else ''}"


def hook_line(p: Payload, kind: str = "hook_ran", actor: str | None = None) -> str:
    """A hook run in one line: its event, command, exit (or timeout), duration, and whether it vetoed."""
    ended = f"exit {p['exit_code']}, {p['duration_s']:g}s"
    if p.get("timed_out"):
        ended = f"timed out after {p['duration_s']:g}s, process group killed"
    tool = f" on {p['tool']}" if p.get("tool") else ""
    veto = " — VETOED" if p.get("vetoed") else ""
    tail, command = p["output_tail"].strip(), p["command"].strip()
    said = tail.splitlines()[-1][:80] if tail else ""
    first = command.splitlines()[0][:60] if command else ""
    return f"  hook {p['event']}{tool} `{first}`: {ended}{veto}" + (f": {said}" if said else "")


def _child_ended(p: Payload, kind: str, actor: str | None) -> str:
    files = p.get("files_changed") or []
    return f"  child {p['child_thread_id']} {p['status']}, {len(files)} file(s) changed: {p['summary'].strip()[:80]}"


_LINES: dict[str, Callable[[Payload, str, str | None], str | None]] = {
    "turn_started": lambda p, kind, actor: f"── turn {p['turn']} ({p['kind']})",
    "model_response": _model_response,
    "tool_intent": _tool_intent,
    "tool_result": _tool_result,
    "baseline": _check_run,
    "evidence": _check_run,
    "status_changed": lambda p, kind, actor: f"● {p.get('from') or 'new'} → {p['to']} ({p['reason']}, by {actor})",
    "attempt_counted": _attempts,
    "sandbox": lambda p, kind, actor: (f"  sandbox: {p['mode']}, network {'on' if p['network'] else 'off'}, "
                                       f"{p['processes']}"),
    "instructions_loaded": _instructions,
    "mcp_servers": lambda p, kind, actor: "  MCP servers: " + ", ".join(f"{name} ({count} tools)"
                                                                       for name, count in p["servers"].items()),
    "nudge": lambda p, kind, actor: f"  nudge: {p['why']}",
    "budget_exhausted": lambda p, kind, actor: f"  budget used up ({p['reason']}): wrap-up turn",
    "budget_capped": lambda p, kind, actor: f"  the batch's cap was reached ({p['reason']}): wrap-up turn",
    "engine_started": lambda p, kind, actor: (f"  submitted to {p['engine']} at {p['address']}: workflow "
                                              f"{p['workflow_id']}, repository {p['remote']}"),
    "report_pushed": lambda p, kind, actor: f"  report pushed to {p['remote']} ({p['ref']})",
    "forked": lambda p, kind, actor: (f"  forked from {p['parent_thread_id']} at {p['commit'][:12]} "
                                      f"(branch {p['branch']})"),
    "provider_retry": lambda p, kind, actor: f"  provider retry {p['attempt']} in {p['delay_s']}s: {p['error']}",
    "wait_started": _wait_started,
    "wait_ended": _wait_ended,
    "side": lambda p, kind, actor: f"  side question: {p['question'][:80]} → {p['answer'].strip()[:80]}",
    "hook_ran": hook_line,
    "subagent_started": lambda p, kind, actor: (f"  child {p['child_thread_id']} started: {p['task'].strip()[:80]} "
                                                f"(writes {', '.join(p['paths'])})"),
    "subagent_ended": _child_ended,
}
