"""The verification surface during a run: what the checks' own files look like now, and the double check.

A goal cannot be achieved by weakening its checks: in review mode a passing run is repeated in a copy
where every pinned file is back at its baseline content, and only a pass there counts.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from goalkeeper.contract import Contract
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.verify.checks import Evidence
from goalkeeper.verify.pins import Pins, surface_state, tamper_feedback, verify_restored

#: The name the failed double check goes by, in evidence, attempts and the report.
TAMPERING = "verification_tampering"

#: Characters of the pinned-file diff kept in each evidence event.
SURFACE_DIFF_CHARS = 8_000


async def double_check(workspace: Path, base_commit: str, pins: Pins, contract: Contract,
                       evidence: list[Evidence], keep_green: list[str] | None, sandbox: SandboxPolicy | None,
                       env: dict[str, str] | None) -> tuple[list[Evidence], dict[str, Any]]:
    """Extra evidence (a failing `verification_tampering` when the pass depends on changed pinned files)
    and the surface's state for the evidence event."""
    state = surface_state(workspace, pins, base_commit)
    payload = {**asdict(state), "diff": state.diff[:SURFACE_DIFF_CHARS]}
    changed = bool(state.modified or state.deleted)
    if contract.verify.edits != "review" or not changed or not all(e.passed for e in evidence):
        return [], payload
    started = time.monotonic()
    restored = await verify_restored(workspace, base_commit, pins, contract, keep_green, sandbox, env)
    if all(e.passed for e in restored):
        return [], {**payload, "restored": "pass"}
    failing = ", ".join(e.name for e in restored if not e.passed)
    tampered = Evidence(
        name=TAMPERING, kind="check", command="the checks again, with every pinned file at its baseline content",
        exit_code=1, duration_s=time.monotonic() - started, output_tail=tamper_feedback(state), passed=False,
        error=f"the checks pass only with the verification files changed; restored, these fail: {failing}")
    return [tampered], {**payload, "restored": "fail"}


def surface_lines(payload: dict[str, Any] | None) -> list[str]:
    """The surface's state for a person: unchanged, extended or modified (with the files)."""
    if not payload:
        return []
    lines = [f"verification surface: {payload['state']}"]
    for label in ("modified", "deleted", "added"):
        if payload.get(label):
            lines.append(f"  {label}: {', '.join(payload[label])}")
    return lines
