"""The `goalkeeper` / `gk` command: the Typer app (app), `gk exec` in a catalogue of its own (exec_command), shared
option groups (options), terminal rendering (console) and the bundled demo (demo). It is the entry point: `gk tui`
and `gk serve` start the other faces.

May import: every layer, the TUI and the server included; it reaches the store, the workspace and the sandbox
only through goals (import contract).
"""
