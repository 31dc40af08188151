"""Reporters that run inside the checked project's own Python, never imported by goalkeeper itself.

Each file is copied under a per-run random module name into a read-only folder outside the workspace and
put on the check's PYTHONPATH (see verify/tests.py). They import only the standard library and pytest, and
write one JSON record a line to the file named by $GOALKEEPER_TESTS_OUT, the "finished" record last.
"""
