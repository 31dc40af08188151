"""Mechanical boundaries: the bubblewrap sandbox, command rules and approvals."""
