"""The final artifact: checkpoints and evidence turned into Markdown, a pull-request description, and JSON.

It reads only the store, as plain data: the goal's summary dict, its contract and its events as rows
(store/records.EventRecord.row), so a glance at the store (cli/glance.py) builds the same report without the
typed records. Claims backed by harness evidence are kept apart from the model's own word.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from goalkeeper.core.figures import format_duration, metric_point
from goalkeeper.core.lifecycle import REASONS, status_label
from goalkeeper.render.instructions import instruction_lines
from goalkeeper.verify import TAMPERING
from goalkeeper.workspace.measured import Row, measured_checkpoints

if TYPE_CHECKING:
    from goalkeeper.store import Goal, Store

CLEAN_ROOM = "clean room"
"""Evidence.room of a check run in the verification tree built from the harness's baseline objects."""
SPARK = "▁▂▃▄▅▆▇█"
COMMANDS_SHOWN = 30
REPORT_KINDS = ("baseline", "checkpoint", "status_changed", "turn_ended", "evidence", "verification_pins",
                "goal_branch", "implements", "distilled", "compacted", "side", "hook_ran")
"""The kinds of event a report reads."""


def build_report(store: Store, goal: Goal) -> dict[str, Any]:
    """The report as a JSON-ready dict, read through the Store; `render_markdown` and `render_pr` turn it into
    text."""
    from goalkeeper import events as ev  # the Store reads by event class; a glance (report_of's caller) does not
    from goalkeeper.goals.views import goal_events, summarize

    implemented_by = []
    for thread_id, implementing in store.goals_implementing(goal.goal_id):
        records = store.events(thread_id, goal_id=implementing, kinds=[ev.GoalBranchEvent])
        branch = next((record.event for record in records if isinstance(record.event, ev.GoalBranchEvent)), None)
        implemented_by.append({"goal_id": implementing, "branch": branch.name if branch else None})
    rows = [record.row() for record in goal_events(store, goal, ev.event_types(REPORT_KINDS))]
    return report_of(summarize(store, goal).as_json(), goal.contract.model_dump(mode="json"), rows, implemented_by)


def report_of(summary: dict[str, Any], contract: dict[str, Any], rows: list[Row],
              implemented_by: list[dict[str, Any]]) -> dict[str, Any]:
    """The report of a goal from its summary dict (views.GoalSummary.as_json), its contract as stored, its events
    of REPORT_KINDS as rows, oldest first, and the goals started from a PRD distilled from it (goal_id, branch)."""
    def payloads(kind: str) -> list[dict[str, Any]]:
        return [row["payload"] for row in rows if row["kind"] == kind]

    checkpoints, runs = payloads("checkpoint"), payloads("evidence")
    pinned = next(iter(payloads("verification_pins")), None)
    implements = next(iter(payloads("implements")), None)
    branch = next(iter(payloads("goal_branch")), None)
    report = {
        "goal_id": summary["goal_id"], "objective": summary["objective"], "verified": summary["verified"],
        "status": summary["status"], "reason": summary["reason"],
        "reason_text": REASONS.get(summary["reason"], summary["reason"]),
        "contract": contract,
        "branch": {key: branch.get(key) for key in ("name", "base_commit", "snapshot_commit")} if branch else None,
        "implements": {key: implements.get(key) for key in ("spike_goal_id", "spike_branch", "base_commit", "prd")}
        if implements else None,
        "implemented_by": implemented_by,
        "distilled": [{"output": row["payload"]["output"], "seq": row["seq"]} for row in rows
                      if row["kind"] == "distilled"],
        "baseline": summary["baseline"], "final": summary["evidence"],
        "keep_green_dropped": summary["keep_green_dropped"],
        "metric_baseline": next(iter(metric_points([(0, summary["baseline"])])), None),
        "metric_trend": metric_points([(run["turn"], run["evidence"]) for run in runs]),
        "checklist": summary["checklist"],
        "checkpoints": checkpoints,
        "status_changes": [{"seq": row["seq"], "actor": row["actor"], **row["payload"]} for row in rows
                           if row["kind"] == "status_changed"],
        "files_touched": sorted({f for c in checkpoints for f in c["files_touched"]}),
        "commands": [cmd for c in checkpoints for cmd in c["commands"]],
        "blockers": [e["signal"] for e in payloads("turn_ended") if (e.get("signal") or {}).get("status") == "blocked"],
        "completion_claims": _completion_claims(rows),
        "assumptions": [{"turn": c["turn"], "text": c["note"]["assumptions"]} for c in checkpoints
                        if c["note"].get("assumptions")],
        "budget": _budget(summary),
        "compactions": len(payloads("compacted")),
        "side_questions": [{"question": e["question"], "answer": e["answer"]} for e in payloads("side")],
        "verification_surface": next((run["surface"] for run in reversed(runs) if run.get("surface")), None),
        "pinned_files": pinned["files"] if pinned else [],
        "verify_edits": pinned["edits"] if pinned else None,
        "tests": test_evidence(summary["evidence"]),
        "tampering_attempts": sum(1 for run in runs
                                  if any(e["name"] == TAMPERING and not e["passed"] for e in run["evidence"])),
        "instructions": summary["instructions"],
        "hooks": [{"seq": row["seq"], **row["payload"]} for row in rows if row["kind"] == "hook_ran"],
    }
    report["label"] = status_label(summary["status"], summary["verified"])
    report["claims"] = claims_split(report)
    report["measured_checkpoints"] = measured_checkpoints(rows)
    return report


#: The id lists of a check's per-test evidence the report shows, in order, with their labels.
TEST_LISTS = (("fail_to_pass", "fail → pass"), ("added", "added"), ("missing", "missing"),
              ("deselected", "deselected"), ("newly_skipped", "newly skipped"), ("xfail_changed", "xfail changed"),
              ("not_fixed", "failed at baseline, not passing now"), ("newly_xfail", "newly xfail"),
              ("failing", "failing"))


def test_evidence(evidence: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per check: what its verdict rests on ("tests" or "exit code only") and, by id, the tests that went from
    fail to pass, were added, or are missing (from the last run's reporter; see verify/tests.py)."""
    found = []
    for item in evidence:
        if item["kind"] != "check" or item["name"] == TAMPERING:
            continue
        tests = item.get("tests") or {}
        entry: dict[str, Any] = {"check": item["name"], "basis": item.get("basis", "exit code")}
        if tests:
            entry |= {"runner": tests.get("runner"), "count": tests.get("count"), "counts": tests.get("counts", {}),
                      "canary": tests.get("canary"), "problems": tests.get("problems", []),
                      "truncated": tests.get("truncated", False)}
            entry |= {key: list(tests.get(key, [])) for key, _ in TEST_LISTS}
        found.append(entry)
    return found


def metric_points(runs: list[tuple[int, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Each check run's metric values as `{"turn": N, name: value, ...}`; runs that read no metric are left out."""
    return [point for turn, evidence in runs
            if (point := metric_point(turn, ((e["name"], e.get("metric")) for e in evidence))) is not None]


def _completion_claims(rows: list[Row]) -> list[dict[str, Any]]:
    """Each completion request with the harness's verdict on it (the check run that followed)."""
    claims: list[dict[str, Any]] = []
    for row in rows:
        event = row["payload"]
        if row["kind"] == "turn_ended" and (signal := event.get("signal") or {}).get("status") == "complete":
            claims.append({"summary": signal.get("summary") or "", "turn": event["turn"], "accepted": None})
        elif row["kind"] == "evidence" and claims and claims[-1]["accepted"] is None:
            failed = [e for e in event["evidence"] if not e["passed"]]
            claims[-1]["accepted"] = not failed
            claims[-1]["reasons"] = [_refusal(e) for e in failed]
    return claims


def _refusal(evidence: dict[str, Any]) -> str:
    """Why one failed piece of evidence refused a completion: its name, and its error or exit code."""
    why = evidence.get("error") or f"exit {evidence['exit_code']}"
    if evidence.get("metric") is not None and evidence.get("target") and not evidence.get("error"):
        why = f"measured {evidence['metric']:g}, target {evidence['target']}"
    return f"{evidence['name']}: {why}"


def _budget(summary: dict[str, Any]) -> dict[str, Any]:
    return {"tokens": summary["tokens_used"], "tokens_budget": summary["tokens_budget"],
            "usd": round(summary["usd_used"], 6), "usd_budget": summary["usd_budget"],
            "time_s": round(summary["elapsed_s"], 1), "time_budget_s": summary["time_budget_s"],
            "turns": summary["turns"], "turns_budget": summary["turns_budget"]}


# ---------------------------------------------------------------- Markdown


def render_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown. The sections come in a fixed order; optional ones only when they have content."""
    label = "" if report["verified"] else " (UNVERIFIED: no checks; completion rests on the model's audit)"
    if report["label"] != report["status"]:  # `achieved (unverified)` says the first half already
        label = " — UNVERIFIED: no checks; completion rests on the model's audit"
    lines = [f"# Goal report: {report['label']}{label}", "", *_objective(report), "", _status_line(report), ""]
    lines += ["## Branches", "", *_branches(report), ""]
    if report["instructions"]:
        lines += ["## Project instructions", "",
                  *[f"- {_cell(line)}" for line in instruction_lines(report["instructions"])], ""]
    lines += ["## Evidence (run by the harness)", "", evidence_table(report["baseline"], report["final"]), ""]
    lines += _tests_section(report.get("tests") or [])
    lines += _artifacts_section(report)
    if report["keep_green_dropped"]:
        lines += ["Constraints red at baseline (reported, not required): "
                  + ", ".join(f"`{c}`" for c in report["keep_green_dropped"]), ""]
    lines += ["### Metric trend", "", *metric_trend_lines(report), ""]
    lines += _surface_section(report)
    if report["checklist"]:
        lines += ["## Checklist", "", *[f"- [{'x' if i['done'] else ' '}] {i['number']}. {i['item']}"
                                        for i in report["checklist"]], ""]
    lines += ["## Checkpoint timeline", "", *_timeline(report["checkpoints"]), ""]
    lines += ["## Files touched", "", *([f"- `{f}`" for f in report["files_touched"]] or ["(none)"]), ""]
    lines += ["## Commands run", "", *_commands(report["commands"]), ""]
    lines += ["## Assumptions", "", *([f"- turn {a['turn']}: {_cell(a['text'])}" for a in report["assumptions"]]
                                      or ["(none recorded)"]), ""]
    lines += ["## Blockers", "", *_blockers(report), ""]
    lines += _claims(report)
    lines += ["## Budget use", "", *_budget_lines(report), ""]
    lines += _hooks_section(report.get("hooks") or [])
    if report["contract"].get("reviewer_notes"):
        lines += ["## Reviewer notes (from the contract; never shown to the model)", "",
                  *[f"> {line}" for line in report["contract"]["reviewer_notes"].strip().splitlines()], ""]
    if report["side_questions"]:
        lines += ["## Side questions", "", *[f"- **{_cell(q['question'])}** {_cell(q['answer'])}"
                                             for q in report["side_questions"]], ""]
    return "\n".join(lines)


def _artifacts_section(report: dict[str, Any]) -> list[str]:
    """Each promised artifact: found, or missing (what kept the goal from being achieved)."""
    promised = report["contract"].get("artifacts") or []
    if not promised:
        return []
    found = {e["name"]: e for e in report["final"] if e["kind"] == "artifact"}
    lines = ["## Artifacts", ""]
    for artifact in promised:
        evidence = found.get(artifact["path"])
        verdict = ("not checked yet" if evidence is None else "present" if evidence["passed"]
                   else evidence["error"] or "missing")
        lines.append(f"- `{artifact['path']}`: {verdict}"
                     + (f" ({evidence['output_tail'].splitlines()[0]})" if evidence else ""))
    return [*lines, ""]


def _objective(report: dict[str, Any]) -> list[str]:
    implements = report["implements"]
    if implements:  # the objective is a whole PRD: name it rather than repeat it
        title = _prd_title(report["objective"])
        return [f"**Objective:** implement the PRD `{implements.get('prd') or 'PRD.md'}` ({title}) cleanly, "
                f"from the spike's base commit"]
    text = report["objective"].strip()
    if "\n" not in text:
        return [f"**Objective:** {text}"]
    return ["**Objective:**", "", *[f"> {line}" for line in text.splitlines()]]


def _prd_title(text: str) -> str:
    heading = next((line.lstrip("#").strip() for line in text.splitlines() if line.startswith("# ")), "")
    return heading.removeprefix("PRD:").strip() or _cell(text.strip().splitlines()[0] if text.strip() else "")[:80]


def _status_line(report: dict[str, Any]) -> str:
    final: dict[str, Any] = next((c for c in reversed(report["status_changes"]) if c.get("to") == report["status"]), {})
    who = f", by {final['actor']}" if final.get("actor") else ""
    turn = f" at turn {final['turn']}" if final.get("turn") else ""
    return (f"**Status:** {report['status']} — `{report['reason']}`: {report['reason_text']}{who}{turn} "
            f"(goal `{report['goal_id']}`)")


def _branches(report: dict[str, Any]) -> list[str]:
    lines = []
    if branch := report["branch"]:
        lines.append(f"- goal branch: `{branch['name']}` (from `{(branch['base_commit'] or '')[:12]}`)")
    else:
        lines.append("- goal branch: (none yet: the goal has not run)")
    if implements := report["implements"]:
        lines.append(f"- re-implements the spike `{implements['spike_branch']}` (goal `{implements['spike_goal_id']}`) "
                     f"from its base commit; PRD: `{implements.get('prd') or '?'}`")
    lines += [f"- distilled into `{d['output']}`" for d in report["distilled"]]
    lines += [f"- re-implemented as `{i['branch']}` (goal `{i['goal_id']}`)" for i in report["implemented_by"]]
    return lines


def evidence_table(baseline: list[dict[str, Any]], final: list[dict[str, Any]]) -> str:
    """Each check and constraint at baseline and at the end."""
    before = {(e["kind"], e["name"]): e for e in baseline}
    rows = ["| check | kind | baseline | final | metric (target) | exit | duration |",
            "|---|---|---|---|---|---|---|"]
    for item in final:
        start = before.get((item["kind"], item["name"]))
        metric = f"{_number(start.get('metric')) if start else '—'} → {_number(item.get('metric'))} " \
            f"({item['target']})" if item.get("target") else ""
        rows.append(f"| `{item['name']}` | {item['kind']} | {_verdict(start)} | {_verdict(item)} | {metric} | "
                    f"{item['exit_code']} | {item['duration_s']:.1f}s |")
    return "\n".join(rows) if final else "(no checks have run)"


def metric_trend_lines(report: dict[str, Any]) -> list[str]:
    """A table of each metric by turn (the baseline first), then a sparkline per metric."""
    trend = ([report["metric_baseline"]] if report["metric_baseline"] else []) + report["metric_trend"]
    if not trend:
        return ["(no metric checks)"]
    names = sorted({key for point in trend for key in point if key != "turn"})
    rows = ["| turn | " + " | ".join(f"`{n}`" for n in names) + " |", "|---|" + "---|" * len(names)]
    rows += [f"| {'baseline' if p['turn'] == 0 else p['turn']} | "
             + " | ".join(_number(p.get(n)) for n in names) + " |" for p in trend]
    targets = {c["name"]: (c.get("metric") or {}).get("target") for c in report["contract"]["checks"]}
    for name in names:
        values = [p[name] for p in trend if p.get(name) is not None]
        rows.append(f"\n`{name}` {sparkline(values)} {_number(values[0])} → {_number(values[-1])}"
                    + (f" (target {targets[name]})" if targets.get(name) else ""))
    return rows


def sparkline(values: list[float]) -> str:
    """Values as block characters, lowest ▁ to highest █."""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[round((v - low) / span * (len(SPARK) - 1))] for v in values)


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def _verdict(evidence: dict[str, Any] | None) -> str:
    return "—" if evidence is None else ("PASS" if evidence["passed"] else "FAIL")


def _timeline(checkpoints: list[dict[str, Any]]) -> list[str]:
    rows = ["| turn | kind | done | verified | remaining | files |", "|---|---|---|---|---|---|"]
    for c in checkpoints:
        note = c.get("note") or {}
        rows.append(f"| {c['turn']} | {c['kind']} | {_cell(note.get('done'))} | {_cell(note.get('verified'))} | "
                    f"{_cell(note.get('remaining'))} | {len(c.get('files_touched', []))} |")
    return rows if checkpoints else ["(no turns yet)"]


def _commands(commands: list[str]) -> list[str]:
    """Each distinct command once, in first-run order, with how often it ran."""
    counts = Counter(commands)
    shown = [f"- `{_cell(cmd)}`" + (f" ×{counts[cmd]}" if counts[cmd] > 1 else "") for cmd in counts]
    extra = [f"- … and {len(shown) - COMMANDS_SHOWN} more"] if len(shown) > COMMANDS_SHOWN else []
    return [*shown[:COMMANDS_SHOWN], *extra] if shown else ["(none)"]


def _blockers(report: dict[str, Any]) -> list[str]:
    lines = []
    for blocker in report["blockers"]:
        lines += [f"- **blocker:** {_cell(blocker.get('blocker'))}",
                  f"  - **would unblock:** {_cell(blocker.get('next_input')) or '(not given)'}",
                  f"  - **summary:** {_cell(blocker.get('summary'))}"]
    return lines or ["(none declared)"]


def claims_split(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The claims in three lists, as the Markdown shows them and `gk report --json` carries them.

    confirmed: what a clean-room run of the checks showed (Evidence.room == "clean room"); evidence taken in the
    model's own workspace, or stored before rooms were recorded, never counts, since the model could have shaped it.
    unverified: the model's word (completion summaries, checkpoint notes), and checks that passed only outside a
    clean room. refused: completion requests the harness turned down, with why.
    """
    claims = report["completion_claims"]
    confirmed: list[dict[str, Any]] = []
    unverified: list[dict[str, Any]] = []
    for e in report["final"]:
        if not e["passed"]:
            continue
        item = {"kind": "check", "name": e["name"], "check_kind": e["kind"], "exit_code": e["exit_code"],
                "room": e.get("room") or "", "basis": e.get("basis") or "exit code"}
        (confirmed if item["room"] == CLEAN_ROOM else unverified).append(item)
    # An artifact is the harness's own listing of the goal's files, not a command's output: it takes no room.
    ran = [e for e in report["final"] if e["kind"] != "artifact"]
    clean = bool(ran) and all(e.get("room") == CLEAN_ROOM for e in ran)
    for c in claims:
        if c["accepted"] and clean:
            confirmed.append({"kind": "completion", "turn": c["turn"], "summary": c["summary"]})
        elif c["accepted"] is not False and c["summary"]:
            unverified.append({"kind": "completion", "turn": c["turn"], "summary": c["summary"]})
    unverified += [{"kind": "checkpoint", "turn": c["turn"], "verified": c["note"]["verified"]}
                   for c in report["checkpoints"] if (c.get("note") or {}).get("verified")]
    refused = [{"kind": "completion", "turn": c["turn"], "summary": c["summary"], "reasons": c.get("reasons", [])}
               for c in claims if c["accepted"] is False]
    return {"confirmed": confirmed, "unverified": unverified, "refused": refused}


def _claim_line(claim: dict[str, Any]) -> str:
    """One claim of `claims_split` as a Markdown bullet's text."""
    if claim["kind"] == "check":
        where = "in the clean room" if claim["room"] == CLEAN_ROOM else \
            f"in {claim['room'] or 'the workspace'}, not in a clean room"
        return (f"`{claim['name']}` ({claim['check_kind']}) passed at the end {where} "
                f"(exit {claim['exit_code']}; evidence: {claim['basis']})")
    if claim["kind"] == "checkpoint":
        return f"turn {claim['turn']}, checkpoint says verified: {_cell(claim['verified'])}"
    if claim.get("reasons"):
        return f"turn {claim['turn']}: {_cell(claim['summary'])} — refused: {_cell('; '.join(claim['reasons']))}"
    if "reasons" in claim:
        return f"turn {claim['turn']}: {_cell(claim['summary'])}"
    return f"turn {claim['turn']}, completion summary: {_cell(claim['summary'])}"


def _claims(report: dict[str, Any]) -> list[str]:
    """Confirmed claims (clean-room evidence) apart from unverified ones (the model's word) and refused ones."""
    split = report["claims"]
    confirmed = [_claim_line(c) if c["kind"] == "check"
                 else f"turn {c['turn']}: the completion request was verified in the clean room (every check passed)"
                 for c in split["confirmed"]]
    unverified = [_claim_line(c) for c in split["unverified"]]
    refused = [_claim_line(c) for c in split["refused"]]
    return ["## Claims", "", "**Confirmed by the harness (clean room):**",
            *([f"- {c}" for c in confirmed] or ["- (none)"]),
            "", "**Unverified (the model's word only, or evidence from outside a clean room):**",
            *([f"- {c}" for c in unverified] or ["- (none)"]),
            "", "**Completion claims the harness refused:**",
            *([f"- {c}" for c in refused] or ["- (none)"]), ""]


def _budget_lines(report: dict[str, Any]) -> list[str]:
    budget = report["budget"]
    time_of = f" of {format_duration(budget['time_budget_s'])}" if budget["time_budget_s"] else ""
    return [f"- tokens: {budget['tokens']:,}" + _of(budget["tokens_budget"]),
            f"- cost: ${budget['usd']:.4f}" + _of(budget["usd_budget"], "$"),
            f"- time: {format_duration(budget['time_s'])}{time_of}",
            f"- turns: {budget['turns']}" + _of(budget["turns_budget"]),
            f"- compactions: {report['compactions']}"] + (
        [f"- stopped by the budget: {report['reason_text']}; one capped wrap-up turn ran after that"]
        if report["status"] == "budget_limited" else [])


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
    while lines[-1] == "":
        lines.pop()
    return [*lines, ""]


def _tests_section(checks: list[dict[str, Any]]) -> list[str]:
    """Per check, test by test: the counts, the ids that went from fail to pass, were added or are missing."""
    if not checks:
        return []
    lines = ["### Tests", ""]
    for check in checks:
        if check["basis"] != "tests":
            lines.append(f"- `{check['check']}`: exit code only (no reporter understood this check)")
            continue
        counts = ", ".join(f"{number} {outcome}" for outcome, number in check["counts"].items()) or "no tests"
        canary = "the canary failed, as it must" if check["canary"] == "failed" else f"canary {check['canary']}"
        lines.append(f"- `{check['check']}` ({check['runner']}): {counts}; {canary}")
        for key, label in TEST_LISTS:
            if check.get(key):
                more = " (list cut)" if check.get("truncated") else ""
                lines.append(f"  - {label}: " + ", ".join(f"`{_cell(test_id)}`" for test_id in check[key]) + more)
        lines += [f"  - problem: {_cell(problem)}" for problem in check["problems"]]
    return [*lines, ""]


#: Hook runs listed one by one in the report; past that, the vetoes and a count.
HOOKS_SHOWN = 30


def _hooks_section(hooks: list[dict[str, Any]]) -> list[str]:
    """Every `[[hooks]]` run (the vetoes always), with its exit and duration."""
    if not hooks:
        return []
    shown = hooks if len(hooks) <= HOOKS_SHOWN else [hook for hook in hooks if hook.get("vetoed")][:HOOKS_SHOWN]
    vetoes = sum(1 for hook in hooks if hook.get("vetoed"))
    lines = ["## Hooks", "", f"{len(hooks)} hook run(s), {vetoes} veto(es).", "",
             "| event | command | tool | exit | duration | vetoed |", "|---|---|---|---|---|---|"]
    for hook in shown:
        ended = "timed out" if hook.get("timed_out") else str(hook["exit_code"])
        lines.append(f"| {hook['event']} | `{_cell(hook['command'])}` | {_cell(hook.get('tool')) or '—'} | {ended} | "
                     f"{hook['duration_s']:.1f}s | {'yes' if hook.get('vetoed') else ''} |")
    if len(shown) < len(hooks):
        lines.append(f"\n… {len(hooks) - len(shown)} more run(s) without a veto: `gk log` lists them all")
    return [*lines, ""]


def _cell(text: str | None) -> str:
    """One line of text that keeps a Markdown table a table: cut first, so a cut never splits an escape."""
    return " ".join((text or "").splitlines())[:200].replace("|", "\\|")


def _of(limit: float | None, prefix: str = "") -> str:
    return f" of {prefix}{limit:,}" if limit else ""


# ---------------------------------------------------------------- pull-request description


def render_pr(report: dict[str, Any]) -> str:
    """A pull-request description: a title line, then summary, changes, verification, what remains, branches."""
    passing = sum(1 for e in report["final"] if e["kind"] == "check" and e["passed"])
    total = len(report["contract"]["checks"])
    last = (report["checkpoints"][-1].get("note") or {}) if report["checkpoints"] else {}
    checks = f"{passing}/{total} checks pass" if report["verified"] else "UNVERIFIED: the goal has no checks"
    lines = [_pr_title(report), "", "## Summary", "",
             f"{_status_line(report).removeprefix('**Status:** ')}. {checks}."
             + (f" Last checkpoint: {_cell(last['done'])}." if last.get("done") else ""), "",
             "## What changed", "",
             "Files: " + (", ".join(f"`{f}`" for f in report["files_touched"]) or "(none changed)"), ""]
    steps = [f"- turn {c['turn']}: {_cell((c.get('note') or {}).get('done'))}" for c in report["checkpoints"]
             if (c.get("note") or {}).get("done")]
    lines += [*steps, ""] if steps else []
    lines += ["## How it was verified", "", "The harness ran these checks itself, at baseline and at the end:", "",
              evidence_table(report["baseline"], report["final"]), ""]
    if report["metric_trend"] or report["metric_baseline"]:
        lines += [*metric_trend_lines(report), ""]
    lines += ["## What remains and risks", "", *_risks(report, last), "", "## Branches", "", *_branches(report), ""]
    return "\n".join(lines)


def _pr_title(report: dict[str, Any]) -> str:
    text = f"Implement: {_prd_title(report['objective'])}" if report["implements"] else report["objective"]
    first = text.strip().splitlines()[0] if text.strip() else report["goal_id"]
    title = first if len(first) <= 72 else first[:71].rstrip() + "…"
    return title if report["status"] == "achieved" else f"[{report['status']}] {title}"


def _risks(report: dict[str, Any], last: dict[str, Any]) -> list[str]:
    risks = [f"- remaining (the model's last note): {_cell(last['remaining'])}"] if last.get("remaining") else []
    risks += [f"- failing: `{e['name']}` ({e['kind']}, exit {e['exit_code']})" for e in report["final"]
              if not e["passed"]]
    risks += [f"- blocker: {_cell(b.get('blocker'))}" for b in report["blockers"]]
    risks += [f"- constraint red at baseline, not enforced: `{c}`" for c in report["keep_green_dropped"]]
    risks += [f"- assumption (turn {a['turn']}): {_cell(a['text'])}" for a in report["assumptions"]]
    surface = report.get("verification_surface")
    if surface and surface["state"] != "unchanged":
        risks.append(f"- verification surface {surface['state']}: review the test changes")
    if report["checklist"]:
        open_items = [i for i in report["checklist"] if not i["done"]]
        risks += [f"- checklist item not marked done: {i['number']}. {_cell(i['item'])}" for i in open_items]
    return risks or ["(nothing recorded)"]
