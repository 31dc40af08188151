"""The interactive terminal UI (Textual): a transcript, an input box with slash commands, a live status line.

It reads everything live from the store and acts only through the library's own paths (control, engines,
chat, side questions, planning), exactly as the CLI does. Nothing below it imports it.
"""
