"""The control layer the faces call: set a goal, pause, resume, clear, raise (control), read-only views over the
store (views) and the final report (report).

May import: run, sessions and everything below them; never a face (cli, tui, server).
"""
