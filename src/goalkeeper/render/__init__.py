"""Rendering both terminal faces share: the inert wrapper that shows control characters instead of obeying them,
the one-line form of a stored event (terminal), and the lines that show a verification surface (surface). The
CLI and the TUI each import it; neither imports the other.

May import: the adapters (tools, ...), store, spec, core, events and errors, and rich; never goals, run, sessions
or a face (import contract).
"""
