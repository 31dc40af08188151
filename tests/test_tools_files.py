"""read_file and write_file on real files, and the workspace fence every file tool shares."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from goalkeeper.tools.base import ToolContext, ToolResult
from goalkeeper.tools.files import ReadFileTool, WriteFileTool
from goalkeeper.tools.paths import PathRefused, relative, resolve_in_workspace


def call(tool: type[ReadFileTool | WriteFileTool], path: str, context: ToolContext) -> ToolResult:
    """Call either file tool on `path` (write_file with some content)."""
    arguments = {"path": path} if tool is ReadFileTool else {"path": path, "content": "x"}
    return asyncio.run(tool().call(arguments, context))


def read(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    return asyncio.run(ReadFileTool().call(arguments, context))


def write(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    return asyncio.run(WriteFileTool().call(arguments, context))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    root.mkdir()
    return root.resolve()


@pytest.fixture
def context(workspace: Path) -> ToolContext:
    return ToolContext(workspace=workspace)


def test_reading_a_file_numbers_every_line(workspace: Path, context: ToolContext) -> None:
    (workspace / "app.py").write_text("one\ntwo\r\nthree")

    result = read({"path": "app.py"}, context)

    assert result.ok
    assert result.output == "    1\tone\n    2\ttwo\n    3\tthree\n"


def test_offset_and_limit_pick_a_window_of_lines_and_say_how_to_read_on(
    workspace: Path, context: ToolContext
) -> None:
    (workspace / "app.py").write_text("".join(f"line {n}\n" for n in range(1, 11)))

    result = read({"path": "app.py", "offset": 3, "limit": 2}, context)

    assert result.output == "    3\tline 3\n    4\tline 4\n[lines 3-4 of 10; read more with offset=5]\n"


def test_reading_to_the_end_from_an_offset_says_which_lines(workspace: Path, context: ToolContext) -> None:
    (workspace / "app.py").write_text("a\nb\nc\n")

    result = read({"path": "app.py", "offset": 2}, context)

    assert result.output == "    2\tb\n    3\tc\n[lines 2-3 of 3]\n"


def test_a_long_file_is_cut_at_the_token_limit_with_the_next_offset(workspace: Path) -> None:
    (workspace / "big.txt").write_text("".join(f"row {n}\n" for n in range(1, 1001)))
    context = ToolContext(workspace=workspace, output_token_limit=80)

    result = read({"path": "big.txt"}, context)

    shown = result.output.splitlines()
    assert shown[0] == "    1\trow 1"
    assert context.token_counter().count(result.output) <= 80
    last = int(shown[-2].split("\t")[0])
    assert shown[-1] == f"[lines 1-{last} of 1000; read more with offset={last + 1}]"


def test_a_very_long_line_is_cut(workspace: Path, context: ToolContext) -> None:
    (workspace / "min.js").write_text("x" * 5000 + "\n")

    result = read({"path": "min.js"}, context)

    assert result.output.endswith("x... [3000 more chars on this line]\n")


def test_an_empty_file_says_it_is_empty(workspace: Path, context: ToolContext) -> None:
    (workspace / "empty.txt").write_text("")

    assert read({"path": "empty.txt"}, context).output == "(empty.txt is empty)"


def test_offset_past_the_end_is_refused(workspace: Path, context: ToolContext) -> None:
    (workspace / "app.py").write_text("a\nb\n")

    result = read({"path": "app.py", "offset": 9}, context)

    assert not result.ok
    assert result.output == "offset 9 is past the end of app.py (2 lines)"


def test_a_missing_file_is_named_and_search_suggested(context: ToolContext) -> None:
    result = read({"path": "src/nope.py"}, context)

    assert not result.ok
    assert "no such file: src/nope.py" in result.output
    assert "`search`" in result.output


def test_a_directory_is_not_read(workspace: Path, context: ToolContext) -> None:
    (workspace / "src").mkdir()

    result = read({"path": "src"}, context)

    assert not result.ok
    assert "src is a directory" in result.output


def test_a_binary_file_is_refused_politely(workspace: Path, context: ToolContext) -> None:
    (workspace / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")

    result = read({"path": "logo.png"}, context)

    assert not result.ok
    assert result.output == "logo.png is a binary file (16 bytes); read_file shows text files only"


def test_write_creates_parent_directories_and_reports_bytes(workspace: Path, context: ToolContext) -> None:
    result = write({"path": "src/pkg/new.py", "content": "print('héllo')\n"}, context)

    assert result.ok
    assert (workspace / "src/pkg/new.py").read_text() == "print('héllo')\n"
    assert result.output == "created src/pkg/new.py (16 bytes)"
    assert result.facts == {"bytes_written": 16}
    assert result.files_touched == ("src/pkg/new.py",)


def test_overwriting_keeps_the_file_mode_and_leaves_no_temp_file(
    workspace: Path, context: ToolContext
) -> None:
    script = workspace / "run.sh"
    script.write_text("old\n")
    script.chmod(0o755)

    result = write({"path": "run.sh", "content": "new\n"}, context)

    assert result.output == "overwrote run.sh (4 bytes)"
    assert script.read_text() == "new\n"
    assert script.stat().st_mode & 0o777 == 0o755
    assert [path.name for path in workspace.iterdir()] == ["run.sh"]


def test_writing_through_a_file_in_the_way_is_refused(workspace: Path, context: ToolContext) -> None:
    (workspace / "src").write_text("a file, not a directory\n")

    result = write({"path": "src/app.py", "content": "x"}, context)

    assert not result.ok
    assert result.output == "cannot create src/app.py: src is a file"


def test_writing_onto_a_directory_is_refused(workspace: Path, context: ToolContext) -> None:
    (workspace / "src").mkdir()

    result = write({"path": "src", "content": "x"}, context)

    assert not result.ok
    assert "src is a directory" in result.output


@pytest.mark.parametrize("tool", [ReadFileTool, WriteFileTool])
def test_dot_dot_out_of_the_workspace_is_refused(
    tool: type[ReadFileTool | WriteFileTool], workspace: Path, context: ToolContext
) -> None:
    (workspace.parent / "secret.txt").write_text("secret\n")

    result = call(tool, "../secret.txt", context)

    assert not result.ok
    assert result.output.startswith("path '../secret.txt' refused: '..' climbs out of the workspace")
    assert (workspace.parent / "secret.txt").read_text() == "secret\n"


@pytest.mark.parametrize("tool", [ReadFileTool, WriteFileTool])
def test_an_absolute_path_outside_is_refused(
    tool: type[ReadFileTool | WriteFileTool], workspace: Path, context: ToolContext
) -> None:
    outside = workspace.parent / "elsewhere.txt"
    outside.write_text("keep\n")

    result = call(tool, str(outside), context)

    assert not result.ok
    assert "is outside the workspace" in result.output
    assert outside.read_text() == "keep\n"


@pytest.mark.parametrize("tool", [ReadFileTool, WriteFileTool])
def test_a_symlink_pointing_out_of_the_workspace_is_refused(
    tool: type[ReadFileTool | WriteFileTool], workspace: Path, context: ToolContext
) -> None:
    outside = workspace.parent / "outside"
    outside.mkdir()
    (outside / "data.txt").write_text("keep\n")
    (workspace / "link").symlink_to(outside)

    result = call(tool, "link/data.txt", context)

    assert not result.ok
    assert "leads through a symlink to" in result.output
    assert (outside / "data.txt").read_text() == "keep\n"


def test_an_absolute_path_inside_the_workspace_is_allowed(workspace: Path, context: ToolContext) -> None:
    (workspace / "a.txt").write_text("hi\n")

    assert read({"path": str(workspace / "a.txt")}, context).output == "    1\thi\n"


def test_a_symlink_inside_the_workspace_is_followed(workspace: Path) -> None:
    (workspace / "real.txt").write_text("hi\n")
    (workspace / "alias.txt").symlink_to(workspace / "real.txt")

    assert resolve_in_workspace(workspace, "alias.txt") == workspace / "real.txt"
    assert relative(workspace, workspace / "real.txt") == "real.txt"
    assert relative(workspace, workspace) == "."


def test_a_symlink_loop_is_refused_not_raised(workspace: Path) -> None:
    (workspace / "a").symlink_to(workspace / "b")
    (workspace / "b").symlink_to(workspace / "a")

    with pytest.raises(PathRefused, match="'a/x' refused"):
        resolve_in_workspace(workspace, "a/x")


def test_an_empty_path_is_refused(workspace: Path) -> None:
    with pytest.raises(PathRefused, match="the path is empty"):
        resolve_in_workspace(workspace, " ")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({}, "missing required argument 'path' (a string)"),
        ({"path": ["a"]}, "argument 'path' must be a string, got ['a'] (list)"),
        ({"path": "a", "offset": 0}, "argument 'offset' must be at least 1, got 0"),
        ({"path": "a", "limit": "ten"}, "argument 'limit' must be an integer, got 'ten' (str)"),
        ({"path": "a", "lines": 3}, "unknown argument 'lines'; read_file takes: path, offset, limit"),
    ],
)
def test_read_file_bad_arguments_are_refused(
    context: ToolContext, arguments: dict[str, Any], expected: str
) -> None:
    result = read(arguments, context)

    assert not result.ok
    assert result.output == expected


def test_write_file_needs_content(context: ToolContext) -> None:
    result = write({"path": "a.txt"}, context)

    assert not result.ok
    assert result.output == "missing required argument 'content' (a string)"
    assert not os.path.exists(context.workspace / "a.txt")
