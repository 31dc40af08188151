"""Where goalkeeper keeps its own files: $GOALKEEPER_HOME, by default ~/.goalkeeper (the store, the user's
config.toml, mirrors, worktrees' neighbour). The standard library only: every read command asks it first."""

from __future__ import annotations

import os
from pathlib import Path


def goalkeeper_home() -> Path:
    """`$GOALKEEPER_HOME`, by default `~/.goalkeeper` (the store lives there too)."""
    home = os.environ.get("GOALKEEPER_HOME")
    return Path(home).expanduser() if home else Path.home() / ".goalkeeper"
