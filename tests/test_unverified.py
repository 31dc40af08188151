"""A goal with no checks is not silently achieved: `gk goal`, `gk exec`, the TUI and the API refuse it unless it is
asked for as unverified, and its end reads `achieved (unverified)` everywhere (CLI, TUI, dashboard, JSON, webhooks).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from goalkeeper.core.lifecycle import UNVERIFIED_ACHIEVED, status_label
from goalkeeper.errors import ConfigError
from goalkeeper.events import payload_of
from goalkeeper.goals.report import build_report, render_markdown
from goalkeeper.goals.views import summarize
from goalkeeper.run.notify import notice_of
from goalkeeper.server import close_app, create_app, ensure_token
from goalkeeper.server.build import goal_out
from goalkeeper.store import Store
from goalkeeper.tui.commands import parse_goal
from goalkeeper.tui.goals import set_goal as tui_set_goal
from goalkeeper.tui.status import status_text
from scenario import complete, events, gk, new_goal, run, sample_repo, scripted, shell, step, write_script

AUDIT_ONLY = [step("", shell("ls")), step("", complete("described the repo")), step("ok")]


def test_gk_goal_and_gk_exec_refuse_a_goal_with_no_checks(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    script = write_script(tmp_path / "script.json", AUDIT_ONLY)
    for command in ("goal", "exec"):
        refused = gk(command, "Describe the repo", "--model", f"scripted:{script}", "--cwd", str(workspace),
                     home=goalkeeper_home)
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert "no checks" in refused.stderr and "--unverified" in refused.stderr
    shown = gk("status", "--cwd", str(workspace), home=goalkeeper_home)
    assert shown.returncode != 0 and "no goal" in shown.stderr  # nothing was set


def test_gk_exec_unverified_ends_achieved_unverified_in_the_cli_and_the_json(tmp_path: Path,
                                                                             goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    script = write_script(tmp_path / "script.json", AUDIT_ONLY)
    ran = gk("exec", "Describe the repo", "--unverified", "--model", f"scripted:{script}", "--cwd", str(workspace),
             home=goalkeeper_home)
    assert ran.returncode == 0, ran.stderr
    assert f"{UNVERIFIED_ACHIEVED} (audit_accepted)" in ran.stdout
    status = gk("status", "--cwd", str(workspace), home=goalkeeper_home)
    assert UNVERIFIED_ACHIEVED in status.stdout
    report = json.loads(gk("report", "--json", "--cwd", str(workspace), home=goalkeeper_home, check=True).stdout)
    assert report["status"] == "achieved" and report["label"] == UNVERIFIED_ACHIEVED
    assert report["claims"]["confirmed"] == []  # nothing the harness ran backs it
    assert [c["kind"] for c in report["claims"]["unverified"]] == ["completion"]
    markdown = gk("report", "--cwd", str(workspace), home=goalkeeper_home, check=True).stdout
    assert markdown.startswith(f"# Goal report: {UNVERIFIED_ACHIEVED}")


def test_gk_goal_unverified_sets_it(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    set_ = gk("goal", "Describe the repo", "--unverified", "--cwd", str(workspace), home=goalkeeper_home)
    assert set_.returncode == 0, set_.stderr
    assert "unverified" in set_.stdout


def test_the_tui_refuses_it_unless_unverified_is_written(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    script = write_script(tmp_path / "script.json", AUDIT_ONLY)
    (goalkeeper_home / "config.toml").write_text(f'model = "scripted:{script}"\n')
    request = parse_goal("Describe the repo --unverified")
    assert (request.objective, request.checks, request.unverified) == ("Describe the repo", (), True)
    assert parse_goal("Fix it --check t=true").unverified is False
    with Store() as store:
        with pytest.raises(ConfigError) as refused:
            tui_set_goal(store, workspace, None, parse_goal("Describe the repo"), replace=False)
        assert "--unverified" in (refused.value.hint or "")
        assert tui_set_goal(store, workspace, None, request, replace=False).state.status == "pursuing"


def test_the_api_refuses_it_unless_unverified(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    with Store() as store:
        thread = store.create_thread(workspace)
    app = create_app()
    headers = {"Authorization": f"Bearer {ensure_token()[0]}"}

    async def put(body: dict[str, Any]) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gk", headers=headers) as client:
            return await client.put(f"/threads/{thread.thread_id}/goal", json=body)

    try:
        refused = asyncio.run(put({"objective": "Describe the repo"}))
        assert refused.status_code == 422 and "--unverified" in (refused.json()["hint"] or "")
        accepted = asyncio.run(put({"objective": "Describe the repo", "unverified": True}))
        assert accepted.status_code == 200, accepted.text
    finally:
        close_app(app)


def test_achieved_unverified_is_the_label_in_the_tui_dashboard_and_webhooks(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    with Store() as store:
        goal = new_goal(store, workspace, objective="Describe the repo", checks=[])
        result = run(store, goal, workspace, scripted(AUDIT_ONLY))
        record = store.get_goal_by_id(goal.goal_id)
        summary = summarize(store, record)
        dashboard = goal_out(store, record)
        achieved = [e for e in events(store, goal, "status_changed") if payload_of(e.event)["to"] == "achieved"][-1]
        notice = notice_of(store, achieved, None)
        markdown = render_markdown(build_report(store, record))
    assert (result.status, result.reason) == ("achieved", "audit_accepted")
    assert status_text(summary).startswith(f"Goal {UNVERIFIED_ACHIEVED}")
    assert summary.status_line().startswith(f"{UNVERIFIED_ACHIEVED} (audit_accepted)")
    assert dashboard.label == UNVERIFIED_ACHIEVED and dashboard.status == "achieved"
    assert notice.as_json()["label"] == UNVERIFIED_ACHIEVED and notice.as_json()["status"] == "achieved"
    assert notice.as_slack()["text"].startswith(f"Goal {UNVERIFIED_ACHIEVED}:")
    assert "UNVERIFIED" in markdown


def test_a_verified_goal_keeps_its_plain_label() -> None:
    assert status_label("achieved", True) == "achieved"
    assert status_label("unmet", False) == "unmet"
    assert status_label("achieved", False) == UNVERIFIED_ACHIEVED


def test_the_dashboard_badge_says_achieved_unverified() -> None:
    widgets = (Path(__file__).parent.parent / "src" / "goalkeeper" / "server" / "static" / "widgets.js").read_text()
    assert '"achieved (unverified)"' in widgets and "goal.verified === false" in widgets


def test_the_tui_reads_unverified_only_before_the_first_check() -> None:
    """`--unverified` inside a check command is the command's own word, not the flag."""
    from goalkeeper.tui.commands import parse_goal

    assert parse_goal("Describe it --unverified").unverified
    inside = parse_goal("Fix it --check lint=tool --unverified")
    assert not inside.unverified and inside.checks == ("lint=tool --unverified",)
