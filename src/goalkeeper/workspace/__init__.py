"""Git-facing helpers for the workspace: tree hashes now; branches and checkpoint commits later."""
