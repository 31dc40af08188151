"""The control layer the faces call: set a goal, pause, resume, clear, raise (control), read-only views over the
store (views), the final report (report) and the PRD loop that distills a finished goal and re-does it
(prd).

May import: run, sessions and everything below them; never a face (cli, tui, server).
"""
