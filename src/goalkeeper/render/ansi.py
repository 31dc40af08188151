"""Styled lines (render/summary.py's) written to a terminal without rich: SGR codes for the few styles the
summaries use, on a terminal only, and no colour when NO_COLOR is set or TERM is dumb, as rich decides. Every
segment is neutralised first (core/safe_text.py): a goal's text is untrusted, and this writer is an output
boundary like the consoles' render hook.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TextIO

from goalkeeper.core.safe_text import neutralise
from goalkeeper.render.summary import Line

_SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34", "magenta": "35",
        "cyan": "36", "white": "37"}


def colours(stream: TextIO) -> bool:
    """Whether `stream` gets colour: a terminal, with NO_COLOR unset and TERM not dumb."""
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def render(line: Line, colour: bool) -> str:
    """One line's text, its styles as SGR codes when `colour`."""
    return "".join(_styled(neutralise(text), style) if colour else neutralise(text) for text, style in line)


def write(lines: Iterable[Line], stream: TextIO) -> None:
    """The lines, each ended by a newline, in one write, flushed."""
    colour = colours(stream)
    stream.write("".join(render(line, colour) + "\n" for line in lines))
    stream.flush()


def write_text(text: str, end: str = "\n") -> None:
    """Plain text (a Markdown report, a plan, a diff on a terminal) to stdout, neutralised, flushed."""
    sys.stdout.write(neutralise(text) + end)
    sys.stdout.flush()


def _styled(text: str, style: str) -> str:
    codes = ";".join(_SGR[word] for word in style.split() if word in _SGR)
    return f"\x1b[{codes}m{text}\x1b[0m" if codes and text else text
