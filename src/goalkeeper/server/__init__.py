"""The HTTP server (`gk serve`): a REST API over the store, server-sent events, and the dashboard's files.

It reads the store and changes goals only through control.py, like the CLI; it never runs a goal itself.
Nothing below the runner imports from here.
"""

from goalkeeper.server.app import DEFAULT_PORT, close_app, create_app, is_loopback, serve
from goalkeeper.server.auth import ensure_token, read_token, token_path

__all__ = ["DEFAULT_PORT", "close_app", "create_app", "ensure_token", "is_loopback", "read_token", "serve",
           "token_path"]
