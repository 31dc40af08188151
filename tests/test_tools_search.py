"""The search tool on a real tree: the Python fallback always, ripgrep too where it is installed."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from goalkeeper.tools.base import ToolContext, ToolResult
from goalkeeper.tools.search import SearchTool

NO_RIPGREP = {"PATH": "/nonexistent"}
"""An environment whose PATH has no `rg`, so the Python fallback runs even where ripgrep is installed."""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = (tmp_path / "workspace").resolve()
    files = {
        "src/app.py": "def total(items):\n    return sum(items)\n",
        "src/util.py": "def helper():\n    return total([1])\n",
        "tests/test_app.py": "from app import total\n",
        "README.md": "Call total() to add.\n",
        ".git/config": "total = 1\n",
        ".venv/lib/site.py": "total = 1\n",
        "node_modules/pkg/index.js": "total = 1\n",
        "src/__pycache__/app.cpython-311.pyc": "total = 1\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "src/blob.bin").write_bytes(b"total\x00\x01\x02")
    return root


def search(workspace: Path, arguments: dict[str, Any], env: dict[str, str] | None = NO_RIPGREP) -> ToolResult:
    return asyncio.run(SearchTool().call(arguments, ToolContext(workspace=workspace, env=env)))


def test_matches_are_listed_as_path_line_text_in_path_order(workspace: Path) -> None:
    result = search(workspace, {"pattern": r"total\("})

    assert result.ok
    assert result.output.splitlines() == [
        "README.md:1:Call total() to add.",
        "src/app.py:1:def total(items):",
        "src/util.py:2:    return total([1])",
    ]
    assert result.facts == {"matches": 3}


def test_tool_dirs_and_binary_files_are_skipped(workspace: Path) -> None:
    output = search(workspace, {"pattern": "total"}).output

    for skipped in (".git", ".venv", "node_modules", "__pycache__", "blob.bin"):
        assert skipped not in output
    assert "tests/test_app.py:1:from app import total" in output


def test_path_narrows_the_search_to_a_directory_or_a_file(workspace: Path) -> None:
    in_src = search(workspace, {"pattern": "total", "path": "src"}).output.splitlines()
    in_file = search(workspace, {"pattern": "total", "path": "src/util.py"}).output.splitlines()

    assert in_src == ["src/app.py:1:def total(items):", "src/util.py:2:    return total([1])"]
    assert in_file == ["src/util.py:2:    return total([1])"]


def test_a_skipped_directory_named_as_the_path_is_searched(workspace: Path) -> None:
    result = search(workspace, {"pattern": "total", "path": ".venv"})

    assert result.output == ".venv/lib/site.py:1:total = 1"


def test_no_match_is_ok_and_says_so(workspace: Path) -> None:
    result = search(workspace, {"pattern": "nowhere_to_be_found", "path": "src"})

    assert result.ok
    assert result.output == "no matches for 'nowhere_to_be_found' in src"


def test_a_bad_regex_is_a_clear_tool_error(workspace: Path) -> None:
    result = search(workspace, {"pattern": "total(("})

    assert not result.ok
    assert result.output.startswith("pattern 'total((' is not a valid regular expression: missing )")


def test_matches_beyond_the_cap_are_counted(workspace: Path) -> None:
    (workspace / "many.txt").write_text("hit\n" * 250)

    result = search(workspace, {"pattern": "^hit$", "path": "many.txt"})

    lines = result.output.splitlines()
    assert len(lines) == 201
    assert lines[-1] == "[200 of 250 matches shown; narrow the pattern or the path]"
    assert result.facts == {"matches": 250}


def test_long_matching_lines_are_cut(workspace: Path) -> None:
    (workspace / "min.js").write_text("total" + "x" * 1000 + "\n")

    output = search(workspace, {"pattern": "total", "path": "min.js"}).output

    assert output.endswith("x... [705 more chars]")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({}, "missing required argument 'pattern' (a string)"),
        ({"pattern": ""}, "argument 'pattern' is empty; give a regular expression"),
        ({"pattern": "x", "path": 1}, "argument 'path' must be a string, got 1 (int)"),
        ({"pattern": "x", "glob": "*.py"}, "unknown argument 'glob'; search takes: pattern, path"),
        (
            {"pattern": "x", "path": "nope"},
            "no such path: nope; leave out 'path' to search the whole workspace",
        ),
        ({"pattern": "x", "path": "../"}, "path '../' refused: '..' climbs out of the workspace"),
    ],
)
def test_bad_arguments_are_refused(workspace: Path, arguments: dict[str, Any], expected: str) -> None:
    result = search(workspace, arguments)

    assert not result.ok
    assert result.output.startswith(expected)


def test_a_symlink_out_of_the_workspace_is_not_followed(workspace: Path) -> None:
    outside = workspace.parent / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("total = 'secret'\n")
    (workspace / "link").symlink_to(outside)

    assert "secret" not in search(workspace, {"pattern": "total"}).output
    assert not search(workspace, {"pattern": "total", "path": "link"}).ok


@pytest.mark.skipif(shutil.which("rg") is None, reason="ripgrep is not installed")
def test_ripgrep_and_the_python_fallback_print_the_same(workspace: Path) -> None:
    (workspace / "many.txt").write_text("total\n" * 250)
    environment = dict(os.environ)

    for arguments in ({"pattern": "total"}, {"pattern": r"total\(", "path": "src"}, {"pattern": "zzz"}):
        assert search(workspace, arguments, env=environment).output == search(workspace, arguments).output


@pytest.mark.skipif(shutil.which("rg") is None, reason="ripgrep is not installed")
def test_ripgrep_reports_a_bad_regex_as_a_tool_error(workspace: Path) -> None:
    result = search(workspace, {"pattern": "total(("}, env=dict(os.environ))

    assert not result.ok
    assert result.output.startswith("rg could not search for 'total(('")
