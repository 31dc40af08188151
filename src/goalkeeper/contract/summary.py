"""The contract in a few short lines for a person: outcome, checks, keep_green, boundaries, budget, checklist.

Builds lines only; the caller decides where they are printed.
"""

from __future__ import annotations

from goalkeeper.core.figures import format_duration
from goalkeeper.spec.contract import Contract


def contract_summary_lines(contract: Contract) -> list[str]:
    """A few short lines for a person: outcome, checks, keep_green, boundaries, budget, then the checklist."""
    lines = [f"goal: {contract.outcome.strip().splitlines()[0]}"]
    if not contract.checks:
        lines.append("checks: none (unverified goal: only a completion audit can end it)")
    for check in contract.checks:
        target = ""
        if check.metric is not None:
            target = f" -> {check.metric.json_path or check.metric.regex} {check.metric.target}"
        lines.append(f"check {check.name}: {check.run}{target}")
    if contract.constraints.keep_green:
        lines.append("keep green: " + ", ".join(contract.constraints.keep_green))
    limits = contract.boundaries
    where = [f"may change {', '.join(limits.paths)}"] if limits.paths else []
    where += [f"protected {', '.join(limits.protect)}"] if limits.protect else []
    where += [f"network {'on' if limits.network else 'off'}", f"sandbox {limits.sandbox}"]
    lines.append("boundaries: " + "; ".join(where))
    budget = contract.budget
    spend = [f"{budget.tokens:,} tokens"] if budget.tokens else []
    spend += [f"${budget.usd:.2f}"] if budget.usd else []
    spend += [format_duration(budget.time_s)] if budget.time_s else []
    spend += [f"{budget.turns} turns"] if budget.turns else []
    lines.append("budget: " + (", ".join(spend) or "none"))
    if contract.checklist:
        lines.append(f"checklist: {len(contract.checklist)} items, in order")
        lines += [f"  {number}. {item.strip().splitlines()[0]}" for number, item in enumerate(contract.checklist, 1)]
    return lines
