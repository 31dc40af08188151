"""The project instruction files a goal read (AGENTS.md, CLAUDE.md), one line each: for `gk goal`, the TUI and
the report. Display only, so showing a goal never loads the loader (context/instructions.py) or git."""

from __future__ import annotations

from typing import Any


def instruction_lines(files: list[dict[str, Any]]) -> list[str]:
    """One line per file found (InstructionFile's fields), for `gk goal`, the TUI and the report:
    `sub/AGENTS.md · 40,000 bytes, cut to 32,768`."""
    lines = []
    for item in files:
        if item.get("skipped"):
            how = f"not read: {item['skipped']}"
        elif item.get("cut"):
            how = f"{item['size']:,} bytes, cut to {item['loaded']:,}"
        else:
            how = f"{item['size']:,} bytes"
        lines.append(f"{item['path']} · {how}")
    return lines
