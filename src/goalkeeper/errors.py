"""The one exception family. Every error says what happened and how to fix it.

The CLI renders these in one place (cli/root.py); nothing else prints them.
"""

from __future__ import annotations

from typing import Literal


class GoalkeeperError(Exception):
    """Base of every error a person may see. `hint` says what to do about it."""

    exit_code = 4

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class ContractError(GoalkeeperError):
    """A goal contract (goal.toml or flags) is missing, malformed or inconsistent."""


class ConfigError(GoalkeeperError):
    """Configuration or a command-line argument is wrong."""


class NoProviderError(ConfigError):
    """No model provider is configured anywhere: no flag, no config file, no environment."""


class WorkspaceError(GoalkeeperError):
    """The workspace directory is missing, not a directory, or not usable."""


class StoreError(GoalkeeperError):
    """The state store is corrupt, locked or inconsistent."""


class StoreLockedError(StoreError):
    """The store stayed locked past the wait limit."""


class LeaseHeldError(StoreError):
    """Another live runner holds this goal's lease."""


class GoalNotFoundError(StoreError):
    """There is no goal (or thread) where one was expected."""


StaleReason = Literal["missing", "replaced", "cleared", "version"]


class StaleGoalError(StoreError):
    """A write was guarded by a goal that is gone, no longer current, or at another version.

    Nothing was written. `current_version` is the goal's version when only the version differs, else None.
    """

    def __init__(self, goal_id: str, reason: StaleReason, current_version: int | None = None,
                 expected_version: int | None = None) -> None:
        what = {
            "missing": "does not exist",
            "replaced": "was replaced by a newer goal",
            "cleared": "was cleared",
            "version": f"is at version {current_version}, not {expected_version}",
        }[reason]
        super().__init__(
            f"goal {goal_id} {what}; nothing was written",
            hint="reload the goal (`gk goal`) and decide again; a stale goal is never charged",
        )
        self.goal_id = goal_id
        self.reason: StaleReason = reason
        self.current_version = current_version


class BlobNotFoundError(StoreError):
    """No blob has the id that was asked for."""


class SandboxError(GoalkeeperError):
    """A command could not be run under the sandbox policy."""


class ProviderError(GoalkeeperError):
    """The model provider failed. `transient` errors are retried; others fail at once."""

    transient = False

    def __init__(self, message: str, hint: str | None = None, *, status_code: int | None = None,
                 retry_after_s: float | None = None, usage: object | None = None) -> None:
        super().__init__(message, hint)
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.usage = usage
        """Usage the provider reported before failing (e.g. a stream cut after its usage chunk): still charged.
        A models.base.Usage, typed `object` because errors is the bottom layer and imports nothing of ours."""


class TransientProviderError(ProviderError):
    """Rate limit, 5xx, timeout, connection reset, cut stream: worth retrying."""

    transient = True


class ProviderUnavailableError(ProviderError):
    """Retries ran out. The goal pauses; it never becomes unmet because of this."""

    transient = True


class ContextLengthError(ProviderError):
    """The request did not fit the model's context window."""
