"""Untrusted text made inert for a terminal: control and escape sequences shown, never obeyed.

Model text, tool output, summaries, check output and the objective can all carry ESC/CSI/OSC sequences,
C0/C1 controls, a bare carriage return or bidi overrides. On a terminal those could move the cursor, erase
a line and print a fake "achieved" status, or reorder what is read. Every terminal write goes through
`neutralise` once (console.py's consoles and `write_text`); JSON keeps exact strings (json escapes them),
and the TUI and the dashboard show the text as plain text, never as markup.
"""

from __future__ import annotations

import re

#: Bidirectional overrides, embeddings and isolates (Trojan Source), plus the Arabic letter mark.
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u061c"

#: C0 except \t and \n (a bare \r rewrites the line), DEL, C1 (0x9b is a one-byte CSI), bidi controls.
_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{BIDI}]")


def _shown(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # the Control Pictures block: ␛ for ESC, ␍ for CR, ␀ for NUL
    if code == 0x7F:
        return "\u2421"  # ␡
    return f"\\u{code:04x}"  # C1 and bidi controls have no picture: shown escaped


def neutralise(text: str) -> str:
    """`text` with every control character that a terminal would act on replaced by a visible stand-in.

    Newlines and tabs stay; `\\r\\n` becomes `\\n`. Idempotent, and plain text passes through unchanged.
    """
    if text.isprintable():
        return text  # the common case costs one C-level scan
    return _UNSAFE.sub(_shown, text.replace("\r\n", "\n"))


def is_inert(text: str) -> bool:
    """True when `neutralise` would leave `text` as it is."""
    return neutralise(text) == text


def markup_literal(text: str) -> str:
    """`text` for a place that only takes Textual markup (a collapsible's title, a label, a button): neutralised,
    and every `[` escaped, so nothing in it is read as a tag. (Textual's `escape` leaves `[32m` alone, and the
    markup parser then fails on it: a model could crash the TUI with one escape sequence in a tool argument.)"""
    return neutralise(text).replace("[", "\\[")
