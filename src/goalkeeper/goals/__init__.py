"""The control layer."""
