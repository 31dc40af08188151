"""Goal templates: a commented, working goal.toml for each common kind of goal (package data, one file each).

Each file teaches the six elements of a strong goal line by line; its first line is `# NAME: what it is for`.
`gk init --template NAME` writes one; tests/test_templates.py lints each on a sample repository it fits.
May import: the other adapters (verify, context, tools, models, workspace, sandbox, contract, config), store,
spec, core, events and errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from goalkeeper.config.toml_problems import did_you_mean
from goalkeeper.errors import ConfigError

#: The templates, in the order `gk init --list` shows them.
TEMPLATE_NAMES: tuple[str, ...] = ("tests-green", "coverage", "perf-metric", "lint-clean", "error-backlog",
                                   "docs-sync", "migration")


@dataclass(frozen=True)
class Template:
    """One template: its name, what it is for, and the goal.toml text."""

    name: str
    summary: str
    """What the template is for: the text after `NAME:` on its first line."""
    text: str


def template(name: str) -> Template:
    """The template called `name`; a ConfigError listing the names (with a did-you-mean) for any other."""
    if name not in TEMPLATE_NAMES:
        raise ConfigError(f"no template named {name!r}{did_you_mean(name, TEMPLATE_NAMES)}",
                          f"choose one of: {', '.join(TEMPLATE_NAMES)} (gk init --list describes them)")
    text = resources.files("goalkeeper.templates").joinpath(f"{name}.toml").read_text(encoding="utf-8")
    summary = text.splitlines()[0].removeprefix("#").strip().removeprefix(f"{name}:").strip()
    return Template(name, summary, text)


def templates() -> list[Template]:
    """Every template, in TEMPLATE_NAMES order."""
    return [template(name) for name in TEMPLATE_NAMES]


def write_template(name: str, path: Path, force: bool = False) -> Template:
    """Write template `name` to `path`; an existing file is overwritten only with `force`."""
    chosen = template(name)
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists", "choose another --output, or pass --force to overwrite it")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory", "pass --output with a file name, e.g. --output goal.toml")
    if not path.parent.is_dir():
        raise ConfigError(f"the folder {path.parent} does not exist", "create it first, or choose another --output")
    path.write_text(chosen.text, encoding="utf-8")
    return chosen
