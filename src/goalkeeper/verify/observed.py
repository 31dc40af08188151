"""The verification surface: what the checks depend on, observed at baseline rather than guessed.

At baseline each check runs once under a tracer (trace.py). Every workspace file it read or ran, every path
it looked for and did not find, and every directory it listed is recorded; the explicit `[verify] pins` and
today's conventions (pins.py) join them. The code under test is read by the checks too, but it is the work
itself: source files the checks merely imported are kept apart (`code`) and changing them is not a surface
change. Without a tracer the surface is inferred from the conventions alone (observed=False).

The rule for a change (`Surface.touches`):
- modified or deleted: a surface file (read or run by the checks and not code under test, pinned, or a test
  or config file by convention). Code under test is a source file the checks only read, and any other file
  they read in the same folder below the root (package data); a fixture or benchmark input lives in a test
  folder, a folder of its own or at the root, and is on the surface;
- added: a path the checks probed and did not find (or one below it) when it lies in a test folder or
  shadows a module found elsewhere — a plain file a check waits for (`test -f DONE.md`) or a module the
  tests could not import yet is the deliverable; a config file by convention at any
  depth (conftest.py, pytest.ini, setup.cfg, tox.ini, pyproject.toml, .coveragerc, Makefile, package.json…);
  a `.pth` or `.pyc` anywhere; or a new entry in a directory the checks listed that is not a regular package
  whose module name shadows the standard library, a test runner, or a module the checks imported from
  outside the workspace (unittest.py, unittest/, pytest.py, _pytest/, sitecustomize.py, json.py…), or an
  `__init__.py` that turns such a directory into a package.
- A new ordinary module (any name that shadows nothing) beside the code under test is honest work, and so is
  a new test module: it is kept, and the per-test evidence and the canary judge what it does.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from goalkeeper.sandbox.globs import first_path_match
from goalkeeper.verify.pins import CONFIG_NAMES, TEST_GLOBS, Pins

if TYPE_CHECKING:  # the tracer's module loads asyncio; reading a goal needs only these names
    from goalkeeper.verify.trace import Accesses, Tracer

Change = Literal["added", "modified", "deleted"]

#: Top-level module names no new file may take in a directory on the import path: the test runners and
#: the hooks Python runs at start-up (the standard library's names are added from sys.stdlib_module_names).
RUNNER_NAMES = frozenset({"pytest", "_pytest", "py", "pluggy", "unittest", "nose", "nose2", "coverage",
                          "hypothesis", "sitecustomize", "usercustomize", "conftest"})

#: Files that configure how tests, builds or checks run, by name, at any depth (fnmatch patterns).
CONFIG_PATTERNS: tuple[str, ...] = (
    *sorted(CONFIG_NAMES), ".pytest.ini", "pyproject.toml", "setup.py", "noxfile.py", "sitecustomize.py",
    "usercustomize.py", "Makefile", "makefile", "GNUmakefile", "*.mk", "package.json", "jest.config.*",
    "vitest.config.*", "vite.config.*", ".mocharc*", "babel.config.*", ".babelrc*", "tsconfig*.json",
    "go.mod", "go.sum", "go.work", "Cargo.toml", "Cargo.lock", "build.rs", "CMakeLists.txt", "meson.build",
    "justfile", "Justfile", "Taskfile.yml", ".nycrc*", "karma.conf.*",
    # Version files that make a shim (pyenv, asdf, nvm) pick another interpreter for the checks.
    ".python-version", ".tool-versions", ".nvmrc", ".node-version", "pyvenv.cfg",
)

#: Conventions for test files and test data beyond pins.TEST_GLOBS (other languages, fixture folders).
EXTRA_TEST_GLOBS: tuple[str, ...] = ("*_test.go", "**/testdata/**", "**/fixtures/**", "**/__fixtures__/**")

#: Extensions of source code: such a file that the checks only read is taken as code under test.
SOURCE_SUFFIXES = frozenset({
    ".py", ".pyi", ".pyx", ".pxd", ".go", ".rs", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".mts", ".cts",
    ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".java", ".kt", ".kts", ".scala", ".rb", ".php", ".swift",
    ".cs", ".fs", ".m", ".mm", ".ex", ".exs", ".erl", ".hs", ".ml", ".lua", ".pl", ".pm", ".r", ".jl", ".dart",
    ".zig", ".nim", ".vue", ".svelte", ".clj", ".groovy",
})

#: Never part of the surface: the harness's own folders, and caches the checks write (bytecode is never
#: reused by the verifier: see the clean room).
IGNORED_PARTS = frozenset({".git", ".goalkeeper", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
                           ".hypothesis", ".tox", ".nox"})

#: Files Python imports: only these can shadow a module.
PYTHON_SUFFIXES = (".py", ".pyc", ".pyd", ".so", ".pth", ".pyw")

#: A folder of installed packages: files in it are environment, never code under test.
ENV_PARTS = frozenset({"site-packages", "dist-packages", "node_modules"})

_PYTHON_LIB = re.compile(r"/(?:site-packages|dist-packages|lib-dynload|lib/python3\.\d+)/([^/]+)")

@dataclass(frozen=True)
class Surface:
    """The files the checks depend on; creating, changing or deleting any of them changes the surface."""

    observed: bool
    """False when inferred from the conventions only (no tracer, or it failed)."""
    paths: frozenset[str]
    """Workspace-relative paths on the surface: files the checks read or ran that are not code under test,
    the pinned files, and the paths they probed and did not find (absent at baseline: see `missing`)."""
    listed_dirs: frozenset[str]
    """Directories the checks listed ("." is the workspace root): new names there are judged."""
    globs: tuple[str, ...] = ()
    """Test conventions and `[verify] pins` globs: existing files matching them are on the surface."""
    missing: frozenset[str] = frozenset()
    """Paths the checks looked for and did not find: creating one (or anything below it) is a change."""
    code: frozenset[str] = frozenset()
    """Source files the checks read that are the code under test: changing them is the work, not tampering."""
    executed: frozenset[str] = frozenset()
    """Workspace files the checks ran (scripts, binaries)."""
    stat_only: frozenset[str] = frozenset()
    """Surface files the checks only stat-ed (a test runner walking a folder): their existence is on the
    surface, their content is not."""
    packages: frozenset[str] = frozenset()
    """Listed directories that are regular Python packages (hold __init__.py): never on the import path
    themselves, so a new module there shadows nothing."""
    shadow_names: frozenset[str] = frozenset()
    """Top-level modules the checks imported from outside the workspace (site-packages, the stdlib)."""
    note: str = ""
    """Why the surface is inferred rather than observed, when it is."""

    def touches(self, path: str, change: Change) -> bool:
        """Whether this change of `path` (workspace-relative, `/`-separated) is a change to the surface."""
        path = os.path.normpath(path).replace(os.sep, "/").removeprefix("./")
        parts = path.split("/")
        if IGNORED_PARTS.intersection(parts[:-1]) - {"__pycache__"}:
            return False  # the harness's own folders and tool caches are never the verification's input
        name = parts[-1]
        if is_config(name) or name.endswith((".pth", ".pyc")):
            return True
        probed = path in self.missing or any("/".join(parts[:end]) in self.missing for end in range(1, len(parts)))
        if probed:
            return self._probe_matters(path, parts)
        if path in self.paths:
            return change != "modified" or path not in self.stat_only
        if change != "added":
            return path not in self.code and first_path_match(_test_globs(self.globs), path) is not None
        return self._shadows(parts)

    def _probe_matters(self, path: str, parts: list[str]) -> bool:
        """Whether creating a path the checks looked for and did not find changes how they run.

        Anything in a test folder or a fixture's place does, and so does a module that would shadow one
        found elsewhere; a plain file a check waits for (`test -f DONE.md`, `test -s notes.txt`) or a module
        the tests could not import yet is the deliverable, and refusing it would forbid the honest goal.
        """
        if first_path_match(_test_globs(self.globs), path) is not None:
            return True
        # An import probe matters when the new module would shadow one found elsewhere (unittest.py); a module
        # the tests import and could not find at baseline is the deliverable (`from newfeature import …`).
        return self._shadows(parts)

    def _shadows(self, parts: list[str]) -> bool:
        """Whether a new Python file puts a shadowing name into a directory the checks import from (a Go
        `types.go` or a `json/` of data shadows nothing)."""
        if not parts[-1].endswith(PYTHON_SUFFIXES):
            return False
        names = self.shadow_names | RUNNER_NAMES | sys.stdlib_module_names
        for depth, entry in enumerate(parts):
            parent = "/".join(parts[:depth]) or "."
            if not self._on_import_path(parent):
                continue
            if entry == "__init__.py" and depth == len(parts) - 1:
                return True
            if entry.split(".", 1)[0] in names:
                return True
        return False

    def _on_import_path(self, directory: str) -> bool:
        if directory in self.packages:
            return False
        if self.observed:
            return directory in self.listed_dirs
        # Inferred: the root, src/, and the folders of the pinned tests may be on the import path.
        return directory in (".", "src") or any(path.rsplit("/", 1)[0] == directory for path in self.paths)

    def to_json(self) -> str:
        """A JSON document that from_json reads back."""
        return json.dumps({"observed": self.observed, "paths": sorted(self.paths),
                           "listed_dirs": sorted(self.listed_dirs), "globs": list(self.globs),
                           "missing": sorted(self.missing), "code": sorted(self.code),
                           "executed": sorted(self.executed), "stat_only": sorted(self.stat_only),
                           "packages": sorted(self.packages),
                           "shadow_names": sorted(self.shadow_names), "note": self.note})

    @classmethod
    def from_json(cls, text: str) -> Surface:
        """The Surface that to_json wrote (older documents lack the optional keys)."""
        data = json.loads(text)
        return cls(observed=bool(data["observed"]), paths=frozenset(data["paths"]),
                   listed_dirs=frozenset(data["listed_dirs"]), globs=tuple(data.get("globs", ())),
                   missing=frozenset(data.get("missing", ())), code=frozenset(data.get("code", ())),
                   executed=frozenset(data.get("executed", ())), stat_only=frozenset(data.get("stat_only", ())),
                   packages=frozenset(data.get("packages", ())),
                   shadow_names=frozenset(data.get("shadow_names", ())), note=str(data.get("note", "")))

    @property
    def provenance(self) -> str:
        """"surface observed" or "surface inferred, not observed" (with why), for reports."""
        return "surface observed" if self.observed else (
            "surface inferred, not observed" + (f" ({self.note})" if self.note else ""))


def _test_globs(globs: tuple[str, ...]) -> tuple[str, ...]:
    return (*TEST_GLOBS, *globs, *EXTRA_TEST_GLOBS)


def is_config(name: str) -> bool:
    """Whether a file name configures how tests, builds or checks run (CONFIG_PATTERNS)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in CONFIG_PATTERNS)


def surface_from_pins(pins: Pins, note: str = "") -> Surface:
    """An inferred surface: the pinned files and the pin globs (observed=False)."""
    return Surface(observed=False, paths=pins.paths, listed_dirs=frozenset(), globs=pins.globs, note=note)


# ---------------------------------------------------------------- from a trace


def observed_surface(accesses: Accesses, root: Path, pins: Pins, shown_at: Path | None = None) -> Surface:
    """The surface from what the traced checks did in `root` (while `root` still holds the baseline tree:
    it tells files from directories, and paths the checks created themselves from real probes).

    `shown_at` is where `root` appeared to the checks (the sandbox may bind it elsewhere); default `root`.
    """
    relative = _relativizer(root, shown_at)
    executed = _inside(relative, accesses.executed)
    read = _inside(relative, accesses.read) | executed
    statted = _inside(relative, accesses.stat) - read
    files = {path for path in read | statted if (root / path).is_file()}
    env = {path for path in files if _in_env(root, path)}
    globs = _test_globs(pins.globs)
    plain = {path for path in files - statted - env - executed - pins.paths
             if not is_config(Path(path).name) and first_path_match(globs, path) is None}
    code = {path for path in plain if Path(path).suffix in SOURCE_SUFFIXES}
    # Package data (a table the library loads) lives beside its code and is the work too; a fixture or a
    # benchmark input lives in a test folder, a folder of its own, or at the root, and stays on the surface.
    code_dirs = {path.rsplit("/", 1)[0] for path in code if "/" in path}
    code |= {path for path in plain if "/" in path and path.rsplit("/", 1)[0] in code_dirs}
    written = _inside(relative, accesses.written)
    missing = {path for path in _inside(relative, accesses.missing)
               if path not in written and _creatable(root, path)}
    listed = {path for path in _inside(relative, accesses.listed, keep_root=True) if (root / path).is_dir()}
    packages = {path for path in listed if f"{path}/__init__.py".removeprefix("./") in read}
    return Surface(observed=True, paths=frozenset((files - code) | pins.paths | missing),
                   listed_dirs=frozenset(listed), globs=pins.globs, missing=frozenset(missing),
                   code=frozenset(code), executed=frozenset(executed),
                   stat_only=frozenset(files & statted - pins.paths), packages=frozenset(packages),
                   shadow_names=frozenset(_imported_names(accesses)))


def traced_surface(tracer: Tracer | None, problem: str | None, root: Path, pins: Pins,
                   shown_at: Path | None = None) -> Surface:
    """The surface a tracer's runs observed in `root`, or the one inferred from `pins` when nothing was
    traced (`problem` says why) or a run left no trace."""
    if tracer is None:
        return surface_from_pins(pins, problem or "not traced")
    accesses, lost = tracer.accesses()
    if lost:
        return surface_from_pins(pins, f"strace left no trace of `{lost[0]}`")
    return observed_surface(accesses, root, pins, shown_at)


def _creatable(root: Path, path: str) -> bool:
    """Whether a probed path is still absent and could be created: not made by the checks themselves, and
    not below a file (`README.rst/pyvenv.cfg`, probed by a runner looking for virtualenvs, ENOTDIR)."""
    if os.path.lexists(root / path):
        return False
    parts = path.split("/")
    return not any((root.joinpath(*parts[:end])).is_file() for end in range(1, len(parts)))


def _relativizer(root: Path, shown_at: Path | None) -> list[str]:
    """The absolute prefixes under which the checks saw `root` (as given and with links resolved)."""
    bases = {os.path.normpath(str(shown_at or root)), os.path.normpath(str(root)), os.path.realpath(root)}
    if shown_at is not None:
        bases.add(os.path.realpath(shown_at))
    return sorted(bases, key=len, reverse=True)


def _inside(bases: list[str], paths: Iterable[str], keep_root: bool = False) -> set[str]:
    """The workspace-relative form of each path inside the workspace, minus the ignored folders."""
    found = set()
    for path in paths:
        for base in bases:
            if path == base and keep_root:
                found.add(".")
            elif path.startswith(base.rstrip("/") + "/"):
                relative = path[len(base.rstrip("/")) + 1:]
                if not IGNORED_PARTS.intersection(relative.split("/")):
                    found.add(relative)
                break
    return found


def _in_env(root: Path, path: str) -> bool:
    """Whether `path` lies in installed packages or a virtualenv (a folder holding pyvenv.cfg)."""
    parts = path.split("/")
    if ENV_PARTS.intersection(parts[:-1]):
        return True
    return any((root.joinpath(*parts[:end]) / "pyvenv.cfg").is_file() for end in range(1, len(parts)))


def _imported_names(accesses: Accesses) -> set[str]:
    """Top-level module names the checks loaded from an installed library or the standard library."""
    names = set()
    for path in accesses.read | accesses.executed:
        match = _PYTHON_LIB.search(path)
        if match is not None and not match.group(1).endswith((".pth", ".dist-info", ".egg-info", ".txt")):
            name = match.group(1).split(".", 1)[0]
            if name.isidentifier() and name not in IGNORED_PARTS:
                names.add(name)
    return names


# ---------------------------------------------------------------- for people


def surface_summary(surface: Surface) -> dict[str, Any]:
    """How many paths the surface holds and the notable ones, as JSON for events, lint and views."""
    configs = sorted(path for path in surface.paths if is_config(path.rsplit("/", 1)[-1]))
    tests = sorted(path for path in surface.paths - surface.missing
                   if first_path_match(_test_globs(surface.globs), path) is not None)
    env = sorted(path for path in surface.paths if ENV_PARTS.intersection(path.split("/")[:-1]))
    plain = surface.paths - surface.missing - set(configs) - set(tests) - set(env) - surface.executed
    inputs = sorted(path for path in plain - surface.stat_only if Path(path).suffix not in SOURCE_SUFFIXES)
    return {"observed": surface.observed, "provenance": surface.provenance, "paths": len(surface.paths),
            "tests": len(tests), "configs": configs, "inputs": inputs, "executed": sorted(surface.executed),
            "missing": sorted(surface.missing), "environment": len(env), "code": len(surface.code),
            "import_dirs": sorted(surface.listed_dirs - surface.packages)}
