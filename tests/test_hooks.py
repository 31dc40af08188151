"""Lifecycle hooks (`[[hooks]]`): a pre_tool hook vetoes a call and the model reads why, a completion hook refuses a
completion whose checks pass, every hook gets its event as JSON on stdin and runs confined and bounded like the
shell tool, every run is a `hook_ran` event in `gk log` and the report, and bad config is one clear error.

The goals are real (git, bash, bwrap, SQLite) with the scripted model and a check that is `true`.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from pathlib import Path

import pytest

from goalkeeper.config.load import load_config
from goalkeeper.config.schema import HookTable
from goalkeeper.config.trust import trust
from goalkeeper.errors import ConfigError
from goalkeeper.events import AttemptCountedEvent, HookRanEvent, MessageEvent, ToolResultEvent
from goalkeeper.goals.report import build_report, render_markdown
from goalkeeper.render.terminal import event_line
from goalkeeper.run.hooks import HookRun, matches, run_hook
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.store import Goal, Store
from helpers import git
from scenario import complete, events, new_goal, run, sample_repo, scripted, shell, step

PASSING = ["t=true"]
"""A check that passes: only a hook can refuse the completion."""


def configure(home: Path, text: str) -> None:
    """The user's config.toml (trusted, like everything in $GOALKEEPER_HOME)."""
    (home / "config.toml").write_text(text)


def hook_runs(store: Store, goal: Goal) -> list[HookRanEvent]:
    return [record.event for record in events(store, goal, "hook_ran") if isinstance(record.event, HookRanEvent)]


# ---------------------------------------------------------------- pre_tool, post_tool and the queued events


def test_a_pre_tool_veto_keeps_the_call_from_running_and_the_model_reads_why(
        tmp_path: Path, goalkeeper_home: Path) -> None:
    configure(goalkeeper_home, """
[[hooks]]
event = "pre_tool"
matcher = "shell|apply_*"
command = 'if grep -q "rm -rf"; then echo "no rm -rf here: delete files one by one" >&2; exit 2; fi'
""")
    workspace = sample_repo(tmp_path)
    model = scripted([step("", shell("touch vetoed.txt && rm -rf build")), step("", complete()), step("Done.")])
    with Store() as store:
        goal = new_goal(store, workspace, checks=PASSING)
        result = run(store, goal, workspace, model)
        [vetoed] = hook_runs(store, goal)  # update_goal is not matched: only the shell call ran the hook
        [shell_result, _] = [r.event for r in events(store, goal, "tool_result")
                             if isinstance(r.event, ToolResultEvent)]
    assert result.status == "achieved"
    assert not (workspace / "vetoed.txt").exists()  # the call never ran
    assert (vetoed.event, vetoed.tool, vetoed.exit_code, vetoed.vetoed) == ("pre_tool", "shell", 2, True)
    assert not shell_result.ok and "no rm -rf here: delete files one by one" in shell_result.output
    [answer] = [m for m in model.requests[1].messages if m.role == "tool"]
    assert "refused by a pre_tool hook" in answer.content and "delete files one by one" in answer.content


def test_post_tool_post_turn_and_status_change_hooks_each_read_their_event_as_json(
        tmp_path: Path, goalkeeper_home: Path) -> None:
    configure(goalkeeper_home, """
[[hooks]]
event = "post_tool"
matcher = "shell"
command = "cat"

[[hooks]]
event = "post_turn"
command = "cat"

[[hooks]]
event = "status_change"
command = "cat"
""")
    workspace = sample_repo(tmp_path)
    model = scripted([step("", shell("echo hello from the tool")), step("", complete("said hello")), step("Done.")])
    with Store() as store:
        goal = new_goal(store, workspace, checks=PASSING)
        assert run(store, goal, workspace, model).status == "achieved"
        runs = hook_runs(store, goal)
    read = {(ran.event, index): json.loads(ran.output_tail) for index, ran in enumerate(runs)}
    [after_tool] = [event for (name, _), event in read.items() if name == "post_tool"]
    assert after_tool["goal_id"] == goal.goal_id and after_tool["thread_id"] == goal.thread_id
    assert after_tool["tool"]["name"] == "shell"
    assert after_tool["tool"]["arguments"] == {"command": "echo hello from the tool"}
    assert after_tool["result"]["ok"] and "hello from the tool" in after_tool["result"]["output"]
    [turn_ended] = [event for (name, _), event in read.items() if name == "post_turn"]
    assert turn_ended["turn_ended"]["signal"]["summary"] == "said hello"
    [achieved] = [event for (name, _), event in read.items() if name == "status_change"]
    assert (achieved["status_changed"]["from"], achieved["status_changed"]["to"]) == ("pursuing", "achieved")
    assert all(not ran.vetoed and ran.exit_code == 0 for ran in runs)


# ---------------------------------------------------------------- completion


COMPLETION_HOOK = """
[[hooks]]
event = "completion"
command = 'cat > /dev/null; test -f CHANGELOG.md || { echo "add a CHANGELOG.md entry first" >&2; exit 2; }'
"""


def test_a_completion_hook_refuses_a_completion_whose_checks_pass_like_a_failing_check(
        tmp_path: Path, goalkeeper_home: Path) -> None:
    configure(goalkeeper_home, COMPLETION_HOOK)
    workspace = sample_repo(tmp_path)
    model = scripted([step("", complete("first claim")),
                      step("", shell("echo '- fixed the discount' > CHANGELOG.md"), complete("with the entry")),
                      step("Done.")])
    with Store() as store:
        goal = new_goal(store, workspace, checks=PASSING)
        result = run(store, goal, workspace, model)
        [refused, accepted] = hook_runs(store, goal)
        [attempt] = [r.event for r in events(store, goal, "attempt_counted")
                     if isinstance(r.event, AttemptCountedEvent)]
        feedback = [r.event for r in events(store, goal, "message")
                    if isinstance(r.event, MessageEvent) and r.event.turn_kind == "audit_feedback"]
        report = build_report(store, goal)
    assert result.status == "achieved"
    assert (refused.event, refused.vetoed, accepted.vetoed) == ("completion", True, False)
    assert attempt.failing and attempt.attempts == {attempt.failing[0]: 1}  # one attempt, counted to the hook
    assert len(feedback) == 1 and "add a CHANGELOG.md entry first" in feedback[0].content
    [claim] = report["claims"]["refused"]
    assert claim["reasons"] == [f"{attempt.failing[0]}: exit 2"]
    assert [hook["vetoed"] for hook in report["hooks"]] == [True, False]
    assert "## Hooks" in render_markdown(report)


def test_a_completion_hook_that_always_vetoes_ends_the_goal_unmet_at_max_attempts(
        tmp_path: Path, goalkeeper_home: Path) -> None:
    configure(goalkeeper_home, COMPLETION_HOOK)
    workspace = sample_repo(tmp_path)
    with Store() as store:
        goal = new_goal(store, workspace, checks=PASSING, max_attempts=1)
        result = run(store, goal, workspace, scripted([step("", complete()), step("Done.")]))
        [refused] = hook_runs(store, goal)
    assert (result.status, result.reason) == ("unmet", "max_attempts")
    assert refused.vetoed


# ---------------------------------------------------------------- one hook run: confined and bounded


def policy(workspace: Path) -> SandboxPolicy:
    return SandboxPolicy("workspace-write", workspace.resolve())


def hook(command: str, timeout_s: float = 10.0, event: str = "pre_tool") -> HookTable:
    return HookTable.model_validate({"event": event, "command": command, "timeout_s": timeout_s})


def ran(command: str, workspace: Path, timeout_s: float = 10.0) -> HookRun:
    return asyncio.run(run_hook(hook(command, timeout_s), {"event": "pre_tool"}, policy(workspace), workspace,
                                dict(os.environ)))


def test_a_hook_that_hangs_is_killed_at_its_timeout_with_its_whole_process_group(git_repo: Path) -> None:
    mark = f"300.{secrets.randbelow(10**6)}"  # an argument no other process has
    hung = ran(f"sleep {mark} & sleep {mark}; exit 2", git_repo, timeout_s=0.5)
    assert hung.timed_out and hung.exit_code == 124 and hung.duration_s < 5
    assert not hung.exited_2  # it never reached its exit 2: a timeout is no veto
    # The sandbox's pid namespace dies with the killed group: the kernel reaps what is left of it at once.
    deadline = time.monotonic() + 2.0
    while (alive := _running(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive == []


def _running(mark: str) -> list[Path]:
    return [p for p in Path("/proc").iterdir() if p.name.isdigit() and mark in _cmdline(p)]


def _cmdline(process: Path) -> str:
    try:
        return (process / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_a_hook_cannot_write_outside_the_sandboxs_writable_paths(git_repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    done = ran(f"echo x > {outside}/escaped; echo x > .git/escaped; echo x > inside.txt", git_repo)
    assert not (outside / "escaped").exists() and not (git_repo / ".git" / "escaped").exists()
    assert (git_repo / "inside.txt").read_text() == "x\n"
    assert done.finished and "Read-only file system" in done.stderr


def test_only_the_commands_own_exit_2_vetoes_and_its_reason_is_stderr_else_stdout(git_repo: Path) -> None:
    assert ran("echo out; echo why >&2; exit 2", git_repo).reason == "why"
    assert ran("echo only stdout; exit 2", git_repo).reason == "only stdout"
    assert not ran("echo 'unterminated", git_repo).exited_2  # bash's syntax error is its own exit 2
    assert not ran("exit 1", git_repo).exited_2


def test_what_the_model_wrote_reaches_a_hook_as_data_never_as_shell(git_repo: Path) -> None:
    hostile = {"command": "x'\n$(touch by-expansion)\nGOALKEEPER_EVENT_0000\ntouch by-heredoc-end\n`touch by-tick`"}
    event = {"event": "pre_tool", "tool": {"name": "shell", "arguments": hostile}}
    done = asyncio.run(run_hook(hook("cat"), event, policy(git_repo), git_repo, dict(os.environ)))
    assert json.loads(done.stdout) == event
    assert not any(git_repo.glob("by-*"))


def test_a_matcher_is_tool_name_globs_joined_by_a_bar() -> None:
    matcher = HookTable(event="pre_tool", command="true", matcher="shell|apply_*")
    assert matches(matcher, "shell") and matches(matcher, "apply_patch") and not matches(matcher, "write_file")
    assert matches(HookTable(event="post_tool", command="true"), "anything")


def test_a_hook_run_is_a_line_in_gk_log() -> None:
    from goalkeeper.store import EventRecord

    vetoed = HookRanEvent(event="pre_tool", command="./guard.sh", exit_code=2, duration_s=0.1,
                          output_tail="no rm -rf here", vetoed=True, tool="shell")
    line = event_line(EventRecord(1, "t", "g", 0.0, vetoed))
    assert line is not None and "pre_tool on shell `./guard.sh`" in line and "VETOED" in line
    assert "no rm -rf here" in line


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(("table", "said"), [
    ('event = "pre-tool"\ncommand = "x"', 'hooks.0.event: must be one of "pre_tool"'),
    ('event = "pre_tool"\ncommand = "  "', "hooks.0.command: is blank"),
    ('event = "pre_tool"\ncommand = "x"\ntimeout_s = 0', "hooks.0.timeout_s: must be greater than 0"),
    ('event = "status_change"\ncommand = "x"\nmatcher = "shell"', "hooks.0.matcher: applies only to pre_tool"),
    ('event = "pre_tool"', "hooks.0.command: is required"),
    ('event = "pre_tool"\ncommand = "x"\nmatch = "shell"', "hooks.0.match: unknown key (did you mean `matcher`?)"),
])
def test_a_bad_hook_is_one_error_naming_its_key(goalkeeper_home: Path, table: str, said: str) -> None:
    configure(goalkeeper_home, f"[[hooks]]\n{table}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(None)
    assert said in raised.value.message and len(raised.value.message.splitlines()) == 1


def test_a_projects_hooks_run_only_once_the_project_is_trusted(git_repo: Path, goalkeeper_home: Path) -> None:
    (git_repo / ".goalkeeper").mkdir()
    (git_repo / ".goalkeeper" / "config.toml").write_text('[[hooks]]\nevent = "completion"\ncommand = "./review"\n')
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "project hooks")
    configure(goalkeeper_home, '[[hooks]]\nevent = "post_turn"\ncommand = "./mine"\n')
    untrusted = load_config(git_repo)
    assert [h.command for h in untrusted.hooks] == ["./mine"]
    assert any("hooks" in warning for warning in untrusted.warnings)
    trust(goalkeeper_home, git_repo)
    assert [h.command for h in load_config(git_repo).hooks] == ["./mine", "./review"]  # the user's first

