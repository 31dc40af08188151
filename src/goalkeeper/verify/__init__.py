"""Verification: what the harness runs to judge a goal, and on which tree.

`checks` runs checks and constraints and reads metrics; `pins` records the verification surface at baseline;
`surface` compares it during a run and re-verifies with the surface restored.
"""
