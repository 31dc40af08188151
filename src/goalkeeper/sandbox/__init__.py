"""Mechanical boundaries: the bubblewrap sandbox (bwrap, policy, limits, and scan with watch: the protected and
secret paths found and kept current), running one command (process), command rules and approvals (rules,
shell_words) and the one glob matcher (globs).

May import: the other adapters (verify, context, tools, models, workspace, contract, config, templates), store,
spec, core, events and errors.
"""
