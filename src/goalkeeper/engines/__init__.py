"""Engines drive runners: `local` runs a goal in this process (Temporal comes later)."""
