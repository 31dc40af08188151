"""Loads the Markdown prompts shipped as package data and fills their named `$placeholders`.

Prompts are files so anyone can read, diff and improve them; no prompt text lives in code.
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources
from string import Template


@cache
def _template(name: str) -> Template:
    text = resources.files("goalkeeper.context").joinpath("prompts", f"{name}.md").read_text("utf-8")
    return Template(text)


def render(name: str, **values: object) -> str:
    """Fill prompt `name` (prompts/<name>.md). A missing placeholder is a bug, so it raises KeyError."""
    return _template(name).substitute({key: str(value) for key, value in values.items()}).strip()


def as_data(text: str) -> str:
    """Escape user-provided text so it cannot close the tags that mark it as data."""
    return html.escape(text.strip(), quote=False) or "(none)"
