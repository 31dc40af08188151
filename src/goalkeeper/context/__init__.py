"""Prompt assembly: prompt files (prompts/, prompts.py), filling them (render), the conversation rebuilt from
events (history), the one replay of a goal's events into its facts (replay), compaction's hand-off (handoff) and
token counting (tokens).

May import: the other adapters (verify, tools, models, workspace, sandbox, contract, config, templates), store,
spec, core, events and errors.
"""
