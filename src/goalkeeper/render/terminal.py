"""The terminal faces' shared rendering: `Inert` draws any renderable with its control characters shown, not
obeyed, and `event_line` is a stored event's one-line form (the CLI's event printer and `gk log`, the TUI's
transcript), as render/lines.py reads it from the event's payload.
"""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.text import Text

from goalkeeper import events as ev
from goalkeeper.core.safe_text import neutralise
from goalkeeper.render import lines
from goalkeeper.store import EventRecord


class Inert:
    """A renderable drawn with every control character in its text shown, not obeyed. Rich's own control
    segments (cursor moves of the live status line) pass; they carry no text from anyone else. A str is taken
    as plain text, never as markup. The CLI's consoles draw everything through it; the TUI wraps its transcript
    entries in it."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = Text(renderable) if isinstance(renderable, str) else renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for segment in console.render(self.renderable, options):
            yield segment if segment.control else Segment(neutralise(segment.text), segment.style)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.renderable)


def event_line(record: EventRecord) -> str | None:
    """A short human line for a stored event, or None for events not worth a line (render/lines.py)."""
    return lines.event_line(record.event.kind, record.event.actor, ev.payload_of(record.event))
