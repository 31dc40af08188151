"""The read_output tool: paging through a stored full output by the id and offset a cut marker names."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from goalkeeper.context.tokens import EstimatedTokens
from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.events import payload_of
from goalkeeper.goals import control
from goalkeeper.models.base import Usage
from goalkeeper.models.scripted import ScriptStep
from goalkeeper.spec.settings import GoalSettings, ModelSettings, RunSettings
from goalkeeper.store import Store
from goalkeeper.store.store import blob_id_of
from goalkeeper.tools.base import ToolContext, ToolResult
from goalkeeper.tools.read_output import ReadOutputTool
from goalkeeper.tools.replies import cut_to_tokens, text_result
from scenario import TESTS, call, events, run, sample_repo, scripted, shell, step

HEADER = re.compile(r"chars ([\d,]+)–([\d,]+) of ([\d,]+); (?:next: read_output (\{.*\})|end of output)")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "state.db") as opened:
        yield opened


@pytest.fixture
def output() -> str:
    """About 50 KB of build-log-like text, with lines of every length."""
    return "".join(f"[{n:05d}] compiling module_{n % 97} {'.' * (n % 61)} ok\n" for n in range(1_000))


def read(arguments: dict[str, Any], context: ToolContext) -> ToolResult:
    return asyncio.run(ReadOutputTool().call(arguments, context))


def context_over(store: Store, tmp_path: Path, token_limit: int = 1_000) -> ToolContext:
    return ToolContext(tmp_path, output_token_limit=token_limit, counter=EstimatedTokens(),
                       read_blob=store.get_blob)


def page_of(result: ToolResult) -> tuple[str, dict[str, Any] | None]:
    """The page's text, and the next call its header names (None at the end)."""
    header, _, text = result.output.partition("\n")
    match = HEADER.fullmatch(header)
    assert match is not None, header
    return text, json.loads(match.group(4)) if match.group(4) else None


def test_paging_forward_from_the_cut_marker_reassembles_the_output_exactly(store: Store, tmp_path: Path,
                                                                         output: str) -> None:
    assert len(output) > 50_000
    context = context_over(store, tmp_path)
    cut = text_result(output, context)
    assert cut.full_output == output
    store.put_blob(output)
    marker = re.search(r"read_output (\{.*?\}) pages through", cut.output)
    assert marker is not None
    call: dict[str, Any] | None = json.loads(marker.group(1))
    assert call == {"id": blob_id_of(output), "offset": cut.output.index("[... ")}

    pages = [output[: call["offset"]]]  # the head the model was shown
    while call is not None:
        result = read(call, context)
        assert result.ok
        assert context.token_counter().count(result.output) <= 1_000
        text, call = page_of(result)
        pages.append(text)

    assert "".join(pages) == output
    assert len(pages) > 10
    assert all(page.endswith("\n") for page in pages)  # default pages end at a line's end


def test_a_limit_reads_exactly_that_many_chars(store: Store, tmp_path: Path, output: str) -> None:
    blob = store.put_blob(output)

    result = read({"id": blob, "offset": 100, "limit": 250}, context_over(store, tmp_path))

    text, call = page_of(result)
    assert text == output[100:350]
    assert call == {"id": blob, "offset": 350}
    assert result.output.startswith(f"chars 100–350 of {len(output):,}; next: read_output")


def test_a_limit_larger_than_the_token_limit_is_capped(store: Store, tmp_path: Path, output: str) -> None:
    blob = store.put_blob(output)
    context = context_over(store, tmp_path, token_limit=300)

    result = read({"id": blob, "limit": 40_000}, context)

    text, call = page_of(result)
    assert context.token_counter().count(result.output) <= 300
    assert call is not None and output.startswith(text) and call["offset"] == len(text)


def test_the_last_page_says_it_is_the_end(store: Store, tmp_path: Path, output: str) -> None:
    blob = store.put_blob(output)

    result = read({"id": blob, "offset": len(output) - 10}, context_over(store, tmp_path))

    assert result.output == f"chars {len(output) - 10:,}–{len(output):,} of {len(output):,}; end of output\n" \
                            + output[-10:]


def test_an_offset_past_the_end_is_refused_with_the_length(store: Store, tmp_path: Path, output: str) -> None:
    blob = store.put_blob(output)

    result = read({"id": blob, "offset": len(output)}, context_over(store, tmp_path))

    assert not result.ok
    assert f"past the end of output {blob} ({len(output):,} chars)" in result.output
    assert f"below {len(output)}" in result.output


def test_an_unknown_id_is_refused_with_where_ids_come_from(store: Store, tmp_path: Path) -> None:
    result = read({"id": "blob_0123"}, context_over(store, tmp_path))

    assert not result.ok
    assert "no stored output has id 'blob_0123'" in result.output and "cut marker" in result.output


def test_without_a_store_it_says_what_to_do_instead(tmp_path: Path) -> None:
    result = read({"id": "blob_0123"}, ToolContext(tmp_path))

    assert not result.ok
    assert "cannot read stored outputs here" in result.output and "narrowed" in result.output


@pytest.mark.parametrize(("arguments", "expected"), [
    ({}, "missing required argument 'id'"),
    ({"id": 7}, "argument 'id' must be a string"),
    ({"id": "blob_1", "offset": -1}, "argument 'offset' must be at least 0"),
    ({"id": "blob_1", "limit": 0}, "argument 'limit' must be at least 1"),
    ({"id": "blob_1", "page": 2}, "unknown argument 'page'; read_output takes: id, offset, limit"),
])
def test_bad_arguments_are_refused_with_the_argument_named(store: Store, tmp_path: Path,
                                                           arguments: dict[str, Any], expected: str) -> None:
    result = read(arguments, context_over(store, tmp_path))

    assert not result.ok
    assert expected in result.output


# ---------------------------------------------------------------- through the runner


def test_a_cut_shell_output_is_stored_under_the_markers_id_and_read_output_pages_on(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    full = "exit code: 0\n" + "".join(f"{n}\n" for n in range(1, 12_001))  # what `seq 1 12000` gives: ~60 KB
    blob = blob_id_of(full)
    # The first answer reports no input tokens, so the estimate has learnt nothing when the output is cut
    # and the test knows where the cut starts.
    limit = RunSettings().tool_output_token_limit
    head = cut_to_tokens(full, limit, EstimatedTokens())[0]
    offset = head.index("[... ")
    model = scripted([ScriptStep(text="Count.", tool_calls=(shell("seq 1 12000"),), usage=Usage(output_tokens=5)),
                      step("Read on.", call("read_output", id=blob, offset=offset)),
                      step("Seen enough.")])
    with Store() as store:
        contract = contract_from_flags("Fix the discount bug", checks=[f"tests={TESTS}"], budget_turns=1,
                                       no_progress_turns=10)
        settings = GoalSettings(model=ModelSettings(provider="scripted", model="gpt-5", script="inline"),
                                run=RunSettings(heartbeat_s=0.2, control_poll_s=0.05))
        goal = control.set_goal(store, workspace, contract, settings, replace_existing=True)
        run(store, goal, workspace, model)
        results = {payload_of(e.event)["name"]: payload_of(e.event) for e in events(store, goal, "tool_result")}
        stored = store.get_blob(blob)

    shown = results["shell"]["output"]
    assert shown == head and EstimatedTokens().count(shown) <= limit
    assert f'read_output {{"id": "{blob}", "offset": {offset}}} pages through the full output' in shown
    assert results["shell"]["data"]["blob_id"] == blob and stored == full
    page = results["read_output"]
    assert page["ok"] and page["output"].startswith(f"chars {offset:,}–")
    text, call_next = page_of(ToolResult(page["output"]))
    assert full[offset:].startswith(text) and len(text) > 1_000
    assert call_next == {"id": blob, "offset": offset + len(text)}
