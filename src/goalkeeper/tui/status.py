"""The TUI's status line: one short text for a goal in any status, or for no goal at all.

Pure: it reads a `GoalSummary` (views.summarize) and formats; the app re-renders it on every store poll.
"""

from __future__ import annotations

from goalkeeper.core.lifecycle import status_label
from goalkeeper.goals.views import GoalSummary

NO_GOAL = "No goal · /goal <objective> sets one · other text is a chat with the model"

#: What `/budget` takes for each budget that can run out, shown as the example in the status line.
BUDGET_HINTS: dict[str, tuple[str, str]] = {
    "budget_tokens": ("tokens", "/budget 50K"),
    "budget_usd": ("USD", "/budget $1"),
    "budget_time": ("time", "/budget 30m"),
    "budget_turns": ("turns", "/budget 10 turns"),
}


def compact_count(count: int) -> str:
    """Token counts as a person reads them at a glance: 950, 1.2K, 40K, 1.5M."""
    if count < 1_000:
        return str(count)
    if count < 10_000:
        return f"{count / 1_000:.1f}".rstrip("0").rstrip(".") + "K"
    if count < 1_000_000:
        return f"{round(count / 1_000)}K"
    return f"{count / 1_000_000:.1f}".rstrip("0").rstrip(".") + "M"


def compact_duration(seconds: float) -> str:
    """Elapsed time without fractions: 45s, 12m, 1h 05m."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def _checks(summary: GoalSummary) -> str:
    return f"{summary.checks_passing}/{summary.checks_total} checks" if summary.verified else "unverified"


def _tokens(summary: GoalSummary, with_budget: bool = True) -> str:
    used = compact_count(summary.tokens_used)
    if with_budget and summary.tokens_budget:
        return f"{used}/{compact_count(summary.tokens_budget)} tok"
    return f"{used} tok"


def _cut(command: str, limit: int = 40) -> str:
    """A command short enough for the status line: its first line, cut with an ellipsis."""
    line = command.strip().splitlines()[0] if command.strip() else ""
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _reason(summary: GoalSummary) -> str:
    return summary.reason.replace("_", " ")


def status_text(summary: GoalSummary | None, *, pausing: bool = False, starting: str | None = None) -> str:
    """The status line, e.g. `Pursuing goal · 3/4 checks · 40K/50K tok · $0.42 · 12m`.

    `pausing` says a pause was asked for and the current step is still finishing; `starting` says what
    happens before this window's runner takes the goal (e.g. the restatement), instead of "not running".
    """
    if summary is None:
        return NO_GOAL
    elapsed = compact_duration(summary.elapsed_s)
    match summary.status:
        case "pursuing":
            doing = f"Waiting for `{_cut(summary.waiting.until)}`" if summary.waiting else "Pursuing goal"
            parts = [doing, _checks(summary), _tokens(summary), f"${summary.usd_used:.2f}", elapsed]
            if running := sum(child.status == "running" for child in summary.children):
                parts.append(f"{running} child agent{'s' if running > 1 else ''} running")
            if pausing:
                parts.append("pausing after the current step…")
            elif starting:
                parts.append(starting)
            elif summary.runner is None:
                parts.append("not running (/goal resume)")
            return " · ".join(parts)
        case "paused":
            why = "" if summary.reason in ("user_pause", "interrupted") else f": {_reason(summary)}"
            return f"Goal paused{why} (/goal resume)"
        case "achieved":
            label = status_label(summary.status, summary.verified)
            return " · ".join([f"Goal {label}", _checks(summary), _tokens(summary, with_budget=False), elapsed])
        case "unmet":
            return f"Goal unmet: {_reason(summary)} (/goal resume)"
        case "budget_limited":
            what, example = BUDGET_HINTS.get(summary.reason, ("budget", "/budget …"))
            return f"Budget reached: {what} · {_tokens(summary)} · ${summary.usd_used:.2f} · {elapsed} ({example})"
    return f"Goal {summary.status} ({_reason(summary)})"


def status_style(summary: GoalSummary | None) -> str:
    """A CSS class for the status line's colour: the status, or `none`."""
    return summary.status if summary is not None else "none"
