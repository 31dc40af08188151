"""Model sessions."""
