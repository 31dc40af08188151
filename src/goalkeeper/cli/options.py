"""Option groups that several `gk` commands share: the contract flags and the model flags.

Each group is declared once, as a dataclass whose fields carry their option's help. `with_options` adds
a group's options to a command's signature (Typer reads the signature) and hands the command one typed
object instead of a dozen parameters.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import typer

from goalkeeper.errors import ConfigError, NoProviderError, WorkspaceError
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import ModelSettings

if TYPE_CHECKING:
    from goalkeeper.config.load import Config
    from goalkeeper.sessions.planning import Plan

Command = TypeVar("Command", bound=Callable[..., Any])

StartIn = Annotated[Path | None, typer.Option("--cwd", help="Run as if started in this directory: relative paths "
                                                            "are read from there (default: the current one).")]
"""`--cwd` of a command that reads no one workspace (the server, a worker): every command takes `--cwd`."""


def existing_dir(cwd: Path) -> Path:
    """`--cwd` as given, when it is an existing directory; else a clear error."""
    path = cwd.expanduser()
    if not path.is_dir():
        raise WorkspaceError(f"--cwd {path} is not an existing directory", "pass --cwd with an existing directory")
    return path


def start_in(cwd: Path | None) -> None:
    """Move into `cwd` (StartIn's meaning), or a clear error when it is not a directory."""
    if cwd is not None:
        os.chdir(existing_dir(cwd))


def option(help_text: str, *names: str, default: Any = None) -> Any:
    """A dataclass field that becomes a command-line option."""
    info = typer.Option(*names, help=help_text)
    if isinstance(default, list):
        return field(default_factory=list, metadata={"option": info})
    return field(default=default, metadata={"option": info})


Cwd = Annotated[Path, typer.Option("--cwd", help="Workspace directory (default: the current one).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
UNVERIFIED_HELP = "Allow a goal with no checks: only the model's audit ends it, as `achieved (unverified)`."


@dataclass(frozen=True)
class ContractFlags:
    """The goal contract as flags (DESIGN §1); `--file` is laid under them."""

    file: Path | None = option("Load the contract from goal.toml.", "--file", "-f")
    check: list[str] = option("A check NAME=COMMAND; passes on exit 0. Repeatable.", default=[])
    metric: list[str] = option("A metric check NAME=COMMAND; needs --target and --regex or --json-path.", default=[])
    target: list[str] = option("A metric target, e.g. 'p95<120'.", default=[])
    regex: list[str] = option("NAME=REGEX with one group that reads the metric.", default=[])
    json_path: list[str] = option("NAME=PATH into JSON the metric command prints.", default=[])
    keep_green: list[str] = option("A command that must stay green (if green at the start).", default=[])
    protect: list[str] = option("A glob that may never be changed.", default=[])
    paths: list[str] = option("A glob that may be changed (default: anything not protected).", default=[])
    budget_tokens: int | None = option("Token budget (non-cached input + output).")
    budget_usd: float | None = option("Cost budget in USD.")
    budget_time: str | None = option("Time budget, e.g. 2h or 90m.")
    budget_turns: int | None = option("Turn budget.")
    max_attempts: int | None = option("Failed completion attempts allowed per check.")
    no_progress_turns: int | None = option("Turns without progress before a nudge.")
    from_plan: bool = option("Adopt the newest plan (gk plan): its objective, and its steps as the checklist.",
                             "--from-plan", default=False)

    def own_files(self, top: Path) -> tuple[str, ...]:
        """The goal file (--file) relative to the repository's top-level `top`, when it lies inside: the person's
        own file for goalkeeper, which never counts as a change (workspace/git.py, keep_untracked)."""
        if self.file is None:
            return ()
        try:
            return (self.file.expanduser().resolve().relative_to(top.resolve()).as_posix(),)
        except ValueError:  # outside the repository: git never sees it
            return ()

    def contract(self, objective: str | None, plan: Plan | None = None) -> Contract:
        """The contract these flags describe; with `plan` (from --from-plan), its objective and checklist."""
        from goalkeeper.contract.flags import contract_from_flags  # and TOML: only a command given a goal reads one
        from goalkeeper.contract.toml import load_contract

        checklist: tuple[str, ...] = ()
        if plan is not None:
            if objective is not None:
                raise ConfigError("an objective and --from-plan were both given",
                                  "give one or the other: --from-plan takes the plan's objective")
            objective, checklist = plan.objective, plan.steps
        return contract_from_flags(
            objective, base=load_contract(self.file) if self.file else None, checks=self.check,
            metrics=self.metric, targets=self.target, regexes=self.regex, json_paths=self.json_path,
            keep_green=self.keep_green, protect=self.protect, paths=self.paths, budget_tokens=self.budget_tokens,
            budget_usd=self.budget_usd, budget_time=self.budget_time, budget_turns=self.budget_turns,
            max_attempts=self.max_attempts, no_progress_turns=self.no_progress_turns, checklist=checklist)


@dataclass(frozen=True)
class ModelFlags:
    """Which model to ask; laid over config.toml (user, then project, then the chosen profile)."""

    model: str | None = option("Model name, or scripted:PATH.")
    model_provider: str | None = option("openai, anthropic, ollama, local, or one from config.toml.")
    profile: str | None = option("A [profiles.NAME] from config.toml.")
    reasoning_effort: str | None = option("minimal, low, medium or high (Responses API models).")
    base_url: str | None = option("OpenAI-compatible base URL (default $OPENAI_BASE_URL).")
    api_key_env: str | None = option("Variable holding the API key (default OPENAI_API_KEY).")
    stream: bool = option("Stream model responses.", "--stream", default=False)

    @property
    def given(self) -> bool:
        """True when any flag names something about the model."""
        return any((self.model, self.model_provider, self.profile, self.reasoning_effort, self.base_url,
                    self.api_key_env, self.stream))

    def settings(self, workspace: Path, usd_budget: float | None = None, commit: str = "HEAD",
                 config: Config | None = None) -> ModelSettings:
        """Flags over config files over the environment; a clear error when nothing names a provider. The
        project's config is read as committed at `commit` (a goal's base; HEAD before a goal exists), unless the
        caller has read it already (`config`)."""
        from goalkeeper.config.load import load_config  # config.toml's schema loads only where a model is named
        from goalkeeper.config.resolve import settings_from_config

        return settings_from_config(
            config or load_config(workspace, self.profile, commit), model=self.model,
            model_provider=self.model_provider, base_url=self.base_url, api_key_env=self.api_key_env,
            reasoning_effort=self.reasoning_effort, stream=self.stream, usd_budget=usd_budget)

    def settings_if_configured(self, workspace: Path, usd_budget: float | None = None,
                               config: Config | None = None) -> ModelSettings | None:
        """Like `settings`, but None when no provider is configured anywhere (`gk run` asks later)."""
        try:
            return self.settings(workspace, usd_budget, config=config)
        except NoProviderError:
            if self.given:
                raise
            return None


def with_options(**groups: type) -> Callable[[Command], Command]:
    """Add each group's fields to the command's options; the command receives one object per group."""

    def decorate(command: Command) -> Command:
        return cast(Command, _WithOptions(command, groups))

    return decorate


class _WithOptions:
    """A command that takes option groups: called with each group's options, it calls the command with one
    object per group. Its signature (what typer reads) is made the first time typer asks, when that command is
    built: making it evaluates all the command's annotations, and `cli/app.py` defines a dozen such commands
    on every start while one at most runs (about 5 ms of every read-only command, measured)."""

    def __init__(self, command: Callable[..., Any], groups: dict[str, type]) -> None:
        # Its name, module and docstring (typer's command name and help); not its annotations, made below.
        functools.update_wrapper(self, command, assigned=("__module__", "__name__", "__qualname__", "__doc__"),
                                 updated=())
        self._command, self._groups = command, groups

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for key, group in self._groups.items():
            kwargs[key] = group(**{f.name: kwargs.pop(f.name) for f in fields(group)})
        return self._command(*args, **kwargs)

    @functools.cached_property
    def __signature__(self) -> inspect.Signature:
        signature = inspect.signature(self._command, eval_str=True)
        own = [p for name, p in signature.parameters.items() if name not in self._groups]
        added = [parameter for group in self._groups.values() for parameter in _parameters(group)]
        return signature.replace(parameters=[*own, *added])

    @functools.cached_property
    def __annotations__(self) -> dict[str, Any]:  # type: ignore[override]
        signature = self.__signature__
        return {p.name: p.annotation for p in signature.parameters.values()} | {"return": signature.return_annotation}


@functools.cache
def _parameters(group: type) -> tuple[inspect.Parameter, ...]:
    """The group's fields as keyword-only options. Made once per group: evaluating the annotations is most of
    what defining the commands costs at startup, and most commands share the groups."""
    kinds = inspect.get_annotations(group, eval_str=True)
    return tuple(_parameter(option_field, kinds[option_field.name]) for option_field in fields(group))


def _parameter(option_field: Field[Any], kind: Any) -> inspect.Parameter:
    default = [] if option_field.default is MISSING else option_field.default
    return inspect.Parameter(option_field.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[kind, option_field.metadata["option"]])
