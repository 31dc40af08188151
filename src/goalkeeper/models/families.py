"""Looking a model up by name in a table keyed by model families (context windows).

Pure: no I/O. A dated variant sizes like its family. Prices match exact names only (models/pricing.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

Value = TypeVar("Value")


def family_entry(model: str, table: Mapping[str, Value]) -> Value | None:
    """`table[model]`, else the entry of the longest name `model` extends with `-…`; None when neither.

    Dated variants match their family (gpt-4.1-2025-04-14 → gpt-4.1; claude-sonnet-4-5-20250929 →
    claude-sonnet-4-5), and gpt-4.1-mini-… prefers gpt-4.1-mini over gpt-4.1.
    """
    if model in table:
        return table[model]
    family = max((name for name in table if model.startswith(name + "-")), key=len, default=None)
    return table[family] if family is not None else None
