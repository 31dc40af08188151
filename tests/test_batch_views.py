"""The batch views (`gk batch`) in the HTTP API, the dashboard and the TUI, over batches the real `gk batch` ran.

Every batch here is run by the real command on scripted goals: one script for every goal (write done.txt,
claim completion, stop), and each goal's check decides its end: `a` looks for done.txt (achieved), `b` for a
file no step writes (unmet after one attempt). A delay per step lets the live views be watched moving.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect
from textual.widgets import DataTable, Static

from goalkeeper.goals.batch import BatchRow, EndedRows, batch_rows
from goalkeeper.server import close_app, create_app
from goalkeeper.spec.contract import Contract
from goalkeeper.store import Store
from goalkeeper.store.batches import BatchNotFoundError, Caps, NewGoal, latest_batch, put_batch
from goalkeeper.tui.app import GoalkeeperApp
from goalkeeper.tui.batch import BatchScreen, row_cells
from scenario import call, gk, gk_popen, step, write_script
from test_dashboard import artifacts as artifacts  # fixtures: tests ask for them by name
from test_dashboard import browser as browser
from test_dashboard import gk_serve, open_dashboard
from test_tui import SIZE, in_loop, screen_is, submit, text_of, until

TOKEN = "batch-token"
HOSTILE_FOLDER = '<img src=x onerror="window.pwned=1">goals'
"""The goal files' folder: a file path is shown on the page, and must stay text."""
ENDS = {"a": "achieved", "b": "unmet"}


def goal_files(tmp_path: Path) -> Path:
    folder = tmp_path / HOSTILE_FOLDER
    folder.mkdir()
    (folder / "a.toml").write_text('outcome = "Write done.txt"\n[[checks]]\nname = "done"\nrun = "test -f done.txt"\n')
    (folder / "b.toml").write_text('outcome = "Write other.txt"\n[[checks]]\nname = "other"\n'
                                   'run = "test -f other.txt"\n[iteration]\nmax_attempts = 1\n')
    return folder


def batch_args(tmp_path: Path, repo: Path, delay_s: float) -> list[str]:
    """`gk batch` of both goals, two at once, under a token cap, each step of the script `delay_s` long."""
    script = write_script(tmp_path / "script.json", [
        step("", call("write_file", path="done.txt", content="done\n"), delay_s=delay_s),
        step("", call("update_goal", status="complete", summary="done"), delay_s=delay_s),
        step("Done.", delay_s=delay_s)])
    return ["batch", str(goal_files(tmp_path)), "--cwd", str(repo), "--model", f"scripted:{script}",
            "--parallel", "2", "--cap-tokens", "100000", "--json"]


def run_batch(tmp_path: Path, repo: Path, home: Path) -> str:
    """Run a batch to its end; its id."""
    done = gk(*batch_args(tmp_path, repo, 0.0), home=home, timeout=60)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]  # the worst end: unmet
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert {goal["name"]: goal["status"] for goal in summary["goals"]} == ENDS
    return str(summary["batch_id"])


@contextmanager
def running_batch(tmp_path: Path, repo: Path, home: Path, delay_s: float) -> Iterator[str]:
    """A batch running in another process while the test watches; its id once it is stored."""
    process = gk_popen(*batch_args(tmp_path, repo, delay_s), home=home)
    try:
        yield wait_for(lambda: _latest(home, repo), 30)
        assert process.wait(timeout=60) == 1, process.stdout.read() if process.stdout else ""
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def _latest(home: Path, repo: Path) -> str | None:
    with Store(home / "state.db") as store:
        try:
            return latest_batch(store, str(repo.resolve())).batch_id
        except BatchNotFoundError:
            return None


def wait_for(probe: Callable[[], str | None], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while (found := probe()) is None:
        assert time.monotonic() < deadline, "timed out waiting for the batch"
        time.sleep(0.05)
    return found


def get(path: str) -> httpx.Response:
    app = create_app(token=TOKEN)

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gk",
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            return await client.get(path)

    try:
        return asyncio.run(go())
    finally:
        close_app(app)


# ---------------------------------------------------------------- the API


def test_the_api_lists_batches_and_shows_one_with_its_rows_and_totals(tmp_path: Path, git_repo: Path,
                                                                       goalkeeper_home: Path) -> None:
    batch_id = run_batch(tmp_path, git_repo, goalkeeper_home)
    [listed] = get("/batches").json()
    assert listed["batch_id"] == batch_id and listed["parallel"] == 2
    assert listed["caps"] == {"tokens": 100000, "usd": None, "time_s": None}
    totals = listed["totals"]
    assert (totals["goals"], totals["ended"], totals["counts"]) == (2, 2, {"achieved": 1, "unmet": 1})
    assert totals["tokens"] > 0 and totals["elapsed_s"] > 0

    shown = get(f"/batches/{batch_id}").json()
    assert {key: shown[key] for key in listed} == listed
    with Store() as store:
        rows = batch_rows(store, batch_id)
        threads = {row.name: store.get_goal_by_id(row.goal_id).thread_id for row in rows if row.goal_id}
    assert [(row["name"], row["status"]) for row in shown["rows"]] == list(ENDS.items())
    assert [row["thread_id"] for row in shown["rows"]] == [threads["a"], threads["b"]]
    assert shown["rows"][0]["checks_passing"] == shown["rows"][0]["checks_total"] == 1
    assert sum(row["tokens"] for row in shown["rows"]) == totals["tokens"]
    assert get(f"/threads/{threads['a']}/goal").json()["status"] == "achieved"  # where a row links to

    missing = get("/batches/batch_nope")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no batch batch_nope in the store", "hint": "`GET /batches` lists them"}


def test_a_face_reads_an_ended_goal_again_only_once_its_goal_changes(tmp_path: Path, git_repo: Path,
                                                                     goalkeeper_home: Path) -> None:
    """The rows a live table keeps for ended goals are the same rows while nothing changes; a change of the goal's
    state (a resume would make one) is read at the next call."""
    batch_id = run_batch(tmp_path, git_repo, goalkeeper_home)
    ended: EndedRows = {}
    with Store() as store:
        first = {row.name: row for row in batch_rows(store, batch_id, ended)}
        again = {row.name: row for row in batch_rows(store, batch_id, ended)}
        assert all(again[name] is first[name] for name in ENDS) and set(ended) == set(ENDS)
        goal = store.get_goal_by_id(first["b"].goal_id or "")
        store.commit(goal.goal_id, [], state=replace(goal.state, status="pursuing"))
        after = {row.name: row for row in batch_rows(store, batch_id, ended)}
    assert after["a"] is first["a"] and after["b"].status == "pursuing" and "b" not in ended
    assert batch_rows(Store(), batch_id) == list(after.values())  # the same rows as a face that keeps none


def test_a_goal_not_started_yet_is_waiting_and_has_no_thread(tmp_path: Path, goalkeeper_home: Path) -> None:
    contract = Contract.model_validate({"outcome": "later", "checks": [{"name": "c", "run": "true"}]})
    with Store() as store:
        batch = put_batch(store, str(tmp_path), "0" * 40, [str(tmp_path / "w.toml")], 1, Caps(usd=2.0), None,
                          [NewGoal("w", str(tmp_path / "w.toml"), contract, str(tmp_path / "wt"))])
    shown = get(f"/batches/{batch.batch_id}").json()
    [row] = shown["rows"]
    assert (row["status"], row["thread_id"], row["goal_id"], row["checks_total"]) == ("waiting", None, None, 1)
    assert shown["totals"]["ended"] == 0 and shown["caps"]["usd"] == 2.0


# ---------------------------------------------------------------- the TUI


def table_of(app: GoalkeeperApp) -> dict[str, str]:
    """The batch screen's rows: each goal's status cell."""
    table = app.screen.query_one(DataTable)
    return {str(key.value): str(table.get_cell(key, "status")) for key in table.rows}


def test_the_live_table_of_a_big_batch_fits_the_terminal_and_keeps_its_totals() -> None:
    """A hundred goals on a 30-line terminal: the running goals, the others counted on one line, and the totals
    row last, where a table cut at the screen's bottom would lose it; a batch that fits shows every goal."""
    from io import StringIO

    from rich.console import Console

    from goalkeeper.cli.batch import rows_table
    from goalkeeper.store.batches import Batch

    statuses = ["achieved"] * 40 + ["pursuing"] * 10 + ["waiting"] * 50
    rows = [BatchRow(name=f"g{number:03d}", file="g.toml", worktree="w", goal_id=None, status=status, tokens=10)
            for number, status in enumerate(statuses)]
    batch = Batch("batch_x", "/repo", "0" * 40, ("g.toml",), 10, Caps(), None, 12.0, 0.0)

    def drawn(table_rows: list[BatchRow], fit: int | None) -> list[str]:
        text = StringIO()
        Console(file=text, width=100, color_system=None).print(rows_table(table_rows, batch, fit=fit))
        return text.getvalue().splitlines()

    lines = drawn(rows, fit=30)
    assert len(lines) <= 29
    assert [line.split()[0] for line in lines[1:11]] == [f"g{number:03d}" for number in range(40, 50)]
    assert "90 more" in lines[-2] and "40 achieved, 50 waiting" in lines[-2]
    assert lines[-1].split()[:3] == ["total", "40/100", "ended"] and "1,000" in lines[-1]
    assert len(drawn(rows[:20], fit=30)) == 1 + 20 + 1
    assert len(drawn(rows, fit=None)) == 1 + 100 + 1  # the table printed at the end: every goal


def test_a_crash_message_is_text_in_the_tui_row() -> None:
    row = BatchRow(name="a", file="a.toml", worktree="wt", goal_id=None, status="crashed",
                   error="\x1b[2J[bold red]boom[/] \x07")
    status = row_cells(row)[1]
    assert status.plain.startswith("crashed: ") and "[bold red]boom[/]" in status.plain  # markup stays literal
    assert "\x1b" not in status.plain and "\x07" not in status.plain  # a terminal acts on none of it


@in_loop
async def test_the_tui_batch_view_follows_a_running_batch_and_enter_opens_a_goal(
        tmp_path: Path, git_repo: Path, goalkeeper_home: Path) -> None:
    with Store() as store, running_batch(tmp_path, git_repo, goalkeeper_home, delay_s=0.6) as batch_id:
        app = GoalkeeperApp(git_repo, store=store, poll_s=0.1)
        async with app.run_test(size=SIZE) as pilot:
            await submit(pilot, "/batch")
            await until(pilot, screen_is(pilot, BatchScreen), "the batch view")
            await until(pilot, lambda: set(table_of(app)) == set(ENDS), "a row per goal")
            seen = {status.split()[0] for status in table_of(app).values()}
            await until(pilot, lambda: {name: status.split()[0] for name, status in table_of(app).items()} == ENDS,
                        "every goal at its end", timeout=30)
            assert seen & {"waiting", "pursuing"}, "the view opened while the batch ran"
            totals = str(app.screen.query_one("#batch-totals", Static).content)
            assert "2/2 ended" in totals and "/ 100K tok" in totals

            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, BatchScreen), "back to the transcript")
            assert app.thread_id is None

            await submit(pilot, f"/batch {batch_id}")
            await until(pilot, screen_is(pilot, BatchScreen), "the batch view again")
            await until(pilot, lambda: len(table_of(app)) == 2, "its rows")
            await pilot.press("enter")  # the cursor is on the first row: goal `a`
            await until(pilot, lambda: not isinstance(app.screen, BatchScreen), "the goal's thread")
            await until(pilot, lambda: "goal set: Write done.txt" in text_of(app), "a's history")
            [row] = [row for row in batch_rows(store, batch_id) if row.name == "a"]
            assert row.goal_id is not None
            assert app.thread_id == store.get_goal_by_id(row.goal_id).thread_id
            assert app.workspace == Path(row.worktree)

            await submit(pilot, "/batch nope")
            await until(pilot, lambda: "no batch nope in the store" in text_of(app), "the error")
            assert "/batch with no id shows this repository's latest batch" in text_of(app)


# ---------------------------------------------------------------- the dashboard


@pytest.mark.slow
def test_the_dashboard_batch_view_sees_rows_reach_their_end_and_links_each_goal(
        tmp_path: Path, git_repo: Path, goalkeeper_home: Path, browser: Browser, artifacts: Path) -> None:
    with gk_serve(goalkeeper_home) as served, running_batch(tmp_path, git_repo, goalkeeper_home, 1.0) as batch_id:
        page = open_dashboard(browser, served)
        page.get_by_role("link", name="Batches").click()
        page.get_by_role("link", name=batch_id).click()
        rows = page.locator("#batch-rows tr[data-name]")
        expect(rows).to_have_count(2)
        # Opened while the batch runs (each goal takes 3 s of model time at least): the rows move without a reload.
        assert page.locator('#batch-rows tr:is([data-status="waiting"], [data-status="pursuing"])').count() >= 1
        page.screenshot(path=artifacts / "batch-running.png")
        for name, status in ENDS.items():
            expect(page.locator(f'tr[data-name="{name}"]')).to_have_attribute("data-status", status, timeout=30_000)
        expect(page.locator("#batch-totals .ended")).to_have_text("2 / 2 ended")
        page.screenshot(path=artifacts / "batch-ended.png")
        expect(page.locator("#batch-totals .tokens")).to_contain_text("/ 100,000")
        expect(page.locator('tr[data-name="a"] progress')).to_have_attribute("aria-valuenow", "1")
        expect(page.locator('tr[data-name="a"] .objective div')).to_contain_text(HOSTILE_FOLDER)  # text, not markup
        assert page.locator("#view img").count() == 0 and page.evaluate("window.pwned") is None
        page.locator('tr[data-name="a"]').get_by_role("link", name="a").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Write done.txt")
        page.go_back()
        expect(page.locator('tr[data-name="b"]')).to_have_attribute("data-status", "unmet")
        page.get_by_role("link", name="← all batches").click()
        expect(page.locator(f'tr[data-batch="{batch_id}"]')).to_contain_text("1 achieved · 1 unmet")
        page.screenshot(path=artifacts / "batches.png")
