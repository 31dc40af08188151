"""What compaction replaces the history with: the model's hand-off summary, then what the harness knows for
certain, folded from the store's events (replay.py). Pure: events and text in, text out.

The model's summary may forget or soften things; the harness's part cannot. It carries the contract
verbatim, the checkpoint log, the latest evidence, the files touched, the approaches that failed and the
repeats the stuck detector flagged, so a compacted agent does not retry what already failed. When the model
writes no usable summary (an error, a tool call, empty text), the harness writes one from the same records
(`fallback_summary`), so a compaction always replaces the history.
"""

from __future__ import annotations

import re
from collections import deque
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
#: Newest failed approaches listed; older ones are counted.
FAILED_SHOWN = 30
#: Newest repeats the stuck detector flagged that are listed.
REPEATS_SHOWN = 10
#: Characters kept of one failed approach or checkpoint field (they are verbatim up to this).
ENTRY_CHARS = 1_500

_RESPONSES = re.compile(r"compacted after (\d+) model responses")


@dataclass
class Facts:
    """What the store says for certain about a goal, for the hand-off: folded event by event (replay.py).

    Only the newest entries of each list are kept, so a goal's facts stay the same size however long it runs.
    """

    checkpoints: deque[str] = field(default_factory=lambda: deque(maxlen=CHECKPOINTS_SHOWN))
    """One line per checkpoint that has a note, oldest first (the newest CHECKPOINTS_SHOWN)."""
    checkpoint_count: int = 0
    last_note: dict[str, str] = field(default_factory=dict)
    """The newest checkpoint's note: where the model said it stood."""
    files: set[str] = field(default_factory=set)
    failed: deque[str] = field(default_factory=lambda: deque(maxlen=FAILED_SHOWN))
    failed_count: int = 0
    repeats: deque[str] = field(default_factory=lambda: deque(maxlen=REPEATS_SHOWN))

    def apply(self, event: Event) -> None:
        """Fold one event in."""
        match event:
            case CheckpointEvent(note=note, turn=turn):
                self.files.update(event.files_touched)
                if note:
                    self.checkpoints.append(_checkpoint_line(turn, note))
                    self.checkpoint_count += 1
                    self.last_note = dict(note)
                if note.get("failed"):
                    self._failed(f"turn {turn} (the model's checkpoint): {_clip(note['failed'])}")
            case EvidenceEvent(trigger="completion"):
                failing = [item for item in event.evidence if not item.passed]
                if failing:
                    self._failed(f"turn {event.turn}: completion was requested and refused; "
                                 + "; ".join(_failure_line(item) for item in failing))
            case NudgeEvent(why=why):
                self.repeats.append(why)

    def _failed(self, line: str) -> None:
        self.failed.append(line)
        self.failed_count += 1


@dataclass(frozen=True)
class _Shown:
    """How many entries of each list a hand-off shows."""

    checkpoints: int = CHECKPOINTS_SHOWN
    files: int = FILES_SHOWN
    failed: int = FAILED_SHOWN

    def halved(self) -> _Shown | None:
        """Half of each (at least one); None once every list shows one entry."""
        if max(self.checkpoints, self.files, self.failed) <= 1:
            return None
        return _Shown(max(1, self.checkpoints // 2), max(1, self.files // 2), max(1, self.failed // 2))


def handoff_message(summary: str, contract: str, facts: Facts, evidence: str, responses: int,
                    turn: int, max_chars: int | None = None) -> str:
    """The one message that stands for the whole history after a compaction, within `max_chars`: the
    lists show fewer entries until it fits, and what still does not fit is cut at the end."""
    missing = missing_sections(summary)
    if missing:
        summary += "\n\n(The summary above left out: " + ", ".join(missing) + ".)"
    shown: _Shown | None = _Shown()
    text = ""
    while shown is not None:
        text = _render(summary, contract, facts, evidence, responses, turn, shown)
        if max_chars is None or len(text) <= max_chars:
            return text
        shown = shown.halved()
    return text[:max(0, max_chars - len(CUT_MARKER))] + CUT_MARKER if max_chars is not None else text


CUT_MARKER = "\n\n[... the hand-off was cut here to fit the context window; `gk log` shows every event ...]"


def fallback_summary(facts: Facts, why: str) -> str:
    """The hand-off summary the harness writes when the model wrote none: the required sections, filled
    from its records (the newest checkpoint says where the model stood)."""
    note = facts.last_note
    state = "; ".join(f"{name}: {_clip(note[name])}" for name in ("done", "verified", "remaining")
                      if note.get(name))
    return render("handoff_fallback", why=why, state=state or "(no checkpoint recorded one yet)",
                  next=_clip(note["next"]) if note.get("next") else
                  "Inspect the workspace and the latest evidence below, then take the next step toward the goal.")


def _render(summary: str, contract: str, facts: Facts, evidence: str, responses: int, turn: int,
            shown: _Shown) -> str:
    every = sorted(facts.files)
    files = every[:shown.files]
    more_files = f"\n- … and {len(every) - len(files)} more" if len(every) > len(files) else ""
    return render("handoff", responses=responses, turn=turn, summary=summary.strip(), contract=contract,
                  checkpoints=_newest(facts.checkpoints, facts.checkpoint_count, shown.checkpoints,
                                      "checkpoints are in the store: `gk log`"),
                  evidence=evidence, files=_bullets(f"`{name}`" for name in files) + more_files,
                  failed=_newest(facts.failed, facts.failed_count, shown.failed,
                                 "failed approaches are in the store: `gk log`"),
                  repeats=_bullets(facts.repeats))


def _newest(entries: deque[str], total: int, count: int, where: str) -> str:
    """The newest `count` entries as bullets, after a line that counts the earlier ones."""
    newest = list(entries)[-count:]
    earlier = total - len(newest)
    return (f"- ({earlier} earlier {where})\n" if earlier else "") + _bullets(newest)


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
