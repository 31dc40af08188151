"""The decision core."""
