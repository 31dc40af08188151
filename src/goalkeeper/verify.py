"""Runs a goal's checks and keep_green commands and turns each run into Evidence.

The harness trusts only this: a check passes on exit code 0, or on a metric read from its output
that meets its target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EvidenceKind = Literal["check", "constraint"]


@dataclass(frozen=True)
class Evidence:
    """The result of running one check (or one keep_green constraint) once."""

    name: str
    kind: EvidenceKind
    command: str
    exit_code: int
    duration_s: float
    output_tail: str
    """The last part of the output (a few KB), enough for a person or the model to see why."""
    passed: bool
    metric: float | None = None
    """The parsed metric value, when the check has a metric and it could be read."""
    target: str | None = None
    """The metric target as written, e.g. "< 120"."""
    timed_out: bool = False
    error: str | None = None
    """Why the check could not be judged normally (command not found, metric not found...)."""
