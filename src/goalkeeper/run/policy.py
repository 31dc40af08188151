"""The sandbox and the environment a goal's commands run under, from its contract, the person's own files and
config.toml at its base: one definition for the runner (goal_run.py, prepare.py) and for the baseline's head
start (head_start.py), which may only stand in for the baseline when both come out the same."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from goalkeeper.config.load import Config
from goalkeeper.config.trust import HARNESS_PROTECT
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.spec.contract import Contract


def goal_sandbox(contract: Contract, workspace: Path, own_files: Iterable[str]) -> SandboxPolicy:
    """The contract's boundaries as a policy. The harness's own folder is protected whatever the contract says,
    and so is the goal file it was set from (`own_files`): left untracked, it is never committed, so never the
    model's to write. config.toml's secrets join later (`configured`)."""
    boundaries = contract.boundaries
    return SandboxPolicy(boundaries.sandbox, workspace, (*HARNESS_PROTECT, *boundaries.protect,
                                                         *(f"/{path}" for path in own_files)),
                         tuple(boundaries.paths), network=boundaries.network)


def configured(sandbox: SandboxPolicy, config: Config) -> SandboxPolicy:
    """`sandbox` with config.toml's secrets: the globs it masks, the variables and files it hides."""
    return replace(sandbox, secrets=config.secrets, secret_env=config.secret_env, secret_files=config.secret_files)


def command_env(config: Config, key_env: str | None) -> dict[str, str]:
    """This process's environment as the goal's commands and checks get it (config.command_env)."""
    return config.command_env(os.environ, key_env)
