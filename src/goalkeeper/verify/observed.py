"""The verification surface (stand-in: inferred from today's Pins, never observed).

The observed surface (a tracer at baseline) replaces this module; the shape of `Surface` is fixed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Literal

from goalkeeper.sandbox.globs import first_path_match
from goalkeeper.verify.pins import CONFIG_NAMES, Pins

Change = Literal["added", "modified", "deleted"]

#: Top-level module names a new file must not take: the test runners and the standard library.
RUNNER_NAMES = frozenset({"pytest", "_pytest", "unittest", "nose", "nose2", "coverage", "sitecustomize",
                          "usercustomize", "conftest"})


@dataclass(frozen=True)
class Surface:
    """The files the checks depend on; creating, changing or deleting any of them changes the surface."""

    observed: bool
    paths: frozenset[str]
    listed_dirs: frozenset[str]
    globs: tuple[str, ...] = ()

    def touches(self, path: str, change: Change) -> bool:
        """Whether this change of `path` (top-level-relative) is a change to the surface."""
        name = path.rsplit("/", 1)[-1]
        if path in self.paths or name in CONFIG_NAMES:
            return True
        if change != "added":
            return first_path_match(self.globs, path) is not None
        # A new test module is welcome (the per-test evidence and the canary judge it); a shadow is not.
        return _shadows(path)

    def to_json(self) -> str:
        """A JSON document that from_json reads back."""
        return json.dumps({"observed": self.observed, "paths": sorted(self.paths),
                           "listed_dirs": sorted(self.listed_dirs), "globs": list(self.globs)})

    @classmethod
    def from_json(cls, text: str) -> Surface:
        """The Surface that to_json wrote."""
        data = json.loads(text)
        return cls(data["observed"], frozenset(data["paths"]), frozenset(data["listed_dirs"]),
                   tuple(data.get("globs", ())))


def surface_from_pins(pins: Pins) -> Surface:
    """An inferred surface: the pinned files and the pin globs (observed=False)."""
    return Surface(observed=False, paths=pins.paths, listed_dirs=frozenset(), globs=pins.globs)


def _shadows(path: str) -> bool:
    """A new top-level module or package named like a test runner or a standard-library module, or a .pth."""
    parts = path.split("/")
    if parts[-1].endswith((".pth", ".pyc")):
        return True
    first = parts[0]
    module = first.removesuffix(".py") if len(parts) == 1 else first
    if len(parts) == 1 and not first.endswith(".py"):
        return False
    return module in RUNNER_NAMES or module in sys.stdlib_module_names
