"""The real `gk` command in subprocesses: the goal lifecycle, exit codes, and bad input."""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scenario import HONEST_FIX, TESTS, complete, gk, gk_popen, sample_repo, shell, step, write_script


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return sample_repo(tmp_path)


def script(tmp_path: Path, steps: list) -> str:  # type: ignore[type-arg]
    return f"scripted:{write_script(tmp_path / 'script.json', steps)}"


def test_goal_then_run_then_status_log_report(tmp_path: Path, workspace: Path, goalkeeper_home: Path) -> None:
    model = script(tmp_path, HONEST_FIX)
    set_goal = gk("goal", "Fix the discount bug", "--check", f"tests={TESTS}", "--budget-tokens", "50000",
                  "--model", model, "--cwd", str(workspace), home=goalkeeper_home)
    assert set_goal.returncode == 0, set_goal.stderr
    assert "pursuing" in set_goal.stdout
    ran = gk("run", "--cwd", str(workspace), home=goalkeeper_home)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    shown = gk("goal", "--cwd", str(workspace), home=goalkeeper_home).stdout
    assert "achieved" in shown and "1/1 passing" in shown and "/ 50,000" in shown
    status = json.loads(gk("status", "--json", "--cwd", str(workspace), home=goalkeeper_home).stdout)
    assert status["status"] == "achieved" and status["checks_passing"] == 1
    report = json.loads(gk("report", "--json", "--cwd", str(workspace), home=goalkeeper_home).stdout)
    assert report["files_touched"] == ["cart.py"]
    assert "turn 1" in gk("log", "--cwd", str(workspace), home=goalkeeper_home).stdout
    assert str(workspace) in gk("threads", home=goalkeeper_home).stdout


@pytest.mark.parametrize(("steps", "flags", "code"), [
    ([step("Done!", complete())], ["--max-attempts", "1"], 1),
    ([step("", shell("ls")), step("ok"), step("", shell("pwd")), step("fine")], ["--budget-turns", "1"], 2),
    ([step("It works, I promise.")], [], 3),
], ids=["unmet", "budget_limited", "paused_stalled"])
def test_exec_exit_code_tells_the_outcome(tmp_path: Path, workspace: Path, goalkeeper_home: Path,
                                          steps: list, flags: list[str], code: int) -> None:  # type: ignore[type-arg]
    done = gk("exec", "Fix it", "--check", f"tests={TESTS}", *flags, "--model", script(tmp_path, steps),
              "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == code, done.stdout + done.stderr


def test_exec_json_streams_one_event_per_line(tmp_path: Path, workspace: Path, goalkeeper_home: Path) -> None:
    done = gk("exec", "Fix it", "--check", f"tests={TESTS}", "--json", "--model", script(tmp_path, HONEST_FIX),
              "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 0
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1]["kind"] == "status_changed" and events[-1]["payload"]["to"] == "achieved"
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)


def test_replacing_a_goal_needs_confirmation_or_replace(tmp_path: Path, workspace: Path,
                                                       goalkeeper_home: Path) -> None:
    model = script(tmp_path, HONEST_FIX)
    gk("goal", "First", "--unverified", "--model", model, "--cwd", str(workspace), home=goalkeeper_home, check=True)
    refused = gk("goal", "Second", "--unverified", "--model", model, "--cwd", str(workspace), home=goalkeeper_home)
    assert refused.returncode == 4 and "already has a goal" in refused.stderr
    replaced = gk("goal", "Second", "--replace", "--unverified", "--model", model, "--cwd", str(workspace),
                  home=goalkeeper_home)
    assert replaced.returncode == 0 and "Second" in replaced.stdout


def test_resume_with_more_turns_continues_a_budget_limited_goal(tmp_path: Path, workspace: Path,
                                                                goalkeeper_home: Path) -> None:
    steps = [step("", shell("ls")), step("looked"), step("summary"), *HONEST_FIX]
    done = gk("exec", "Fix it", "--check", f"tests={TESTS}", "--budget-turns", "1", "--model", script(tmp_path, steps),
              "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 2
    refused = gk("goal", "resume", "--cwd", str(workspace), home=goalkeeper_home)
    assert refused.returncode == 4 and "raise it first" in refused.stderr
    resumed = gk("goal", "resume", "--add-turns", "5", "--cwd", str(workspace), home=goalkeeper_home)
    assert resumed.returncode == 0 and "pursuing" in resumed.stdout
    assert gk("run", "--cwd", str(workspace), home=goalkeeper_home).returncode == 0


@pytest.mark.slow
def test_ctrl_c_pauses_cleanly(tmp_path: Path, workspace: Path, goalkeeper_home: Path) -> None:
    steps = [step("", shell(f"echo {i} >> notes.txt"), delay_s=0.05) for i in range(300)]
    gk("goal", "Fix it", "--check", f"tests={TESTS}", "--model", script(tmp_path, steps), "--cwd", str(workspace),
       home=goalkeeper_home, check=True)
    runner = gk_popen("run", "--cwd", str(workspace), home=goalkeeper_home)
    deadline = time.monotonic() + 60
    while "turn 1" not in gk("log", "--cwd", str(workspace), home=goalkeeper_home).stdout:
        assert time.monotonic() < deadline, "the run never started"
    runner.send_signal(signal.SIGINT)
    assert runner.wait(timeout=15) == 3
    shown = gk("goal", "--cwd", str(workspace), home=goalkeeper_home).stdout
    assert "paused (interrupted)" in shown


# ---------------------------------------------------------------- bad input: one clear error, nothing lost


def test_missing_goal_file(workspace: Path, goalkeeper_home: Path) -> None:
    done = gk("goal", "--file", "nope.toml", "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 4 and "goal file not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_invalid_goal_file_names_the_key_and_suggests(workspace: Path, goalkeeper_home: Path) -> None:
    (workspace / "goal.toml").write_text('outcome = "x"\n[[checks]]\nname = "t"\nrun = "true"\n[budget]\ntoken = 5\n')
    done = gk("goal", "--file", str(workspace / "goal.toml"), "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 4
    assert "budget.token" in done.stderr and "tokens" in done.stderr


def test_check_command_that_does_not_exist(workspace: Path, goalkeeper_home: Path) -> None:
    done = gk("goal", "Fix it", "--check", "tests=no-such-tool --all", "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 4 and "no-such-tool" in done.stderr


def test_workspace_that_is_not_a_directory(tmp_path: Path, goalkeeper_home: Path) -> None:
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    done = gk("status", "--cwd", str(afile), home=goalkeeper_home)
    assert done.returncode == 4 and "not a directory" in done.stderr


def test_no_provider_configured_says_how(workspace: Path, goalkeeper_home: Path) -> None:
    done = gk("exec", "Fix it", "--check", f"tests={TESTS}", "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 4
    assert "no model provider is configured" in done.stderr and "OPENAI_API_KEY" in done.stderr


def test_corrupt_store_is_refused_and_left_untouched(workspace: Path, goalkeeper_home: Path) -> None:
    db = goalkeeper_home / "state.db"
    db.write_bytes(b"this is not a database" * 100)
    done = gk("status", "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 4 and "corrupt" in done.stderr
    assert db.read_bytes() == b"this is not a database" * 100


def test_locked_store_waits_then_names_the_holder(tmp_path: Path, workspace: Path, goalkeeper_home: Path) -> None:
    gk("goal", "Fix it", "--unverified", "--cwd", str(workspace), home=goalkeeper_home, check=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(goalkeeper_home / 'state.db')!r}, isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        done = gk("goal", "pause", "--cwd", str(workspace), home=goalkeeper_home,
                  env_extra={"GOALKEEPER_BUSY_TIMEOUT_S": "0.5"})
    finally:
        holder.kill()
    assert done.returncode == 4
    assert str(holder.pid) in done.stderr
    with sqlite3.connect(goalkeeper_home / "state.db") as db:
        assert db.execute("select count(*) from goals").fetchone()[0] == 1


def test_a_busy_timeout_that_is_not_a_number_gets_one_clear_error(workspace: Path, goalkeeper_home: Path) -> None:
    done = gk("status", "--cwd", str(workspace), home=goalkeeper_home, env_extra={"GOALKEEPER_BUSY_TIMEOUT_S": "soon"})
    assert done.returncode == 4
    assert "GOALKEEPER_BUSY_TIMEOUT_S='soon' is not a number of seconds" in done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------- providers and config


def test_provider_that_needs_a_key_names_the_variable(workspace: Path, goalkeeper_home: Path) -> None:
    done = gk("goal", "Fix it", "--model-provider", "anthropic", "--cwd", str(workspace), home=goalkeeper_home,
              env_extra={"ANTHROPIC_API_KEY": ""})
    assert done.returncode == 4 and "ANTHROPIC_API_KEY" in done.stderr


def test_usd_budget_on_an_unpriced_model_is_refused_at_goal_start(workspace: Path, goalkeeper_home: Path) -> None:
    done = gk("goal", "Fix it", "--base-url", "http://127.0.0.1:9/v1", "--model", "mystery-7b", "--budget-usd", "5",
              "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 4 and "mystery-7b" in done.stderr and "model_pricing" in done.stderr


def test_project_config_and_profiles_choose_the_model(tmp_path: Path, workspace: Path, goalkeeper_home: Path) -> None:
    honest = write_script(tmp_path / "honest.json", HONEST_FIX)
    liar = write_script(tmp_path / "liar.json", [step("Done!", complete())])
    (workspace / ".goalkeeper").mkdir()
    (workspace / ".goalkeeper" / "config.toml").write_text(
        f'model = "scripted:{liar}"\n[profiles.careful]\nmodel = "scripted:{honest}"\n')
    subprocess.run(["git", "add", "-A"], cwd=workspace, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "config"], cwd=workspace,
                   check=True)
    lied = gk("exec", "Fix it", "--check", f"tests={TESTS}", "--max-attempts", "1", "--cwd", str(workspace),
              home=goalkeeper_home)
    assert lied.returncode == 1, lied.stdout + lied.stderr
    careful = gk("exec", "Fix it", "--check", f"tests={TESTS}", "--profile", "careful", "--replace",
                 "--cwd", str(workspace), home=goalkeeper_home)
    assert careful.returncode == 0, careful.stdout + careful.stderr


def test_config_knobs_and_the_context_window_are_stored_with_the_goal(workspace: Path, goalkeeper_home: Path) -> None:
    (goalkeeper_home / "config.toml").write_text(
        'model = "gpt-5-mini"\nmodel_context_window = 64000\nmodel_auto_compact_token_limit = 40000\n'
        "tool_output_token_limit = 1500\n[run]\nshell_timeout_s = 30\n")
    done = gk("goal", "Fix it", "--check", f"tests={TESTS}", "--cwd", str(workspace), home=goalkeeper_home,
              env_extra={"OPENAI_API_KEY": "sk-test"})
    assert done.returncode == 0, done.stdout + done.stderr
    with sqlite3.connect(goalkeeper_home / "state.db") as db:
        settings = json.loads(db.execute("SELECT settings FROM goals").fetchone()[0])
    assert settings["run"]["tool_output_token_limit"] == 1500 and settings["run"]["shell_timeout_s"] == 30
    assert settings["model"]["context_window"] == 64000 and settings["model"]["auto_compact_token_limit"] == 40000


def test_unknown_config_key_is_refused_with_a_suggestion(workspace: Path, goalkeeper_home: Path) -> None:
    (goalkeeper_home / "config.toml").write_text('modle = "gpt-5"\n')
    done = gk("goal", "Fix it", "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 4 and "modle" in done.stderr and "model" in done.stderr


def test_demo_replay_shows_a_refused_claim_then_an_achieved_fix(goalkeeper_home: Path) -> None:
    done = gk("demo", "--replay", home=goalkeeper_home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "completion refused" in done.stdout and "achieved (checks_passed)" in done.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)  # a 135M model on 2 shared cores: about a minute alone, several under load
def test_demo_without_a_provider_runs_the_bundled_local_model(goalkeeper_home: Path) -> None:
    done = gk("demo", home=goalkeeper_home, timeout=840)
    assert "135M-parameter model" in done.stdout, done.stdout + done.stderr
    assert "baseline: tests FAIL" in done.stdout
    assert done.returncode in (0, 1, 2, 3), done.stdout + done.stderr  # the model may fail; the harness may not


@pytest.mark.slow
def test_local_serve_answers_until_ctrl_c(goalkeeper_home: Path) -> None:
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = gk_popen("local", "serve", "--port", str(port), home=goalkeeper_home)
    output = ""
    try:
        # Wait for the announcement, not just the port: the port answers a moment before the URL is printed.
        deadline = time.monotonic() + 120
        assert server.stdout is not None
        while "135M" not in output:
            assert time.monotonic() < deadline and server.poll() is None, f"the server never announced: {output}"
            ready, _, _ = select.select([server.stdout], [], [], 0.5)
            if ready:  # raw reads: a buffered readline could hold the next line where select cannot see it
                output += os.read(server.stdout.fileno(), 65536).decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as answer:
            assert answer.status == 200
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
        output += server.stdout.read()
    finally:
        server.kill()
    assert f"http://127.0.0.1:{port}/v1" in output and "135M" in output


# ---------------------------------------------------------------- git workspace


def test_a_dirty_tree_is_refused_unless_allowed(tmp_path: Path, workspace: Path, goalkeeper_home: Path) -> None:
    (workspace / "notes.txt").write_text("work in progress\n")
    refused = gk("goal", "Fix it", "--check", f"tests={TESTS}", "--cwd", str(workspace), home=goalkeeper_home)
    assert refused.returncode == 4 and "uncommitted changes" in refused.stderr and "notes.txt" in refused.stderr
    done = gk("exec", "Fix it", "--check", f"tests={TESTS}", "--allow-dirty", "--model", script(tmp_path, HONEST_FIX),
              "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 0, done.stdout + done.stderr
    log = subprocess.run(["git", "log", "--format=%s", "-3"], cwd=workspace, capture_output=True, text=True).stdout
    assert "snapshot of uncommitted changes" in log
    main_files = subprocess.run(["git", "ls-tree", "--name-only", "main"], cwd=workspace, capture_output=True,
                                text=True).stdout
    assert "notes.txt" not in main_files  # the snapshot went to the goal branch only


def test_diff_and_rollback_on_the_goal_branch(tmp_path: Path, workspace: Path, goalkeeper_home: Path) -> None:
    done = gk("exec", "Fix it", "--check", f"tests={TESTS}", "--model", script(tmp_path, HONEST_FIX),
              "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 0
    whole = gk("diff", "--cwd", str(workspace), home=goalkeeper_home).stdout
    assert "percent / 100" in whole
    assert "percent / 100" in gk("diff", "--turn", "1", "--cwd", str(workspace), home=goalkeeper_home).stdout
    back = gk("rollback", "--to", "best", "--cwd", str(workspace), home=goalkeeper_home)
    assert back.returncode == 0, back.stderr
    assert "percent / 100" in (workspace / "cart.py").read_text()  # best = the achieved turn
    missing = gk("rollback", "--to", "7", "--cwd", str(workspace), home=goalkeeper_home)
    assert missing.returncode == 4 and "1" in missing.stderr


def test_resume_refuses_foreign_changes(tmp_path: Path, workspace: Path, goalkeeper_home: Path) -> None:
    steps = [step("", shell("ls")), step("Looked."), step("", shell("pwd")), step("Looked again.")]
    done = gk("exec", "Fix it", "--check", f"tests={TESTS}", "--model", script(tmp_path, steps),
              "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 3  # stalled after two text-only turns; the tree is clean
    (workspace / "cart.py").write_text("# edited by a person while the goal was paused\n")
    gk("goal", "resume", "--cwd", str(workspace), home=goalkeeper_home, check=True)
    refused = gk("run", "--cwd", str(workspace), home=goalkeeper_home)
    assert refused.returncode == 4 and "cart.py" in refused.stderr
    assert (workspace / "cart.py").read_text().startswith("# edited by a person")  # nothing lost
