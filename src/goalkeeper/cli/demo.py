"""The demo: a bundled sample repository with a real bug and a failing test, and a goal to fix it."""

from __future__ import annotations

import shutil
import tempfile
from importlib import resources
from pathlib import Path

from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.goals.service import commit_all
from goalkeeper.spec.contract import Contract

SAMPLE = "discounts"


def prepare_sample(parent: Path | None = None) -> Path:
    """Copy the sample to a fresh directory and make it a git repository with one commit."""
    target = Path(tempfile.mkdtemp(prefix="gk-demo-", dir=parent)) / SAMPLE
    source = resources.files("goalkeeper").joinpath("samples", SAMPLE)
    with resources.as_file(source) as path:
        shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
    commit_all(target, "sample with a discount bug")
    return target


def replay_script() -> Path:
    """The bundled scripted model for `gk demo --replay`: a false claim first, then an honest fix."""
    return Path(str(resources.files("goalkeeper").joinpath("samples", f"{SAMPLE}.replay.json")))


def demo_contract(small: bool = False) -> Contract:
    """Fix the bug; the unit tests are the verification surface and must not be edited.

    `small` budgets suit the bundled 135M local model: its 4K context fills in a few turns, and on two
    cores each turn takes a while, so the demo ends in minutes either way.
    """
    return contract_from_flags(
        "Fix the discount bug in cart.py so that the unit tests pass. Percentages are given as 10 for 10%.",
        checks=["tests=python -m unittest -q"], protect=["tests/**"],
        budget_tokens=20_000 if small else 200_000, budget_turns=3 if small else 12,
        max_attempts=3, no_progress_turns=4)


def describe() -> list[str]:
    """What the demo is about to do, for the person watching."""
    return ["goal: fix the discount bug so `python -m unittest` passes",
            "the harness runs the tests itself; the model's word that it is done is not enough"]
