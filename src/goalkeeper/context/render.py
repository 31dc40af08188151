"""Fills the prompt files with a goal's contract, budget and evidence. Pure text in, text out."""

from __future__ import annotations

import re
from collections.abc import Iterable

from goalkeeper.context.prompts import as_data, render
from goalkeeper.core.figures import format_duration
from goalkeeper.core.lifecycle import TurnKind
from goalkeeper.core.state import GoalState
from goalkeeper.events import Evidence
from goalkeeper.spec.contract import Contract
from goalkeeper.workspace.read_first import FileText

#: Characters of a failing check's output shown to the model in feedback.
FEEDBACK_TAIL_CHARS = 2_000


def _bullets(lines: Iterable[str], empty: str = "(none)") -> str:
    items = [f"- {line}" for line in lines]
    return "\n".join(items) if items else empty


def contract_block(contract: Contract) -> str:
    """The goal contract as the model reads it, once, in the request prefix."""
    checks = [f"`{c.name}`: `{c.run}`" + (f" — metric must be {c.metric.target}" if c.metric else "")
              for c in contract.checks]
    boundaries = contract.boundaries
    bounds = [
        f"may change: {', '.join(boundaries.paths) or 'anything not protected'}",
        f"never change: {', '.join(boundaries.protect) or '(nothing listed)'}",
        f"network: {'on' if boundaries.network else 'off'}; sandbox: {boundaries.sandbox}",
    ]
    # A goal without a checklist renders exactly as before: its request prefix stays byte-identical.
    checklist = ""
    if contract.checklist:
        items = "\n".join(f"{number}. {as_data(item)}" for number, item in enumerate(contract.checklist, 1))
        checklist = "\n\n" + render("checklist", items=items)
    return render(
        "goal",
        objective=as_data(contract.outcome),
        checklist=checklist,
        non_goals=_section("non_goals", (as_data(item) for item in contract.non_goals)),
        artifacts=_section("artifacts", (f"`{a.path}`" + (f" (at least {a.min} files)" if a.min > 1 else "")
                                         for a in contract.artifacts)),
        checks=_bullets(checks, "(none: this goal is UNVERIFIED; completion rests on your audit alone)"),
        constraints=_bullets(f"`{command}`" for command in contract.constraints.keep_green),
        boundaries=_bullets(bounds),
        max_attempts=contract.iteration.max_attempts,
        no_progress_turns=contract.iteration.no_progress_turns,
        policy=as_data(contract.iteration.policy),
        blocked_when=as_data(contract.blocked_when),
        budget=budget_limits(contract),
    )


def _section(prompt: str, items: Iterable[str]) -> str:
    """An optional block of the contract: nothing at all when it has no items, so older goals render as before."""
    lines = list(items)
    return "\n\n" + render(prompt, items=_bullets(lines)) if lines else ""


def read_first_block(files: Iterable[FileText], missing: Iterable[str] = ()) -> str:
    """The contract's `read_first` files for the goal's first turn: each in a fence longer than any it holds."""
    blocks = []
    for file in files:
        fence = "`" * max(3, _longest_backticks(file.text) + 1)
        cut = f" (cut: first {len(file.text):,} of {file.size:,} bytes, the rest is left out)" if file.cut else ""
        blocks.append(f"### `{file.path}`{cut}\n{fence}\n{file.text}\n{fence}")
    blocks += [f"### `{pattern}`: no such file at the starting commit" for pattern in missing]
    return render("read_first", files="\n\n".join(blocks)) if blocks else ""


def _longest_backticks(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


def budget_limits(contract: Contract) -> str:
    """The budget's limits alone (no usage): stable text for the request prefix."""
    budget = contract.budget
    parts = [f"{budget.tokens:,} tokens" if budget.tokens is not None else "",
             f"{budget.turns} turns" if budget.turns is not None else "",
             format_duration(budget.time_s) if budget.time_s is not None else "",
             f"${budget.usd:.2f}" if budget.usd is not None else ""]
    return ", ".join(part for part in parts if part) or "no limit set"


def budget_left(state: GoalState) -> str:
    """Only what is left of each limit, e.g. `48,800 tokens · 37 turns`: short, and the same length turn to turn."""
    limits, spent = state.limits, state.spent
    parts: list[str] = []
    if limits.tokens is not None:
        parts.append(f"{max(0, limits.tokens - spent.tokens):,} tokens")
    if limits.turns is not None:
        parts.append(f"{max(0, limits.turns - spent.turns)} turns")
    if limits.time_s is not None:
        parts.append(format_duration(max(0.0, limits.time_s - spent.time_s)))
    if limits.usd is not None:
        parts.append(f"${max(0.0, limits.usd - spent.usd):.2f}")
    return " · ".join(parts) or "no limit set"


EvidenceDigest = dict[str, list[object]]
"""What the model was shown of each check: name → [passed, metric, exit code]."""


def evidence_digest(evidence: Iterable[Evidence]) -> EvidenceDigest:
    """The part of each piece of evidence a continuation reports changes of."""
    return {_key(item): [item.passed, item.metric, item.exit_code] for item in evidence}


def _key(item: Evidence) -> str:
    return f"{item.kind}:{item.name}"


def evidence_delta(evidence: list[Evidence], shown: EvidenceDigest | None) -> str:
    """The evidence that changed since the model last saw it; one stable line when nothing did."""
    if shown is None:
        return evidence_lines(evidence)
    current = evidence_digest(evidence)
    changed = [item for item in evidence if shown.get(_key(item)) != current[_key(item)]]
    if changed:
        return evidence_lines(changed)
    checks = [item for item in evidence if item.is_check]
    return f"- no change since your last turn ({sum(item.passed for item in checks)}/{len(checks)} checks pass)"


def evidence_lines(evidence: Iterable[Evidence]) -> str:
    """One line per check: name, PASS/FAIL, metric against target, exit code."""
    lines = []
    for item in evidence:
        verdict = "PASS" if item.passed else "FAIL"
        metric = f", metric {item.metric} (target {item.target})" if item.target else ""
        why = f" — {item.error}" if item.error else ""
        lines.append(f"{item.kind} `{item.name}`: {verdict} (exit {item.exit_code}{metric}){why}")
    return _bullets(lines, "(no checks have run yet)")


def failing_details(evidence: Iterable[Evidence]) -> str:
    """The failing checks with the tail of their output, for audit feedback."""
    blocks = []
    for item in evidence:
        if item.passed:
            continue
        tail = item.output_tail[-FEEDBACK_TAIL_CHARS:]
        blocks.append(f"### {item.kind} `{item.name}`: `{item.command}` (exit {item.exit_code})\n```\n{tail}\n```")
    return "\n\n".join(blocks) or "(none)"


def opening_message(kind: TurnKind, state: GoalState, evidence: list[Evidence], shown: EvidenceDigest | None,
                    why: str = "", message: str = "") -> str:
    """The hidden message that opens a turn of `kind`. A continuation says only what changed since the last
    turn (`shown` is what the model has seen): the contract is in the request prefix already."""
    if kind == "audit_feedback":
        failing = [e.name for e in evidence if not e.passed]
        attempt = max((state.attempts.get(name, 0) for name in failing), default=1)
        return render("audit_feedback", attempt=attempt, max_attempts=state.max_attempts,
                      failing=failing_details(evidence), evidence=evidence_lines(evidence))
    if kind == "nudge":
        return render("nudge", why=why or "the recent steps repeat", evidence=evidence_lines(evidence))
    if kind == "wrap_up":
        return render("budget_limit", reason=state.reason.value.replace("_", " "))
    if kind == "user_input":
        return render("user_input", message=message)
    return render("continuation", turn=state.spent.turns, budget_left=budget_left(state),
                  evidence=evidence_delta(evidence, shown))
