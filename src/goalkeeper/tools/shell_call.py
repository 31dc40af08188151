"""A `shell` call as the faces show it: the command its JSON arguments ask for.

Apart from tools/shell.py so that showing a goal's log (render/terminal.py, the TUI) does not load the tool
protocol, the model types and the sandbox.
"""

from __future__ import annotations

import json


def command_of(arguments: str) -> str:
    """The command a `shell` call's JSON arguments ask for (the raw text when they are not JSON)."""
    try:
        return str(json.loads(arguments).get("command", arguments))
    except (json.JSONDecodeError, AttributeError):
        return arguments
