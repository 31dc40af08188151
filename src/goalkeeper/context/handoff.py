"""What compaction replaces the history with: the model's hand-off summary, then what the harness knows for
certain, folded from the store's events (replay.py). Pure: events and text in, text out.

The model's summary may forget or soften things; the harness's part cannot. It carries the contract
verbatim, the checkpoint log, the latest evidence, the files touched, the approaches that failed and the
repeats the stuck detector flagged, so a compacted agent does not retry what already failed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from goalkeeper.context.prompts import render
from goalkeeper.events import CheckpointEvent, Event, Evidence, EvidenceEvent, NudgeEvent

REQUIRED_SECTIONS = ("Goal", "Constraints", "Decisions", "Failed approaches", "Current state", "Next step")
"""The headings the model's hand-off summary must have (compact.md asks for them in this order)."""

#: Newest checkpoints listed in full; older ones are counted (they stay in the store and in `gk log`).
CHECKPOINTS_SHOWN = 20
#: Files listed by name; more are counted.
FILES_SHOWN = 100
#: Characters kept of one failed approach or checkpoint field (they are verbatim up to this).
ENTRY_CHARS = 1_500

_RESPONSES = re.compile(r"compacted after (\d+) model responses")


@dataclass
class Facts:
    """What the store says for certain about a goal, for the hand-off: folded event by event (replay.py)."""

    checkpoints: list[str] = field(default_factory=list)
    """One line per checkpoint that has a note, oldest first."""
    files: set[str] = field(default_factory=set)
    failed: list[str] = field(default_factory=list)
    repeats: list[str] = field(default_factory=list)

    def apply(self, event: Event) -> None:
        """Fold one event in."""
        match event:
            case CheckpointEvent(note=note, turn=turn):
                self.files.update(event.files_touched)
                if note:
                    self.checkpoints.append(_checkpoint_line(turn, note))
                if note.get("failed"):
                    self.failed.append(f"turn {turn} (the model's checkpoint): {_clip(note['failed'])}")
            case EvidenceEvent(trigger="completion"):
                failing = [item for item in event.evidence if not item.passed]
                if failing:
                    self.failed.append(f"turn {event.turn}: completion was requested and refused; "
                                       + "; ".join(_failure_line(item) for item in failing))
            case NudgeEvent(why=why):
                self.repeats.append(why)


def handoff_message(summary: str, contract: str, facts: Facts, evidence: str, responses: int,
                    turn: int) -> str:
    """The one message that stands for the whole history after a compaction."""
    missing = missing_sections(summary)
    if missing:
        summary += "\n\n(The summary above left out: " + ", ".join(missing) + ".)"
    every = sorted(facts.files)
    files = every[:FILES_SHOWN]
    more_files = f"\n- … and {len(every) - len(files)} more" if len(every) > len(files) else ""
    shown = facts.checkpoints[-CHECKPOINTS_SHOWN:]
    earlier_count = len(facts.checkpoints) - len(shown)
    earlier = f"- ({earlier_count} earlier checkpoints are in the store: `gk log`)\n" if earlier_count else ""
    return render("handoff", responses=responses, turn=turn, summary=summary.strip(), contract=contract,
                  checkpoints=earlier + _bullets(shown), evidence=evidence,
                  files=_bullets(f"`{name}`" for name in files) + more_files,
                  failed=_bullets(facts.failed), repeats=_bullets(facts.repeats))


def missing_sections(summary: str) -> list[str]:
    """The required headings the summary does not have (any heading level, any case)."""
    headings = {line.lstrip("#").strip().rstrip(":").lower() for line in summary.splitlines()
                if line.lstrip().startswith("#")}
    return [name for name in REQUIRED_SECTIONS
            if not any(heading.startswith(name.lower()) for heading in headings)]


def responses_before(messages_text: Iterable[str]) -> int:
    """How many model responses a compacted history stands for, read from its hand-off message."""
    counts = [int(match.group(1)) for text in messages_text if (match := _RESPONSES.search(text))]
    return counts[-1] if counts else 0


def _checkpoint_line(turn: int, note: dict[str, str]) -> str:
    fields = [f"{name}: {_clip(note[name])}" for name in ("done", "verified", "remaining", "next", "assumptions")
              if note.get(name)]
    return f"turn {turn}: " + "; ".join(fields)


def _failure_line(item: Evidence) -> str:
    last = next((line.strip() for line in reversed(item.output_tail.splitlines()) if line.strip()), "")
    why = item.error or last
    return f"{item.kind} `{item.name}` failed (exit {item.exit_code})" + (f": {_clip(why, 300)}" if why else "")


def _clip(text: str, limit: int = ENTRY_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + " …"


def _bullets(lines: Iterable[str]) -> str:
    items = [f"- {line}" for line in lines]
    return "\n".join(items) if items else "(none)"
