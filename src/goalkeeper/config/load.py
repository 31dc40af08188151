"""Reading config.toml files and laying them over each other: built-ins, user file, project file, profile.

The project file is read from a commit, never the working tree, and cut down unless the repository is
trusted (trust.py). Each file is validated on its own, so an error names the file it is in; the layers are
then merged key by key (tables merge, values replace), except `[[rules]]`, `[[notify]]`, `[[hooks]]` and
`[sandbox]`'s lists, which add up: every layer's apply. Reads files but never the environment's secrets, and
never prints.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from goalkeeper.config.problems import did_you_mean, nesting_error, syntax_error, validation_error
from goalkeeper.config.schema import (
    BUILTIN_PROVIDERS,
    OPTIONAL_BASE_URL,
    PROJECT_DOC_MAX_BYTES,
    CommandRule,
    ConfigFile,
    HookTable,
    McpServer,
    ModelProvider,
    NotifyTarget,
)
from goalkeeper.config.temporal import table_files
from goalkeeper.config.trust import PROJECT_CONFIG, is_trusted, untrusted_view, untrusted_warning
from goalkeeper.errors import ConfigError, WorkspaceError
from goalkeeper.models.pricing import load_prices
from goalkeeper.sandbox.policy import DEFAULT_SECRET_ENV, DEFAULT_SECRETS, command_environment
from goalkeeper.sandbox.rules import ApprovalPolicy, Rule
from goalkeeper.spec.settings import AgentSettings, Price, ReasoningEffort, RunSettings
from goalkeeper.store.home import goalkeeper_home as goalkeeper_home  # the home the faces ask config for
from goalkeeper.workspace.git import ByCommit, head_from_files, objects_key, probe, toplevel


@dataclass(frozen=True)
class Config:
    """The configuration in force: files and the chosen profile merged, before any flag is applied.

    `Config()` is a machine with no config files: built-in providers and prices, default run knobs.
    """

    model: str | None = None
    """`model`: the model name, or `scripted:PATH`; None leaves it to flags, the environment or the provider."""
    model_provider: str | None = None
    """`model_provider`: the provider's NAME; None leaves it to flags or the environment."""
    reasoning_effort: ReasoningEffort | None = None
    """`model_reasoning_effort`."""
    profile: str | None = None
    """The profile that was laid over the files, if any."""
    providers: Mapping[str, ModelProvider] = field(default_factory=lambda: _builtin_providers())
    """Every provider by NAME: the built-ins with the files' `[model_providers]` laid over them."""
    prices: Mapping[str, Price] = field(default_factory=load_prices)
    """The price table: built-in prices with `[model_pricing]` laid over them."""
    context_window: int | None = None
    """`model_context_window`: the model's window in tokens; None leaves it to the built-in table."""
    auto_compact_token_limit: int | None = None
    """`model_auto_compact_token_limit`: compact at this many prompt tokens; None means 80% of the window."""
    run: RunSettings = field(default_factory=RunSettings)
    """Harness knobs: `[run]` and the top-level `tool_output_token_limit` laid over the defaults."""
    files: tuple[Path, ...] = ()
    """The config files that were read, user file first."""
    approval_policy: ApprovalPolicy = "on-request"
    """`approval_policy`: when a shell command needs a person's approval (untrusted, on-request, never)."""
    rules: tuple[Rule, ...] = ()
    """`[[rules]]` from every layer, the profile's first, then the project's, then the user's; where several
    match a command the strictest wins, so a later layer adds rules but cannot loosen an earlier one."""
    restate_before_start: bool = True
    """`restate_before_start`: before a goal first runs, the model restates it for the person to check."""
    notify: tuple[NotifyTarget, ...] = ()
    """`[[notify]]` webhooks from every layer, the user's first: each is told when a run reaches its statuses."""
    server_url: str | None = None
    """`server_url`: where `gk serve` is reachable, for report links in notifications."""
    notify_wait_s: float = 10.0
    """`notify_wait_s`: how long a finished run waits for notifications still being delivered."""
    secrets: tuple[str, ...] = DEFAULT_SECRETS
    """Path globs the sandbox masks: the built-in ones, then every layer's `[sandbox] secret_paths`."""
    secret_env: tuple[str, ...] = DEFAULT_SECRET_ENV
    """Variable name globs no command sees: the built-in ones, then every layer's `[sandbox] secret_env`."""
    secret_files: tuple[Path, ...] = ()
    """Files masked wherever they lie: the certificate, key and CA of the user's `[temporal]` table."""
    project_doc_max_bytes: int = PROJECT_DOC_MAX_BYTES
    """`project_doc_max_bytes`: bytes of project instructions (AGENTS.md, CLAUDE.md) a goal's prompt holds."""
    hooks: tuple[HookTable, ...] = ()
    """`[[hooks]]` from every layer, the user's first (a project's only when trusted): run/hooks.py runs them."""
    mcp_servers: Mapping[str, McpServer] = field(default_factory=dict)
    """`[mcp_servers.NAME]`: the MCP servers whose tools join a goal's (the user's; a trusted project's too)."""
    warnings: tuple[str, ...] = ()
    """What a person should know about how the files were read (an untrusted project's ignored keys,
    uncommitted project config); the CLI prints them. Reading never prints."""

    def key_envs(self) -> tuple[str, ...]:
        """The variables every provider in force reads its API key from: always kept from commands."""
        return tuple(sorted({p.env_key for p in self.providers.values() if p.env_key}))

    def command_env(self, environ: Mapping[str, str], key_env: str | None) -> dict[str, str]:
        """`environ` for the agent's commands and the checks: less `secret_env`, every provider's `env_key`, and
        `key_env`, the variable the goal's own model reads its key from, whatever its name (BARS_KEY)."""
        return command_environment(environ, self.secret_env, also=(*([key_env] if key_env else []),
                                                                   *self.key_envs()))


def config_paths(workspace: Path | None) -> list[Path]:
    """The config files that apply, in the order they are laid down: user, then project (when distinct).

    The project file is named as it sits in the working tree, but only its committed version is read.
    """
    paths = [goalkeeper_home() / "config.toml"]
    top = _top_level(workspace)
    if top is not None:
        project = top / PROJECT_CONFIG
        if project.resolve() != paths[0].resolve():
            paths.append(project)
    return paths


def load_config(workspace: Path | None, profile: str | None = None, commit: str = "HEAD") -> Config:
    """The configuration for `workspace`: user file, project file, then the profile (`profile`, else the
    files' `profile = ...`). Missing files are fine; every problem in one is a ConfigError naming it.

    The project file is read as committed at `commit` (a goal's base commit; HEAD before a goal exists),
    never from the working tree or a goal branch, which the model can write. In a repository the person
    has not trusted (`gk trust`), its keys that could send data elsewhere or loosen a limit are dropped
    and named in `Config.warnings`.
    """
    paths = config_paths(workspace)
    layers: list[tuple[str, dict[str, Any]]] = []
    files: list[Path] = []
    warnings: list[str] = []
    user: dict[str, Any] = {}
    if paths[0].is_file():
        user = read_config_file(paths[0])
        layers.append((str(paths[0]), user))
        files.append(paths[0])
    if len(paths) > 1 and (project := _project_layer(paths[1], commit, user, warnings)) is not None:
        layers.append(project)
        files.append(paths[1])
    config = _merge_layers(layers, profile, tuple(files), tuple(warnings))
    # The user's `[temporal]` names the fleet's credentials: no command may see the key's variable or read the
    # files. (A project's `[temporal]` is never read: where a fleet's credentials go is the user's to say.)
    fleet = user.get("temporal") or {}
    if not fleet:
        return config
    key_env = (fleet["api_key_env"],) if fleet.get("api_key_env") else ()
    return replace(config, secret_env=(*config.secret_env, *key_env), secret_files=table_files(fleet, paths[0]))


def _merge_layers(layers: list[tuple[str, dict[str, Any]]], profile: str | None, files: tuple[Path, ...],
                  warnings: tuple[str, ...]) -> Config:
    """The layers laid over the built-ins, the chosen profile over them, as one Config."""
    merged: dict[str, Any] = {"model_providers": dict(BUILTIN_PROVIDERS)}
    for _, data in layers:
        merged = deep_merge(merged, data)
    rule_layers = [data.get("rules", []) for _, data in layers]
    notify = [target for _, data in layers for target in data.get("notify", [])]  # they add up, like rules
    sandbox = [data.get("sandbox", {}) for _, data in layers]  # and so do the secret lists
    hooks = [hook for _, data in layers for hook in data.get("hooks", [])]  # and the hooks
    chosen = profile or merged.get("profile")
    if chosen is not None:
        overlay = _profile_table(merged, chosen, [where for where, _ in layers])
        rule_layers.append(overlay.get("rules", []))
        merged = deep_merge(merged, overlay)
    merged.pop("profiles", None)
    merged["rules"] = [rule for layer in reversed(rule_layers) for rule in layer]
    merged["notify"] = notify
    merged["hooks"] = hooks
    merged.pop("sandbox", None)
    config = ConfigFile.model_validate(merged)  # each layer was valid, so their merge is too
    _check_providers(config, layers)
    knobs = config.run.model_dump(exclude_none=True) if config.run else {}
    if config.tool_output_token_limit is not None:
        knobs["tool_output_token_limit"] = config.tool_output_token_limit
    if config.agents is not None:
        knobs["agents"] = AgentSettings(**config.agents.model_dump(exclude_none=True))
    return Config(model=config.model, model_provider=config.model_provider,
                  reasoning_effort=config.model_reasoning_effort, profile=chosen,
                  context_window=config.model_context_window,
                  auto_compact_token_limit=config.model_auto_compact_token_limit,
                  providers=config.model_providers, prices=load_prices(config.model_pricing),
                  run=RunSettings().model_copy(update=knobs),
                  files=files, approval_policy=config.approval_policy or "on-request",
                  rules=tuple(_rule(rule) for rule in config.rules or ()),
                  restate_before_start=True if config.restate_before_start is None else config.restate_before_start,
                  notify=tuple(config.notify), server_url=config.server_url,
                  notify_wait_s=10.0 if config.notify_wait_s is None else config.notify_wait_s,
                  secrets=(*DEFAULT_SECRETS, *_joined(sandbox, "secret_paths")),
                  secret_env=(*DEFAULT_SECRET_ENV, *_joined(sandbox, "secret_env")),
                  project_doc_max_bytes=PROJECT_DOC_MAX_BYTES if config.project_doc_max_bytes is None
                  else config.project_doc_max_bytes,
                  hooks=tuple(config.hooks), mcp_servers=config.mcp_servers, warnings=warnings)


def _rule(rule: CommandRule) -> Rule:
    """A `[[rules]]` table as the rules judge it: a command glob, or with `tool` a tool-name glob."""
    if rule.tool is not None:
        return Rule(rule.tool, rule.action, rule.reason, tool=True)
    return Rule(rule.match or "", rule.action, rule.reason)


def _joined(tables: list[dict[str, Any]], key: str) -> list[str]:
    """Every table's `key` list, one after another."""
    return [item for table in tables for item in table.get(key, ())]


USER_ONLY = ("store_url", "temporal")
"""Keys only the user's own config.toml may set; a project's are ignored, with a warning."""


def _project_layer(path: Path, commit: str, user: dict[str, Any],
                   warnings: list[str]) -> tuple[str, dict[str, Any]] | None:
    """The project file as committed at `commit` (None when it has none), cut down unless trusted."""
    top = path.parent.parent
    committed = _committed_text(top, commit)
    on_disk = _working_text(path)
    if on_disk is not None and on_disk != committed:
        warnings.append(f"{path} differs from its version committed at {_short(commit)}, and only the committed "
                        "version is read: commit it to use your changes")
    if committed is None:
        return None
    data = parse_config_text(committed, str(path))  # errors name the file a person would edit
    if mine := [key for key in USER_ONLY if key in data]:
        # Said, not silently dropped: a team that commits its store or fleet here would wonder why it is unused.
        warnings.append(f"{path} sets {', '.join(f'`{key}`' for key in mine)}, which only your own config file "
                        f"({goalkeeper_home() / 'config.toml'}) may set: where the store and the Temporal fleet are "
                        "(and their credentials) is each person's to say; it is ignored here")
        data = {key: value for key, value in data.items() if key not in USER_ONLY}
    if is_trusted(goalkeeper_home(), top):
        return str(path), data
    kept, ignored = untrusted_view(data, user)
    if ignored:
        warnings.append(untrusted_warning(str(path), top, ignored))
    return str(path), kept


def _top_level(workspace: Path | None) -> Path | None:
    """The repository's resolved top level, or None outside a repository."""
    if workspace is None or not workspace.is_dir():
        return None
    try:
        return toplevel(workspace).resolve()  # remembered per workspace while git would still find it
    except WorkspaceError:
        return None


def _committed_text(top: Path, commit: str) -> str | None:
    """The project file's text at `commit`; None when the commit has none (or there is no commit yet).

    `cat-file blob` prints the stored bytes as they are: no textconv, no filter, nothing the repository
    configures runs.
    """
    # HEAD (before a goal exists) is read as the commit it names, so that it is kept like any other.
    named = head_from_files(top) or commit if commit == "HEAD" else commit

    def read() -> str | None:
        done = probe(top, "cat-file", "blob", f"{named}:{PROJECT_CONFIG}", errors="replace")
        return done.stdout if done.returncode == 0 else None

    # A goal's start reads it twice, and a batch's goals (worktrees of one repository) share one commit. A commit
    # not in the repository reads as no file here, kept or not; a goal's base commit is there before its config
    # is read.
    return _COMMITTED.get(named, (objects_key(top), named), read)


#: (the repository's objects, full commit id) → the project file's text there (`_committed_text`).
_COMMITTED: ByCommit[tuple[str, str], str | None] = ByCommit(256)


def _short(commit: str) -> str:
    return commit[:12] if len(commit) == 40 else commit


def _working_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def read_config_file(path: Path) -> dict[str, Any]:
    """One config file's raw tables, checked against the schema (so errors name this file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}", "make it a readable UTF-8 file") from None
    return parse_config_text(text, str(path))


def parse_config_text(text: str, source: str) -> dict[str, Any]:
    """One config file's raw tables from its text, checked against the schema; errors name `source`."""
    try:
        return _checked(text, source)
    except RecursionError:  # tomllib recurses per nested array or inline table, repr per nested table
        raise nesting_error(source) from None


def _checked(text: str, source: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise syntax_error(error, text, source) from None
    try:
        ConfigFile.model_validate(data)
    except ValidationError as error:
        raise validation_error(error, source) from None
    return data


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` laid on `base`: tables merge key by key, anything else in `over` replaces."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        merged[key] = deep_merge(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
    return merged


def _profile_table(merged: Mapping[str, Any], name: str, files: list[str]) -> dict[str, Any]:
    profiles: dict[str, Any] = merged.get("profiles", {})
    if name in profiles:
        return dict(profiles[name])
    where = ", ".join(files) or "no config file was found"
    if not profiles:
        raise ConfigError(f"unknown profile `{name}`: no profiles are defined ({where})",
                          f"add a [profiles.{name}] table to {goalkeeper_home() / 'config.toml'}, "
                          "or drop --profile / `profile =`")
    raise ConfigError(f"unknown profile `{name}`{did_you_mean(name, profiles)} ({where})",
                      f"use one of the profiles defined: {', '.join(sorted(profiles))}")


def _check_providers(config: ConfigFile, layers: list[tuple[str, dict[str, Any]]]) -> None:
    """A provider someone defines must say where it lives."""
    for name, provider in config.model_providers.items():
        if provider.base_url is None and name not in OPTIONAL_BASE_URL:
            where = next((path for path, data in reversed(layers) if name in data.get("model_providers", {})),
                         "config.toml")
            raise ConfigError(f"{where}: model_providers.{name}: has no base_url",
                              f'write base_url = "https://…/v1" in [model_providers.{name}]')


def _builtin_providers() -> dict[str, ModelProvider]:
    return {name: ModelProvider.model_validate(table) for name, table in BUILTIN_PROVIDERS.items()}
