"""The verdict: the checks in the clean room, and in review mode on the tree as it stands too.

A goal cannot be achieved by weakening its checks: the clean room leaves out the goal's changes to the
verification surface, so only a pass there counts (see cleanroom.py).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from goalkeeper.events import Evidence
from goalkeeper.spec.contract import Contract
from goalkeeper.verify import TAMPERING
from goalkeeper.verify.observed import Change, Surface, surface_from_pins
from goalkeeper.verify.pins import DIFF_CHARS, Pins, SurfaceState, surface_state

if TYPE_CHECKING:
    from goalkeeper.sandbox.policy import SandboxPolicy
    from goalkeeper.verify.cleanroom import Baseline

#: Characters of the pinned-file diff kept in each evidence event.
SURFACE_DIFF_CHARS = 8_000


async def verify_goal(workspace: Path, base: Baseline, pins: Pins, contract: Contract,
                      keep_green: list[str] | None, sandbox: SandboxPolicy,
                      env: dict[str, str] | None, observed: Surface | None = None,
                      baseline: list[Evidence] | None = None) -> tuple[list[Evidence], dict[str, Any]]:
    """The verdict's evidence, taken in the clean room, and the surface's state for the evidence event.

    `observed` is the surface traced at baseline; goals stored before it was recorded infer it from `pins`.

    review (the default): the room leaves out the goal's changes to the surface; when it left any out, the
    checks must also pass on the tree as it stands (so added tests pass too). A pass that holds only with
    the surface changed is a failing `verification_tampering`. deny: the same room (pinned files are
    read-only besides). allow: the room takes every change, but still nothing else from the workspace.
    """
    from goalkeeper.verify.checks import run_checks  # the sandbox loads only where checks run, not to show them
    from goalkeeper.verify.cleanroom import run_in_room

    state = surface_state(workspace, pins, base.commit, base.mirror)
    payload: dict[str, Any] = {**asdict(state), "diff": state.diff[:SURFACE_DIFF_CHARS]}
    surface = None if contract.verify.edits == "allow" else (observed or surface_from_pins(pins))
    evidence, changes, built_s = await run_in_room(workspace, base, contract, keep_green, sandbox, env, surface,
                                                   baseline)
    payload["room"] = {**changes.payload(), "build_s": round(built_s, 3)}
    if contract.verify.edits != "review" or not changes.held_back:
        return evidence, payload
    started = time.monotonic()
    as_is = [e.model_copy(update={"room": "workspace"})
             for e in await run_checks(contract, workspace, keep_green, env=env, sandbox=sandbox, baseline=baseline)]
    payload["as_it_stands"] = "pass" if all(e.passed for e in as_is) else "fail"
    if all(e.passed for e in as_is) and not all(e.passed for e in evidence):
        failing = ", ".join(e.name for e in evidence if not e.passed)
        evidence.append(Evidence(
            name=TAMPERING, kind="check", command="the checks in the clean room, without the changed surface",
            exit_code=1, duration_s=time.monotonic() - started, passed=False, room="clean room",
            output_tail=tamper_feedback(state, changes.held_back),
            error=f"the checks pass only with the verification surface changed; without those changes, "
                  f"these fail: {failing}"))
    # A canary caught as it stands is tampering by its own name; any other failure says where it happened.
    evidence += [e if e.name == TAMPERING else e.model_copy(update={"name": f"{e.name} (as it stands)"})
                 for e in as_is if not e.passed]
    return evidence, payload


def tamper_feedback(state: SurfaceState, held_back: list[tuple[str, Change]], limit: int = DIFF_CHARS) -> str:
    """What the model is told when its completion passed only because it changed the verification surface."""
    named = [f"  {path} ({change})" for path, change in held_back]
    diff = state.diff if len(state.diff) <= limit else (
        state.diff[:limit] + f"\n… diff cut at {limit} of {len(state.diff)} characters\n")
    shown = "\n\nWhat changed in the pinned files:\n```diff\n" + diff + "```\n" if diff else "\n\n"
    return (
        "The checks pass, but not on the verification surface as it was at the start of the goal. The "
        "harness ran them in a clean room built from the baseline, without these changes, and there they "
        "fail, so the goal is not achieved:\n" + "\n".join(named) + shown
        + "Make the checks pass by changing the code under test. New test files are welcome; "
        "weakening, skipping or deleting existing tests, configuration, fixtures or benchmarks is not, and "
        "neither is a file that shadows the test runner or a standard-library module.\n"
    )
