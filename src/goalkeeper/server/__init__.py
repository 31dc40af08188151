"""The HTTP server (`gk serve`): a REST API over the store, server-sent events, and the dashboard's files.

It reads the store and changes goals only through goals/control.py, like the CLI; it never runs a goal itself.
Only the CLI imports it (`gk serve`).
May import: goals and every layer below; never the CLI or the TUI, and the store, the workspace and the
sandbox only through goals (import contract).
"""

from goalkeeper.server.app import DEFAULT_PORT, close_app, create_app, is_loopback, serve
from goalkeeper.server.auth import ensure_token, read_token, token_path

__all__ = ["DEFAULT_PORT", "close_app", "create_app", "ensure_token", "is_loopback", "read_token", "serve",
           "token_path"]
