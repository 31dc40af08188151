"""Prompt assembly: prompt files, the goal contract block, and the conversation rebuilt from events."""
