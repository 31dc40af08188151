"""The final artifact: checkpoints and evidence turned into Markdown (a PR description) and JSON.

It reads only the store. Claims backed by harness evidence are kept apart from the model's own word.
"""

from __future__ import annotations

from typing import Any

from goalkeeper.contract import Contract, format_duration
from goalkeeper.store import EventRecord, GoalRecord, Store
from goalkeeper.surface import TAMPERING
from goalkeeper.verify import Evidence
from goalkeeper.views import GoalSummary, goal_events, summarize


def build_report(store: Store, goal: GoalRecord) -> dict[str, Any]:
    """The report as a JSON-ready dict."""
    summary = summarize(store, goal)
    records = goal_events(store, goal, ["checkpoint", "status_changed", "turn_ended", "evidence",
                                        "verification_pins"])
    surface = next((r.payload.get("surface") for r in reversed(records)
                    if r.kind == "evidence" and r.payload.get("surface")), None)
    pinned = next((r.payload for r in records if r.kind == "verification_pins"), None)
    checkpoints = [r.payload for r in records if r.kind == "checkpoint"]
    changes = [{"seq": r.seq, "actor": r.actor, **r.payload} for r in records if r.kind == "status_changed"]
    blockers = [r.payload["signal"] for r in records
                if r.kind == "turn_ended" and (r.payload.get("signal") or {}).get("status") == "blocked"]
    completions = _completion_claims(records)
    files = sorted({f for c in checkpoints for f in c.get("files_touched", [])})
    commands = [cmd for c in checkpoints for cmd in c.get("commands", [])]
    metric_trend = [{"turn": r.payload["turn"], **{e["name"]: e["metric"] for e in r.payload["evidence"]
                                                   if e.get("metric") is not None}}
                    for r in records if r.kind == "evidence"]
    return {
        "goal_id": goal.goal_id,
        "objective": summary.objective,
        "verified": summary.verified,
        "status": summary.status,
        "reason": summary.reason,
        "contract": Contract.model_validate(goal.contract).model_dump(mode="json"),
        "baseline": [e.__dict__ for e in summary.baseline],
        "final": [e.__dict__ for e in summary.evidence],
        "keep_green_dropped": summary.keep_green_dropped,
        "metric_trend": [m for m in metric_trend if len(m) > 1],
        "checkpoints": checkpoints,
        "status_changes": changes,
        "files_touched": files,
        "commands": commands,
        "blockers": blockers,
        "completion_claims": completions,
        "assumptions": [c["note"]["assumptions"] for c in checkpoints if (c.get("note") or {}).get("assumptions")],
        "budget": _budget(summary),
        "verification_surface": surface,
        "pinned_files": pinned["files"] if pinned else [],
        "verify_edits": pinned["edits"] if pinned else None,
        "tampering_attempts": sum(1 for r in records if r.kind == "evidence"
                                  and any(e["name"] == TAMPERING and not e["passed"] for e in r.payload["evidence"])),
    }


def _completion_claims(records: list[EventRecord]) -> list[dict[str, Any]]:
    """Each completion request with the harness's verdict on it (the check run that followed)."""
    claims: list[dict[str, Any]] = []
    for record in records:
        signal = record.payload.get("signal") or {}
        if record.kind == "turn_ended" and signal.get("status") == "complete":
            claims.append({"summary": signal.get("summary") or "", "turn": record.payload["turn"], "accepted": None})
        elif record.kind == "evidence" and claims and claims[-1]["accepted"] is None:
            claims[-1]["accepted"] = all(e["passed"] for e in record.payload["evidence"])
    return claims


def _budget(summary: GoalSummary) -> dict[str, Any]:
    return {"tokens": summary.tokens_used, "tokens_budget": summary.tokens_budget, "usd": round(summary.usd_used, 6),
            "usd_budget": summary.usd_budget, "time_s": round(summary.elapsed_s, 1),
            "time_budget_s": summary.time_budget_s, "turns": summary.turns, "turns_budget": summary.turns_budget}


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown, suitable as a pull-request description."""
    label = "" if report["verified"] else " (UNVERIFIED: no checks; completion rests on the model's audit)"
    lines = [f"# Goal report: {report['status']}{label}", "", f"**Objective:** {report['objective']}", "",
             f"**Status:** {report['status']} — reason `{report['reason']}` (goal `{report['goal_id']}`)", "",
             "## Evidence (run by the harness)", "", evidence_table(report["baseline"], report["final"]), ""]
    if report["keep_green_dropped"]:
        lines += ["Constraints red at baseline (reported, not required): "
                  + ", ".join(f"`{c}`" for c in report["keep_green_dropped"]), ""]
    if report["metric_trend"]:
        lines += ["### Metric trend", "", *[f"- turn {m['turn']}: " + ", ".join(
            f"{k}={v}" for k, v in m.items() if k != "turn") for m in report["metric_trend"]], ""]
    lines += _surface_section(report)
    lines += ["## Checkpoints", "", *_timeline(report["checkpoints"]), ""]
    lines += _claims(report)
    lines += ["## Files touched", "", *([f"- `{f}`" for f in report["files_touched"]] or ["(none)"]), ""]
    lines += ["## Commands run", "", *([f"- `{c}`" for c in report["commands"][-30:]] or ["(none)"]), ""]
    budget = report["budget"]
    lines += ["## Budget", "", f"- tokens: {budget['tokens']:,}" + _of(budget["tokens_budget"]),
              f"- cost: ${budget['usd']:.4f}" + _of(budget["usd_budget"], "$"),
              f"- time: {format_duration(budget['time_s'])}" + (
                  f" of {format_duration(budget['time_budget_s'])}" if budget["time_budget_s"] else ""),
              f"- turns: {budget['turns']}" + _of(budget["turns_budget"]), ""]
    return "\n".join(lines)


def evidence_table(baseline: list[dict[str, Any]], final: list[dict[str, Any]]) -> str:
    """Each check and constraint at baseline and at the end."""
    before = {(e["kind"], e["name"]): Evidence(**e) for e in baseline}
    rows = ["| check | kind | baseline | final | metric (target) | exit | duration |",
            "|---|---|---|---|---|---|---|"]
    for item in (Evidence(**e) for e in final):
        start = before.get((item.kind, item.name))
        metric = f"{item.metric} ({item.target})" if item.target else ""
        rows.append(f"| `{item.name}` | {item.kind} | {_verdict(start)} | {_verdict(item)} | {metric} | "
                    f"{item.exit_code} | {item.duration_s:.1f}s |")
    return "\n".join(rows) if final else "(no checks have run)"


def _verdict(evidence: Evidence | None) -> str:
    return "—" if evidence is None else ("PASS" if evidence.passed else "FAIL")


def _timeline(checkpoints: list[dict[str, Any]]) -> list[str]:
    rows = ["| turn | kind | done | verified | remaining | files |", "|---|---|---|---|---|---|"]
    for c in checkpoints:
        note = c.get("note") or {}
        rows.append(f"| {c['turn']} | {c['kind']} | {_cell(note.get('done'))} | {_cell(note.get('verified'))} | "
                    f"{_cell(note.get('remaining'))} | {len(c.get('files_touched', []))} |")
    return rows if checkpoints else ["(no turns yet)"]


def _claims(report: dict[str, Any]) -> list[str]:
    """Confirmed claims (harness evidence) apart from unverified ones (the model's word)."""
    confirmed = [f"`{e['name']}` passed (exit {e['exit_code']})" for e in report["final"] if e["passed"]]
    claims = report["completion_claims"]
    unverified = [c["summary"] for c in claims if c["accepted"] is not False]
    refused = [f"turn {c['turn']}: {_cell(c['summary'])}" for c in claims if c["accepted"] is False]
    notes = [c.get("note") or {} for c in report["checkpoints"]]
    unverified += [note["verified"] for note in notes if note.get("verified")]
    lines = ["## Claims", "", "**Confirmed by the harness:**", *([f"- {c}" for c in confirmed] or ["- (none)"]),
             "", "**Unverified (the model's word only):**",
             *([f"- {_cell(c)}" for c in unverified if c] or ["- (none)"]),
             "", "**Completion claims the harness refused (its checks failed):**",
             *([f"- {c}" for c in refused] or ["- (none)"]), ""]
    for blocker in report["blockers"]:
        lines += ["## Blocked", "", f"- **blocker:** {blocker.get('blocker')}",
                  f"- **would unblock:** {blocker.get('next_input') or '(not given)'}",
                  f"- **summary:** {blocker.get('summary')}", ""]
    if report["assumptions"]:
        lines += ["## Assumptions", "", *[f"- {_cell(a)}" for a in report["assumptions"]], ""]
    return lines


def _surface_section(report: dict[str, Any]) -> list[str]:
    """The verification surface: unchanged, extended (new tests only) or modified, with the diff."""
    surface = report.get("verification_surface")
    if not surface:
        return []
    heading = ("## Verification surface changed" if surface["state"] == "modified" and report["verify_edits"] == "allow"
               else "## Verification surface")
    lines = [heading, "", f"**{surface['state']}** ({len(report['pinned_files'])} files pinned at baseline, "
             f"edits: {report['verify_edits']})", ""]
    lines += [f"- {label}: " + ", ".join(f"`{p}`" for p in surface[label])
              for label in ("modified", "deleted", "added") if surface.get(label)]
    if report["tampering_attempts"]:
        lines += [f"- completion refused {report['tampering_attempts']} time(s) as `{TAMPERING}`: the checks "
                  "passed only with pinned files changed"]
    if surface.get("diff"):
        lines += ["", "```diff", surface["diff"].rstrip(), "```"]
    return [*lines, ""]


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")[:200]


def _of(limit: float | None, prefix: str = "") -> str:
    return f" of {prefix}{limit:,}" if limit else ""
