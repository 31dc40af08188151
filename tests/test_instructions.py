"""Project instructions (issue 18): AGENTS.md files read as Codex reads them, from the goal's base commit, capped,
and carried byte for byte in the system message of every request of the goal.

The loader is driven over real git repositories; the goal tests capture each request at a real local Chat
Completions server (chat_server.py) and drive a real goal; only the model's answers are scripted.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from chat_server import ChatServer, Completion, ToolCallReply
from goalkeeper.cli import console
from goalkeeper.config.load import load_config
from goalkeeper.context.history import Conversation
from goalkeeper.context.instructions import load_instructions
from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.events import CompactedEvent, InstructionFile, InstructionsLoadedEvent, Usage
from goalkeeper.goals import control, service
from goalkeeper.goals.views import summarize
from goalkeeper.models.base import Message
from goalkeeper.models.openai_chat import OpenAIChatModel
from goalkeeper.render.instructions import instruction_lines
from goalkeeper.render.terminal import event_line
from goalkeeper.run.goal_run import Gate
from goalkeeper.run.runner import Runner, RunResult
from goalkeeper.spec.settings import GoalSettings, ModelSettings, RunSettings
from goalkeeper.store import EventRecord, Goal, Store
from helpers import git
from scenario import events

MAX = 32_768


def _commit(repo: Path, files: dict[str, str], message: str = "instructions") -> str:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def _load(repo: Path, home: Path, workdir: str = "", max_bytes: int = MAX,
          commit: str = "HEAD") -> InstructionsLoadedEvent:
    loaded = load_instructions(repo, commit, workdir, home, max_bytes)
    assert loaded is not None
    return loaded


# ---------------------------------------------------------------- which files, in which order


def test_nested_files_load_global_then_root_down_to_the_working_folder(git_repo: Path, goalkeeper_home: Path) -> None:
    (goalkeeper_home / "AGENTS.md").write_text("GLOBAL rule\n")
    _commit(git_repo, {"AGENTS.md": "ROOT rule\n", "pkg/AGENTS.md": "PKG rule\n",
                       "pkg/api/AGENTS.md": "API rule\n", "pkg/api/AGENTS.override.md": "API OVERRIDE rule\n",
                       "other/AGENTS.md": "OTHER rule\n"})
    loaded = _load(git_repo, goalkeeper_home, "pkg/api")
    assert [item.path for item in loaded.files] == [
        "$GOALKEEPER_HOME/AGENTS.md", "AGENTS.md", "pkg/AGENTS.md", "pkg/api/AGENTS.override.md"]
    text = loaded.text
    order = [text.index(rule) for rule in ("GLOBAL rule", "ROOT rule", "PKG rule", "API OVERRIDE rule")]
    assert order == sorted(order)
    assert "later files take precedence" in text
    assert "OTHER rule" not in text and "API rule" not in text  # a folder off the path; the override wins
    assert (loaded.workdir, loaded.commit, loaded.max_bytes) == ("pkg/api", "HEAD", MAX)


def test_claude_md_is_read_where_a_folder_has_no_agents_md(git_repo: Path, goalkeeper_home: Path) -> None:
    _commit(git_repo, {"AGENTS.md": "ROOT agents\n", "CLAUDE.md": "ROOT claude\n", "sub/CLAUDE.md": "SUB claude\n",
                       "sub/deeper/AGENTS.md": "   \n"})  # blank: as if absent
    loaded = _load(git_repo, goalkeeper_home, "sub/deeper")
    assert [item.path for item in loaded.files] == ["AGENTS.md", "sub/CLAUDE.md"]
    assert "ROOT claude" not in loaded.text and "SUB claude" in loaded.text


def test_a_repository_without_instructions_loads_none(git_repo: Path, goalkeeper_home: Path) -> None:
    assert load_instructions(git_repo, "HEAD", "a/b", goalkeeper_home, MAX) is None
    _commit(git_repo, {"AGENTS.md": "rule\n"})
    assert load_instructions(git_repo, "HEAD", "", goalkeeper_home, 0) is None  # project_doc_max_bytes = 0


def test_files_are_read_from_the_commit_never_the_working_tree(git_repo: Path, goalkeeper_home: Path) -> None:
    base = _commit(git_repo, {"AGENTS.md": "COMMITTED rule\n"})
    (git_repo / "AGENTS.md").write_text("UNCOMMITTED rule\n")
    (git_repo / "CLAUDE.md").write_text("UNTRACKED rule\n")
    _commit(git_repo, {"AGENTS.md": "LATER rule\n"}, "later")
    loaded = _load(git_repo, goalkeeper_home, commit=base)
    assert "COMMITTED rule" in loaded.text
    assert "UNCOMMITTED" not in loaded.text and "UNTRACKED" not in loaded.text and "LATER" not in loaded.text


# ---------------------------------------------------------------- the cap


def test_the_cap_cuts_the_text_and_says_so(git_repo: Path, goalkeeper_home: Path) -> None:
    (goalkeeper_home / "AGENTS.md").write_text("g" * 60 + "\n")
    _commit(git_repo, {"AGENTS.md": "é" * 100 + "\n", "sub/AGENTS.md": "NEAR rule\n"})
    loaded = _load(git_repo, goalkeeper_home, "sub", max_bytes=100)
    global_file, root, sub = loaded.files
    assert (global_file.loaded, global_file.cut) == (60, False)
    # 40 bytes were left: the cut ends on a whole character (é is two bytes).
    assert (root.size, root.loaded, root.cut) == (201, 40, True)
    assert (sub.loaded, sub.cut) == (0, True)
    assert "é" * 20 + "\n" in loaded.text and "é" * 21 not in loaded.text and "NEAR rule" not in loaded.text
    assert loaded.text.count("This file is cut") == 2 and "`project_doc_max_bytes`" in loaded.text
    assert instruction_lines([item.model_dump() for item in loaded.files]) == [
        "$GOALKEEPER_HOME/AGENTS.md · 61 bytes", "AGENTS.md · 201 bytes, cut to 40",
        "sub/AGENTS.md · 10 bytes, cut to 0"]


def test_project_doc_max_bytes_is_read_from_config_and_an_untrusted_project_cannot_raise_it(
        git_repo: Path, goalkeeper_home: Path) -> None:
    assert load_config(git_repo).project_doc_max_bytes == 32_768
    (goalkeeper_home / "config.toml").write_text("project_doc_max_bytes = 4096\n")
    _commit(git_repo, {".goalkeeper/config.toml": "project_doc_max_bytes = 1000000\n"})
    config = load_config(git_repo)
    assert config.project_doc_max_bytes == 4096
    assert any("project_doc_max_bytes = 1000000 (above 4096)" in warning for warning in config.warnings)
    _commit(git_repo, {".goalkeeper/config.toml": "project_doc_max_bytes = 1024\n"})
    assert load_config(git_repo).project_doc_max_bytes == 1024  # lowering it is the project's to do


# ---------------------------------------------------------------- hostile files


def test_a_symlinked_agents_md_is_never_followed(git_repo: Path, goalkeeper_home: Path, tmp_path: Path) -> None:
    secret = tmp_path / "outside.md"
    secret.write_text("OUTSIDE secret\n")
    os.symlink("/etc/passwd", git_repo / "AGENTS.md")
    (git_repo / "sub").mkdir()
    os.symlink(secret, git_repo / "sub" / "AGENTS.md")
    os.symlink("../README.md", git_repo / "sub" / "CLAUDE.md")
    (git_repo / "sub" / "AGENTS.override.md").mkdir()  # a folder by that name is no file
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "AGENTS.md").write_text("OUTSIDE folder\n")
    os.symlink(tmp_path / "elsewhere", git_repo / "sub" / "linked")  # a linked folder is never walked into
    _commit(git_repo, {"CLAUDE.md": "REAL rule\n", "sub/AGENTS.override.md/x": "x\n"})
    assert _load(git_repo, goalkeeper_home, "sub/linked").files == _load(git_repo, goalkeeper_home, "sub").files
    loaded = _load(git_repo, goalkeeper_home, "sub")
    assert [(item.path, item.loaded, item.skipped) for item in loaded.files] == [
        ("AGENTS.md", 0, "a symbolic link: not followed"), ("CLAUDE.md", 9, None),
        ("sub/AGENTS.md", 0, "a symbolic link: not followed"), ("sub/CLAUDE.md", 0, "a symbolic link: not followed")]
    assert "REAL rule" in loaded.text
    assert "root:" not in loaded.text and "OUTSIDE" not in loaded.text and "sample" not in loaded.text


def test_odd_files_are_read_safely(git_repo: Path, goalkeeper_home: Path) -> None:
    os.mkfifo(goalkeeper_home / "AGENTS.md")  # would block a plain read
    (git_repo / "AGENTS.md").write_bytes(b"caf\xe9 rule\n\x00")
    (git_repo / "big").mkdir()
    with (git_repo / "big" / "AGENTS.md").open("wb") as handle:
        handle.truncate(1_048_577)
    _commit(git_repo, {"big/CLAUDE.md": "SMALL rule\n"})
    loaded = _load(git_repo, goalkeeper_home, "./big/")
    assert [(item.path, item.skipped) for item in loaded.files] == [
        ("$GOALKEEPER_HOME/AGENTS.md", "not a regular file"), ("AGENTS.md", None),
        ("big/AGENTS.md", "too big to read (over 1,048,576 bytes)"), ("big/CLAUDE.md", None)]
    assert "caf\ufffd rule" in loaded.text and "SMALL rule" in loaded.text


# ---------------------------------------------------------------- in the requests of a goal


def _goal(store: Store, workspace: Path, server: ChatServer, workdir: str = "") -> Goal:
    contract = contract_from_flags("Make the check pass", checks=["never=false"], budget_turns=6)
    model = ModelSettings(provider="custom", wire_api="chat", model="gpt-4.1-mini", base_url=server.base_url)
    settings = GoalSettings(model=model, run=RunSettings(heartbeat_s=0.2, control_poll_s=0.05), workdir=workdir)
    return control.set_goal(store, workspace, contract, settings, replace_existing=True)


def _run(store: Store, goal: Goal, workspace: Path, server: ChatServer, effects: int | None = None) -> RunResult:
    """Run the goal until it stops, or only its first `effects` effects (the baseline's checks, a request)."""
    model = OpenAIChatModel("gpt-4.1-mini", server.base_url, "key")
    runner = Runner(store, store.get_goal_by_id(goal.goal_id), model, workspace)
    runner.goal_run.gate = Gate(effects) if effects is not None else None
    return asyncio.run(runner.run())


def _rewrites_agents_md(body: dict[str, Any]) -> Completion:
    """A model that rewrites AGENTS.md in its first request, then only says it is working."""
    if len(body["messages"]) == 3:
        return Completion(tool_calls=(ToolCallReply("write_file", {"path": "AGENTS.md", "content": "NEW rule\n"}),))
    return Completion(text="Still working.")


def test_the_prefix_is_byte_stable_and_a_changed_file_waits_for_the_next_goal(
        git_repo: Path, goalkeeper_home: Path) -> None:
    workspace = git_repo
    _commit(workspace, {"AGENTS.md": "OLD rule\n", "tests/AGENTS.md": "TESTS rule\n"})
    (goalkeeper_home / "AGENTS.md").write_text("GLOBAL rule\n")
    with ChatServer(reply_fn=_rewrites_agents_md) as server, Store() as store:
        goal = _goal(store, workspace, server, workdir="tests")
        first = _run(store, goal, workspace, server)
        (goalkeeper_home / "AGENTS.md").write_text("GLOBAL rule, changed\n")
        service.resume(store, store.get_goal_by_id(goal.goal_id), wait_s=0)  # a restart: a new runner
        _run(store, goal, workspace, server)
        systems = [body["messages"][0] for body in server.requests]
        summary = summarize(store, store.get_goal_by_id(goal.goal_id))
        loaded = events(store, goal, "instructions_loaded")
        with console.out.capture() as shown:
            console.show_summary(summary)  # what `gk goal` prints

        second = _goal(store, workspace, server)
        server.requests.clear()
        _run(store, second, workspace, server, effects=2)  # its baseline, then its first request
        next_system = server.requests[0]["messages"][0]["content"]
    assert (workspace / "AGENTS.md").read_text() == "NEW rule\n" and first.status == "paused"
    # Every request of the goal, before and after its restart, sent the same system message, byte for byte.
    assert len(systems) >= 4 and all(system == systems[0] for system in systems)
    assert systems[0]["role"] == "system"
    text = systems[0]["content"]
    assert [text.index(rule) for rule in ("GLOBAL rule\n", "OLD rule", "TESTS rule")] == sorted(
        text.index(rule) for rule in ("GLOBAL rule\n", "OLD rule", "TESTS rule"))
    assert "NEW rule" not in text and "changed" not in text
    assert len(loaded) == 1
    assert [item["path"] for item in summary.instructions] == [
        "$GOALKEEPER_HOME/AGENTS.md", "AGENTS.md", "tests/AGENTS.md"]
    assert "instructions: $GOALKEEPER_HOME/AGENTS.md · 12 bytes\n" in shown.get()
    assert "tests/AGENTS.md · 11 bytes" in shown.get()
    assert event_line(loaded[0]) == "  instructions: $GOALKEEPER_HOME/AGENTS.md, AGENTS.md, tests/AGENTS.md"
    # The next goal starts from the commit the first one left: its requests carry the new text.
    assert "NEW rule" in next_system and "OLD rule" not in next_system and "changed" in next_system


def test_a_compaction_and_a_rebuild_keep_the_instructions_in_the_system_message() -> None:
    loaded = InstructionsLoadedEvent(commit="c" * 40, workdir="", max_bytes=MAX, text="# Project instructions\n\nR",
                                     files=[InstructionFile(path="AGENTS.md", size=2, loaded=1)])
    handoff = CompactedEvent(summary="s", handoff="# Context compacted", responses=1, turn=1, request_tokens=10,
                             missing_sections=[], evidence_shown={}, model="harness",
                             usage=Usage(input_tokens=0, cached_input_tokens=0, output_tokens=0, charged_tokens=0))
    records = [EventRecord(1, "thread", "goal", 0.0, loaded), EventRecord(2, "thread", "goal", 0.0, handoff)]
    conversation = Conversation.from_events("SYSTEM", "CONTRACT", records)
    assert conversation.messages()[0] == Message("system", "SYSTEM\n\n# Project instructions\n\nR")
    assert conversation.messages()[1:] == (Message("user", "CONTRACT"), Message("user", "# Context compacted"))
    assert Conversation.from_events("SYSTEM", "CONTRACT", records[1:]).prefix[0] == Message("system", "SYSTEM")
