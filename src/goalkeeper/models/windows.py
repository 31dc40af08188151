"""How many tokens a model's request may hold: the built-in table (context_windows.toml) and overrides.

Resolved once, when the goal is set, and stored with the goal's model settings (`context_window`).
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from importlib import resources

from goalkeeper.errors import ConfigError
from goalkeeper.models.families import family_entry


@functools.cache
def builtin_context_windows() -> Mapping[str, int]:
    """The table shipped in context_windows.toml (read once per process)."""
    text = resources.files("goalkeeper.models").joinpath("context_windows.toml").read_text(encoding="utf-8")
    try:
        table = tomllib.loads(text)["context_window"]
    except (tomllib.TOMLDecodeError, KeyError) as error:
        # Package data, not user input: this only happens to a broken installation.
        raise ConfigError(f"the built-in context_windows.toml is malformed: {error}", "reinstall goalkeeper") from None
    bad = [name for name, tokens in table.items() if not isinstance(tokens, int) or tokens <= 0]
    if bad:
        raise ConfigError(f"the built-in context_windows.toml has a bad window for {bad[0]}", "reinstall goalkeeper")
    return dict(table)


def context_window_of(model: str, overrides: Mapping[str, int] | None = None) -> int | None:
    """The context window of `model` in tokens, by exact name or else the longest family it extends with
    `-…` (a window estimate, so a family is close enough; prices are exact); None when unknown. `overrides`
    are laid over the built-in table, entry by entry."""
    return family_entry(model, {**builtin_context_windows(), **(overrides or {})})
