"""A check run after the baseline: in the clean room when the goal has its mirror and pins, and judged by `decide`."""

from __future__ import annotations

import asyncio
from typing import Any

from goalkeeper.core.outcomes import Action, ChecksRan
from goalkeeper.events import EvidenceEvent
from goalkeeper.run.goal_run import GoalRun
from goalkeeper.run.hooks import completion_refusal
from goalkeeper.run.prepare import results
from goalkeeper.verify.artifacts import artifact_evidence
from goalkeeper.verify.checks import run_checks
from goalkeeper.verify.surface import verify_goal


async def verify(run: GoalRun) -> Action:
    """Run the checks (and the constraints green at baseline) and let `decide` judge them."""
    run.before("checks")
    trigger = run.facts.turn.pending_checks or "completion"
    facts = run.facts
    surface: dict[str, Any] | None = None
    base = run.baseline_source()
    if facts.pins is not None and base is not None:
        evidence, surface = await verify_goal(run.workspace, base, facts.pins, run.contract, facts.keep_green,
                                              run.sandbox, run.env, facts.surface, facts.baseline_evidence)
    else:
        evidence = await run_checks(run.contract, run.workspace, keep_green=facts.keep_green, sandbox=run.sandbox,
                                    env=run.env, baseline=facts.baseline_evidence)
    # The promised files are looked for in the same tree, and judged with the checks.
    evidence += await asyncio.to_thread(artifact_evidence, run.contract.artifacts, run.workspace)
    # A completion hook is one more check: its veto is failing evidence, judged like any other.
    evidence = [*evidence, *await completion_refusal(run, evidence, trigger)]
    ran = ChecksRan(run.goal.goal_id, trigger, results(evidence, run.contract), turn=run.state.spent.turns,
                    tree_hash=await run.tree_hash())
    # The tree measured: its checkpoint's value.
    event = EvidenceEvent(trigger=trigger, turn=ran.turn, evidence=evidence, surface=surface, tree_hash=ran.tree_hash)
    return run.steer(ran, [event]).action
