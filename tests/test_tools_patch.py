"""apply_patch on real files: the Codex grammar, tolerant hunk matching, precise errors, all or nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from goalkeeper.tools.base import ToolContext, ToolResult
from goalkeeper.tools.patch import ApplyPatchTool, PatchError, parse_patch


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    root.mkdir()
    return root.resolve()


def apply(workspace: Path, *body: str) -> ToolResult:
    """Apply a patch made of `body` lines wrapped in Begin/End markers."""
    patch = "\n".join(["*** Begin Patch", *body, "*** End Patch"]) + "\n"
    return apply_text(workspace, patch)


def apply_text(workspace: Path, patch: Any) -> ToolResult:
    return asyncio.run(ApplyPatchTool().call({"patch": patch}, ToolContext(workspace=workspace)))


def write(workspace: Path, name: str, text: str) -> Path:
    path = workspace / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


APP = "def total(items):\n    result = 0\n    for item in items:\n        result += item\n    return result\n"


def test_add_file_creates_it_with_parents(workspace: Path) -> None:
    result = apply(workspace, "*** Add File: pkg/new.py", "+line one", "+", "+line two")

    assert result.ok, result.output
    assert (workspace / "pkg/new.py").read_text() == "line one\n\nline two\n"
    assert result.output == "A pkg/new.py"
    assert result.files_touched == ("pkg/new.py",)


def test_update_replaces_the_hunk_found_by_its_context(workspace: Path) -> None:
    app = write(workspace, "src/app.py", APP)

    result = apply(
        workspace,
        "*** Update File: src/app.py",
        "@@ def total(items):",
        "     for item in items:",
        "-        result += item",
        "+        result += item.price",
        "     return result",
    )

    assert result.ok, result.output
    assert app.read_text() == APP.replace("result += item", "result += item.price")
    assert result.output == "M src/app.py"
    assert result.files_touched == ("src/app.py",)


def test_delete_removes_the_file(workspace: Path) -> None:
    write(workspace, "old.py", "x = 1\n")

    result = apply(workspace, "*** Delete File: old.py")

    assert result.ok, result.output
    assert not (workspace / "old.py").exists()
    assert result.output == "D old.py"


def test_move_renames_and_edits_in_one_step(workspace: Path) -> None:
    write(workspace, "src/app.py", APP)

    result = apply(
        workspace,
        "*** Update File: src/app.py",
        "*** Move to: src/app2.py",
        "@@",
        "-    return result",
        "+    return int(result)",
    )

    assert result.ok, result.output
    assert not (workspace / "src/app.py").exists()
    assert (workspace / "src/app2.py").read_text() == APP.replace("return result", "return int(result)")
    assert result.output == "M src/app2.py (moved from src/app.py)"
    assert set(result.files_touched) == {"src/app.py", "src/app2.py"}


def test_one_patch_adds_updates_and_deletes_across_files(workspace: Path) -> None:
    write(workspace, "a.py", "a = 1\n")
    write(workspace, "b.py", "b = 1\n")

    result = apply(
        workspace,
        "*** Add File: c.py",
        "+c = 1",
        "*** Update File: a.py",
        "@@",
        "-a = 1",
        "+a = 2",
        "*** Delete File: b.py",
    )

    assert result.output == "A c.py\nM a.py\nD b.py"
    assert (workspace / "a.py").read_text() == "a = 2\n"
    assert not (workspace / "b.py").exists()


def test_several_hunks_apply_in_order(workspace: Path) -> None:
    path = write(workspace, "n.txt", "".join(f"{n}\n" for n in range(1, 21)))

    result = apply(
        workspace,
        "*** Update File: n.txt",
        "@@",
        " 2",
        "-3",
        "+three",
        " 4",
        "@@",
        " 17",
        "-18",
        "+eighteen",
        "@@",
        " 20",
        "+21",
    )

    assert result.ok, result.output
    expected = [str(n) for n in range(1, 22)]
    expected[2], expected[17] = "three", "eighteen"
    assert path.read_text() == "\n".join(expected) + "\n"


def test_the_at_at_header_picks_which_of_two_identical_blocks_changes(workspace: Path) -> None:
    text = "def first():\n    return 0\n\ndef second():\n    return 0\n"
    path = write(workspace, "f.py", text)

    result = apply(workspace, "*** Update File: f.py", "@@ def second():", "-    return 0", "+    return 2")

    assert result.ok, result.output
    assert path.read_text() == "def first():\n    return 0\n\ndef second():\n    return 2\n"


def test_nested_headers_narrow_step_by_step(workspace: Path) -> None:
    text = "class A:\n    def run(self):\n        x = 1\nclass B:\n    def run(self):\n        x = 1\n"
    path = write(workspace, "c.py", text)

    result = apply(
        workspace,
        "*** Update File: c.py",
        "@@ class B:",
        "@@     def run(self):",
        "-        x = 1",
        "+        x = 2",
    )

    assert result.ok, result.output
    assert path.read_text() == text[: text.rindex("x = 1")] + "x = 2\n"


def test_a_unified_diff_range_header_is_tolerated(workspace: Path) -> None:
    path = write(workspace, "f.py", "a\nb\nc\n")

    result = apply(workspace, "*** Update File: f.py", "@@ -1,3 +1,3 @@", " a", "-b", "+B", " c")

    assert result.ok, result.output
    assert path.read_text() == "a\nB\nc\n"


def test_the_first_hunk_may_leave_out_its_at_at_line(workspace: Path) -> None:
    path = write(workspace, "f.py", "a\nb\n")

    result = apply(workspace, "*** Update File: f.py", " a", "-b", "+c")

    assert result.ok, result.output
    assert path.read_text() == "a\nc\n"


def test_trailing_whitespace_differences_still_match_and_the_files_context_is_kept(workspace: Path) -> None:
    path = write(workspace, "f.py", "keep   \nold\n")

    result = apply(workspace, "*** Update File: f.py", "@@", " keep", "-old  ", "+new")

    assert result.ok, result.output
    assert path.read_text() == "keep   \nnew\n"


def test_indentation_differences_still_match_as_a_last_resort(workspace: Path) -> None:
    path = write(workspace, "f.py", "if x:\n\tcall()\n")

    result = apply(workspace, "*** Update File: f.py", "@@", " if x:", "-    call()", "+\tcall(1)")

    assert result.ok, result.output
    assert path.read_text() == "if x:\n\tcall(1)\n"


def test_an_exact_match_wins_over_an_earlier_loose_one(workspace: Path) -> None:
    path = write(workspace, "f.py", "  x = 1\nx = 1\n")

    result = apply(workspace, "*** Update File: f.py", "@@", "-x = 1", "+x = 2")

    assert result.ok, result.output
    assert path.read_text() == "  x = 1\nx = 2\n"


def test_end_of_file_marker_prefers_the_last_occurrence(workspace: Path) -> None:
    path = write(workspace, "f.py", "pass\nmiddle\npass\n")

    result = apply(workspace, "*** Update File: f.py", "@@", "-pass", "+done", "*** End of File")

    assert result.ok, result.output
    assert path.read_text() == "pass\nmiddle\ndone\n"


def test_crlf_files_keep_their_line_endings(workspace: Path) -> None:
    path = workspace / "win.txt"
    path.write_bytes(b"one\r\ntwo\r\n")

    result = apply(workspace, "*** Update File: win.txt", "@@", " one", "-two", "+2")

    assert result.ok, result.output
    assert path.read_bytes() == b"one\r\n2\r\n"


def test_a_file_without_a_final_newline_stays_without_one(workspace: Path) -> None:
    path = write(workspace, "f.txt", "a\nb")

    result = apply(workspace, "*** Update File: f.txt", "@@", "-b", "+c")

    assert result.ok, result.output
    assert path.read_text() == "a\nc"


def test_a_blank_line_between_hunks_is_a_separator_not_context(workspace: Path) -> None:
    path = write(workspace, "f.txt", "a\nb\nc\nd\n")

    result = apply(workspace, "*** Update File: f.txt", "@@", "-a", "+A", "", "@@", "-d", "+D", "")

    assert result.ok, result.output
    assert path.read_text() == "A\nb\nc\nD\n"


def test_a_heredoc_wrapper_around_the_patch_is_unwrapped(workspace: Path) -> None:
    patch = "apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: x.txt\n+x\n*** End Patch\nEOF\n"

    result = apply_text(workspace, patch)

    assert result.ok, result.output
    assert (workspace / "x.txt").read_text() == "x\n"


def test_a_bad_second_hunk_leaves_every_file_untouched(workspace: Path) -> None:
    first = write(workspace, "a.py", "a = 1\n")
    second = write(workspace, "b.py", "b = 1\n")

    result = apply(
        workspace,
        "*** Update File: a.py",
        "@@",
        "-a = 1",
        "+a = 2",
        "*** Add File: new.py",
        "+new",
        "*** Update File: b.py",
        "@@",
        "-b = 999",
        "+b = 2",
    )

    assert not result.ok
    assert result.output.startswith("patch not applied, nothing was written: hunk 1 of b.py (patch line 9)")
    assert first.read_text() == "a = 1\n"
    assert second.read_text() == "b = 1\n"
    assert not (workspace / "new.py").exists()


def error_of(result: ToolResult) -> str:
    assert not result.ok
    return result.output.removeprefix("patch not applied, nothing was written: ")


def test_a_line_without_a_prefix_is_named_by_its_patch_line(workspace: Path) -> None:
    write(workspace, "f.py", "a\n")

    result = apply(workspace, "*** Update File: f.py", "@@", " a", "b")

    assert error_of(result).startswith(
        "patch line 5: expected a line starting with ' ', '+' or '-' but got 'b'"
    )


def test_a_hunk_that_does_not_match_shows_the_expected_lines_and_the_nearest_one(workspace: Path) -> None:
    write(workspace, "src/app.py", APP)

    result = apply(
        workspace,
        "*** Update File: src/app.py",
        "@@",
        "-    return 0",
        "+    return 1",
        "@@",
        "-    retrun result",
        "+    return -result",
    )

    message = error_of(result)
    assert message.startswith(
        "hunk 1 of src/app.py (patch line 3): could not find these lines in the file:\n"
    )
    assert "\n        return 0\n" in message
    assert "nearest similar line in the file (line 5): '    return result'" in message


def test_hunks_out_of_file_order_are_explained(workspace: Path) -> None:
    write(workspace, "f.txt", "a\nb\nc\n")

    result = apply(workspace, "*** Update File: f.txt", "@@", "-c", "+C", "@@", "-a", "+A")

    message = error_of(result)
    assert message.startswith("hunk 2 of f.txt (patch line 6): could not find these lines")
    assert "they appear at line 1, above line 4 where this hunk's search began" in message


def test_a_missing_header_line_is_reported(workspace: Path) -> None:
    write(workspace, "f.py", "def total():\n    pass\n")

    result = apply(workspace, "*** Update File: f.py", "@@ def totl():", "-    pass", "+    return 1")

    message = error_of(result)
    assert message.startswith("hunk 1 of f.py (patch line 3): could not find the '@@ def totl():' line")
    assert "nearest similar line in the file (line 1): 'def total():'" in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (["*** Update File: ghost.py", "@@", "-a", "+b"], "Update File: ghost.py does not exist"),
        (["*** Add File: here.py", "+x"], "Add File: here.py already exists"),
        (["*** Delete File: ghost.py"], "Delete File: ghost.py does not exist"),
        (
            ["*** Update File: here.py", "*** Move to: there.py", "@@", "-x", "+y"],
            "Move to: there.py already exists",
        ),
        (["*** Add File: ../out.py", "+x"], "patch line 2: path '../out.py' refused: '..' climbs out"),
        (
            ["*** Add File: here.py/inner.py", "+x"],
            "Add File: cannot create here.py/inner.py: here.py is a file",
        ),
        (
            ["*** Add File: a.py", "x"],
            "patch line 3: expected a line starting with '+' (Add File: a.py) but got 'x'",
        ),
        (["*** Update File: here.py"], "patch line 2: Update File: here.py has no hunks"),
        (
            ["*** Update File: here.py", "@@", " x"],
            "patch line 3: this hunk of here.py has no '+' or '-' lines",
        ),
        (["*** Rename File: here.py"], "patch line 2: expected '*** Add File:', '*** Update File:'"),
        (["*** Add File:", "+x"], "patch line 2: '*** Add File:' needs a path after it"),
        (
            ["*** Update File: here.py", "@@", "-x", "*** End of File", "+y"],
            "patch line 6: lines after '*** End of File' need a new '@@' hunk",
        ),
    ],
)
def test_each_kind_of_mistake_gets_a_precise_message(workspace: Path, body: list[str], expected: str) -> None:
    write(workspace, "here.py", "x\n")
    write(workspace, "there.py", "y\n")

    assert error_of(apply(workspace, *body)).startswith(expected)
    assert (workspace / "here.py").read_text() == "x\n"


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ("", "the patch is empty; it must start with '*** Begin Patch'"),
        (
            "--- a/f.py\n+++ b/f.py\n",
            "patch line 1: the patch must start with '*** Begin Patch', got '--- a/f.py'",
        ),
        ("*** Begin Patch\n*** Add File: a.py\n+x\n", "the patch ends without '*** End Patch'"),
        ("*** Begin Patch\n*** End Patch\nmore\n", "patch line 3: unexpected text after '*** End Patch'"),
    ],
)
def test_a_patch_without_its_envelope_is_refused(workspace: Path, patch: str, expected: str) -> None:
    assert error_of(apply_text(workspace, patch)).startswith(expected)


def test_a_binary_file_is_not_patched(workspace: Path) -> None:
    (workspace / "blob.bin").write_bytes(b"\x00\x01x\n")

    result = apply(workspace, "*** Update File: blob.bin", "@@", "-x", "+y")

    assert error_of(result) == "Update File: blob.bin is a binary file; apply_patch edits text files only"


def test_a_file_can_be_deleted_to_make_room_for_a_directory(workspace: Path) -> None:
    write(workspace, "pkg", "was a module file\n")

    result = apply(workspace, "*** Delete File: pkg", "*** Add File: pkg/__init__.py", "+")

    assert result.ok, result.output
    assert (workspace / "pkg/__init__.py").read_text() == "\n"


def test_a_file_added_earlier_in_the_patch_can_be_updated_later(workspace: Path) -> None:
    result = apply(
        workspace, "*** Add File: n.py", "+a", "+b", "*** Update File: n.py", "@@", " a", "-b", "+c"
    )

    assert result.ok, result.output
    assert (workspace / "n.py").read_text() == "a\nc\n"
    assert result.files_touched == ("n.py",)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({}, "missing required argument 'patch' (a string)"),
        ({"patch": 3}, "argument 'patch' must be a string, got 3 (int)"),
        ({"patch": "x", "input": "y"}, "unknown argument 'input'; apply_patch takes: patch"),
    ],
)
def test_bad_arguments_are_refused(workspace: Path, arguments: dict[str, Any], expected: str) -> None:
    result = asyncio.run(ApplyPatchTool().call(arguments, ToolContext(workspace=workspace)))

    assert not result.ok
    assert result.output == expected


def test_parse_patch_reports_the_structure() -> None:
    operations = parse_patch("*** Begin Patch\n*** Update File: a.py\n@@ def f():\n a\n-b\n+c\n*** End Patch")

    assert len(operations) == 1
    update = operations[0]
    assert update.path == "a.py"
    assert update.patch_line == 2
    with pytest.raises(PatchError):
        parse_patch("*** Begin Patch\n")


def test_the_nearest_line_is_sought_for_the_line_the_file_lacks(workspace: Path) -> None:
    write(workspace, "src/app.py", APP)

    result = apply(
        workspace,
        "*** Update File: src/app.py",
        "@@",
        "     for item in items:",
        "-        result += items",
        "+x",
    )

    assert "nearest similar line in the file (line 4): '        result += item'" in error_of(result)


def test_a_blank_line_after_end_of_file_is_allowed(workspace: Path) -> None:
    path = write(workspace, "f.txt", "a\nb\n")

    result = apply(
        workspace, "*** Update File: f.txt", "@@", "-b", "+B", "*** End of File", "", "*** Add File: g", "+g"
    )

    assert result.ok, result.output
    assert path.read_text() == "a\nB\n"


def test_a_single_line_file_without_a_newline_gains_plain_newlines(workspace: Path) -> None:
    path = write(workspace, "f.txt", "a")

    result = apply(workspace, "*** Update File: f.txt", "@@", " a", "+b")

    assert result.ok, result.output
    assert path.read_bytes() == b"a\nb"


def test_a_path_outside_the_workspace_in_move_to_names_its_patch_line(workspace: Path) -> None:
    write(workspace, "f.txt", "a\n")

    result = apply(workspace, "*** Update File: f.txt", "", "*** Move to: /etc/f.txt", "@@", "-a", "+b")

    assert error_of(result).startswith("patch line 4: path '/etc/f.txt' refused: it is outside the workspace")
    assert (workspace / "f.txt").read_text() == "a\n"
