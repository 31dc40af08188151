"""Trusted projects: repositories whose committed `.goalkeeper/config.toml` applies in full (like Codex's).

A repository's config is written by whoever committed it, which may be a stranger (a cloned repository) or
the model (a goal branch). Until the person runs `gk trust` in it, the keys that could send data or
credentials elsewhere, or loosen a limit, are ignored (load.py). The list lives in
`$GOALKEEPER_HOME/trusted-projects.json` (0600, replaced atomically), keyed by the repository's resolved
top-level path (a linked worktree's is its main worktree's); the sandbox hides `$GOALKEEPER_HOME`, so the
model cannot add itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from goalkeeper.config.schema import PROJECT_DOC_MAX_BYTES
from goalkeeper.errors import ConfigError
from goalkeeper.spec.settings import RunSettings

TRUST_FILE = "trusted-projects.json"

PROJECT_CONFIG = ".goalkeeper/config.toml"
"""The project config file, relative to the repository's top level."""

HARNESS_PROTECT: tuple[str, ...] = ("/.goalkeeper/",)
"""Globs every goal protects whatever its contract says: the harness's own folder in the repository (its
config.toml, and whatever goalkeeper keeps there later). The sandbox binds it read-only when it exists,
the file tools refuse it, and a checkpoint reverts any change to it."""


def trust_path(home: Path) -> Path:
    """`$GOALKEEPER_HOME/trusted-projects.json`."""
    return home / TRUST_FILE


def trusted_projects(home: Path) -> dict[str, str]:
    """Every trusted top-level path, with when it was trusted (ISO 8601, UTC)."""
    path = trust_path(home)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ConfigError(f"cannot read the trusted projects {path}: {error}",
                          "make it a regular file (not a link), or delete it and run `gk trust` again") from None
    with os.fdopen(fd, encoding="utf-8") as handle:
        text = handle.read()
    try:
        data: Any = json.loads(text)
    except (json.JSONDecodeError, RecursionError):  # RecursionError: brackets nested past the parser's depth
        data = None
    projects = data.get("projects") if isinstance(data, dict) else None
    if not isinstance(projects, dict) or not all(isinstance(v, str) for v in projects.values()):
        raise ConfigError(f"the trusted projects file {path} is not what `gk trust` writes",
                          f"delete {path} and run `gk trust` again in each project you trust")
    return {str(key): value for key, value in projects.items()}


def is_trusted(home: Path, top: Path) -> bool:
    """Whether the repository whose top level is `top` has been trusted."""
    return project_key(top) in trusted_projects(home)


def trust(home: Path, top: Path) -> bool:
    """Trust the repository at `top`; False when it already was."""
    projects = trusted_projects(home)
    key = project_key(top)
    if key in projects:
        return False
    projects[key] = datetime.now(UTC).isoformat(timespec="seconds")
    _write(home, projects)
    return True


def revoke(home: Path, top: Path) -> bool:
    """Stop trusting the repository at `top`; False when it was not trusted."""
    projects = trusted_projects(home)
    if projects.pop(project_key(top), None) is None:
        return False
    _write(home, projects)
    return True


def project_key(top: Path) -> str:
    """The key a repository is trusted under: its resolved top-level path (a link to it is the same project).
    A linked worktree (a batch goal's, say) reads the same commits as its main worktree, so it is keyed by that
    one: trusting either trusts the repository."""
    return str(_main_worktree(top.resolve()))


def _main_worktree(top: Path) -> Path:
    """`top`, or for a linked worktree the top level of its main worktree, as git finds it: through the
    worktree's `.git` file and the `commondir` in the main repository's `.git`, which the sandbox keeps
    read-only. A submodule (its common dir is not a `.git`) is its own project."""
    if not (top / ".git").is_file():
        return top
    from goalkeeper.workspace.git import probe  # a git process only for a worktree or a submodule

    found = probe(top, "rev-parse", "--path-format=absolute", "--git-common-dir")
    common = Path(found.stdout.strip())
    return common.parent if found.returncode == 0 and common.name == ".git" and common.is_absolute() else top


def _write(home: Path, projects: dict[str, str]) -> None:
    """Replace the file atomically: a temporary file (0600 from the start) renamed over it, so a crash leaves
    the old list or the new one, and a link planted at its name is replaced, never followed."""
    text = json.dumps({"projects": dict(sorted(projects.items()))}, indent=1) + "\n"
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".trusted-", dir=home)  # mkstemp creates it 0600
    except OSError as error:
        raise ConfigError(f"cannot write the trusted projects in {home}: {error}",
                          f"make {home} a writable directory (or point $GOALKEEPER_HOME elsewhere)") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, trust_path(home))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


# ---------------------------------------------------------------- what an untrusted project may set

_DROPPED = ("model_provider", "model_providers", "notify", "server_url", "model_pricing", "sandbox", "hooks",
            "agents", "mcp_servers")
"""Top-level keys an untrusted project cannot set: where requests, keys and goal data go, what a token costs
(a price of 0 would defeat the USD budget), what the sandbox hides, the commands the harness itself runs
(`[[hooks]]`: a pre_tool or completion hook also judges the model's work), child agents (`[agents]`: more
models at once, each with a shell), and the MCP servers a goal starts (a program the repository names, and a
URL its tools' arguments are sent to)."""

_STRICTNESS = {"on-request": 0, "never": 1, "untrusted": 2}
"""approval_policy from loosest to strictest: `never` denies what `on-request` would ask about; `untrusted`
also asks about everything not known to be read-only."""

def untrusted_view(project: dict[str, Any], user: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """An untrusted project's config with every key dropped that could send data or credentials elsewhere or
    loosen a limit the user's own config (`user`) sets; and the dotted names of what was dropped.

    What only tightens (stricter approval_policy, deny and ask rules) or is harmless (model, windows,
    shell timeouts) is kept.
    """
    kept = {key: value for key, value in project.items() if key not in _DROPPED}
    ignored = [key for key in _DROPPED if key in project]
    chosen = project.get("profile")
    if chosen is not None and chosen in user.get("profiles", {}):
        # The user's own profile may be loose on purpose; a repository does not get to pick it.
        kept.pop("profile")
        ignored.append(f"profile = {json.dumps(chosen)} (a profile of your own config)")
    ignored += _tighten_only(kept, user, "")
    profiles: dict[str, Any] = {}
    for name, table in project.get("profiles", {}).items():
        over = {key: value for key, value in table.items() if key not in _DROPPED}
        shown = name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)  # json.dumps: escapes inert
        ignored += [f"profiles.{shown}.{key}" for key in _DROPPED if key in table]
        # A profile is laid over the top level, so it is measured against the user's same profile, then top level.
        ignored += _tighten_only(over, {**user, **user.get("profiles", {}).get(name, {})}, f"profiles.{shown}.")
        profiles[name] = over
    if "profiles" in project:
        kept["profiles"] = profiles
    return kept, ignored


def _tighten_only(table: dict[str, Any], user: dict[str, Any], prefix: str) -> list[str]:
    """Drop, in place, what in one table (top level or a profile) would loosen `user`'s settings."""
    ignored: list[str] = []
    policy = table.get("approval_policy")
    floor = user.get("approval_policy", "on-request")
    if isinstance(policy, str) and _STRICTNESS.get(policy, 0) < _STRICTNESS.get(floor, 0):
        del table["approval_policy"]
        ignored.append(f"{prefix}approval_policy = {json.dumps(policy)} (looser than {json.dumps(floor)})")
    rules = table.get("rules")
    if isinstance(rules, list):
        # An allow rule overrides the built-in denies (git push) and the approval policy: it only loosens.
        allowed = [rule for rule in rules if isinstance(rule, dict) and rule.get("action") == "allow"]
        table["rules"] = [rule for rule in rules if rule not in allowed]
        ignored += [f"{prefix}rules (allow {json.dumps(rule.get('match', rule.get('tool')))})" for rule in allowed]
    if table.get("restate_before_start") is False:
        del table["restate_before_start"]  # the restatement is a person's check on the goal
        ignored.append(f"{prefix}restate_before_start = false")
    doc_cap = user.get("project_doc_max_bytes", PROJECT_DOC_MAX_BYTES)
    if isinstance(table.get("project_doc_max_bytes"), int) and table["project_doc_max_bytes"] > doc_cap:
        # Every request of a goal carries the instructions: a bigger cap makes each one cost more.
        ignored.append(f"{prefix}project_doc_max_bytes = {table.pop('project_doc_max_bytes')} (above {doc_cap})")
    run = table.get("run")
    user_cap = (user.get("run") or {}).get("wrap_up_cap_tokens", RunSettings().wrap_up_cap_tokens)
    if isinstance(run, dict) and isinstance(run.get("wrap_up_cap_tokens"), int) \
            and run["wrap_up_cap_tokens"] > user_cap:
        # Tokens spent past an exhausted budget: a bigger cap lets the budget be overrun.
        table["run"] = {key: value for key, value in run.items() if key != "wrap_up_cap_tokens"}
        ignored.append(f"{prefix}run.wrap_up_cap_tokens = {run['wrap_up_cap_tokens']} (above {user_cap})")
    return ignored


def untrusted_warning(source: str, top: Path, ignored: list[str]) -> str:
    """The one warning naming every key an untrusted project config set that took no effect."""
    return (f"{source}: this repository is not trusted, so these settings were ignored: {', '.join(ignored)}. "
            f"If you wrote or reviewed them, trust it: gk trust --cwd {top}")
