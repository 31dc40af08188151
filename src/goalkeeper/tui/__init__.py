"""The interactive terminal UI (Textual): a transcript, an input box with slash commands, a live status line.

It reads everything live from the store and acts only through the library's own paths (control, the engine,
chat, side questions, planning), exactly as the CLI does. Only the CLI imports it (`gk tui`).
May import: goals and every layer below; never the CLI or the server, and the store, the workspace and the
sandbox only through goals (import contract).
"""
