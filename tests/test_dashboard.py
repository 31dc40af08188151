"""The dashboard in a real browser: Playwright drives Debian's Chromium against a real `gk serve`.

A real `gk run` works on the sample repo in another process; its model is the local test server
(tests/chat_server.py), answering slowly enough that the goals table can be watched moving. The test pauses
the goal from its page, sees the runner stop, resumes it, runs it again and sees it achieved. Screenshots go
to tmp_path/artifacts, and to $GK_ARTIFACTS as well when that is set.
"""

from __future__ import annotations

import mimetypes
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from chat_server import ChatServer, Completion, ToolCallReply
from goalkeeper.store import Store
from scenario import FIX_PATCH, TESTS, gk, gk_popen, new_goal, sample_repo

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
"""Without the background-networking flags Chromium keeps dialling Google on this closed network."""

OBJECTIVE = "Fix the discount bug so the tests pass, then record it in DONE.md"
PRICE = 'python -c "import cart; print(cart.apply_discount(200, 10))"'


@dataclass
class Agent:
    """The model behind the local test server: fix the bug, ask for completion (the harness finds DONE.md
    missing), then keep working one slow shell call at a time until the test says `finish`."""

    delay_s: float = 0.35
    finish: threading.Event = field(default_factory=threading.Event)
    requests: int = 0
    finishing_from: int | None = None

    def __call__(self, body: dict[str, Any]) -> Completion:
        number, self.requests = self.requests, self.requests + 1
        opening = [
            Completion("Run the tests first.", (call("shell", command=TESTS),)),
            Completion("The percent is used as a fraction.", (call("apply_patch", patch=FIX_PATCH),)),
            Completion("", (call("shell", command=TESTS),
                            call("checkpoint", done="apply_discount divides the percent by 100",
                                 verified="python -m unittest passes", remaining="nothing",
                                 next="request completion"))),
            Completion("", (call("update_goal", status="complete", summary="apply_discount divides by 100"),)),
        ]
        if number < len(opening):
            return slow(opening[number], self.delay_s)
        if not self.finish.is_set():
            return slow(Completion(f"Tidying, step {number}.",
                                   (call("shell", command=f"echo step {number} >> work.log"),)), self.delay_s)
        if self.finishing_from is None:
            self.finishing_from = number
        closing = [
            Completion("The harness wants DONE.md.", (call("shell", command="echo fixed > DONE.md"),)),
            Completion("", (call("checkpoint", done="wrote DONE.md", verified="all three checks pass",
                                 remaining="nothing", next="request completion"),)),
            Completion("", (call("update_goal", status="complete", summary="fixed and recorded"),)),
            Completion("Done."),
        ]
        return slow(closing[min(number - self.finishing_from, len(closing) - 1)], self.delay_s)


def call(name: str, **arguments: Any) -> ToolCallReply:
    return ToolCallReply(name, arguments)


def slow(completion: Completion, delay_s: float) -> Completion:
    return Completion(completion.text, completion.tool_calls, delay_s=delay_s)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Served:
    url: str
    token: str


@contextmanager
def gk_serve(home: Path) -> Iterator[Served]:
    """A real `gk serve` on a free port, against the store in `home`; its token from the token file."""
    port = free_port()
    env = {**os.environ, "GOALKEEPER_HOME": str(home)}
    server = subprocess.Popen([sys.executable, "-m", "goalkeeper", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        token_file = home / "server-token"
        deadline = time.monotonic() + 30
        # The port listens a moment before the token is written: wait for both.
        while not (listening(port) and token_file.is_file() and token_file.read_text().strip()):
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                output = server.stdout.read() if server.stdout else ""
                raise AssertionError(f"gk serve did not start (exit {server.poll()}):\n{output}")
            time.sleep(0.05)
        yield Served(f"http://127.0.0.1:{port}", token_file.read_text().strip())
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless (Playwright never downloads a browser here)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Iterator[Path]:
    """Where screenshots go; copied to $GK_ARTIFACTS (when set) even if the test fails."""
    folder = tmp_path / "artifacts"
    folder.mkdir()
    yield folder
    keep = os.environ.get("GK_ARTIFACTS")
    if keep:
        shutil.copytree(folder, Path(keep), dirs_exist_ok=True)


def open_dashboard(browser: Browser, served: Served, token: str | None = None) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(served.url + "/")
    page.get_by_label("Server token").fill(token or served.token)
    page.get_by_role("button", name="Open dashboard").click()
    return page


def set_goal(workspace: Path, home: Path, server: ChatServer) -> None:
    done = gk("goal", OBJECTIVE, "--check", f"tests={TESTS}", "--check", "done=test -f DONE.md",
              "--metric", f"price={PRICE}", "--regex", r"price=(-?[0-9.]+)", "--target", "price>=180",
              "--budget-tokens", "400000", "--base-url", server.base_url, "--model", "test-model", "--force",
              "--cwd", str(workspace), home=home)
    assert done.returncode == 0, done.stdout + done.stderr


def goal_status(home: Path) -> str:
    with Store(home / "state.db") as store:
        [thread] = store.list_threads()
        goal = store.get_goal(thread.thread_id)
        assert goal is not None
        return str(goal.state.status)


@pytest.mark.slow
def test_dashboard_follows_a_goal_live_pauses_it_and_sees_it_achieved(
        tmp_path: Path, goalkeeper_home: Path, browser: Browser, artifacts: Path) -> None:
    workspace = sample_repo(tmp_path)
    agent = Agent()
    with ChatServer(reply_fn=agent) as model, gk_serve(goalkeeper_home) as served:
        set_goal(workspace, goalkeeper_home, model)
        page = open_dashboard(browser, served)
        row = page.locator("tr[data-goal]")
        expect(row).to_have_count(1)
        expect(row.locator(".status [data-status]")).to_have_text("pursuing")
        expect(row.locator(".status .not-running")).to_contain_text(f"not running: gk run --cwd {workspace}")
        tokens, checks = row.locator("td.tokens"), row.get_by_role("progressbar")
        expect(checks).to_have_attribute("aria-valuenow", "0")
        before = tokens.inner_text()

        runner = gk_popen("run", "--cwd", str(workspace), home=goalkeeper_home)
        try:
            # Live over SSE: nothing reloads the page, yet the tokens and the checks bar move.
            expect(tokens).not_to_have_text(before, timeout=30_000)
            expect(checks).to_have_attribute("aria-valuenow", "2", timeout=30_000)
            expect(row.locator("td.checkpoint")).to_contain_text("apply_discount divides the percent by 100")
            expect(row.locator(".not-running")).to_have_count(0)  # a runner holds it now
            page.screenshot(path=artifacts / "goals-live.png")

            row.get_by_role("link").click()
            expect(page.get_by_role("heading", level=1)).to_have_text(OBJECTIVE)
            page.get_by_role("button", name="Pause").click()
            expect(page.locator("#goal-summary [data-status]")).to_have_text("paused", timeout=15_000)
            assert runner.wait(timeout=15) == 3, "the runner should stop at its next boundary, exit code 3 (paused)"
        finally:
            runner.kill()
        assert goal_status(goalkeeper_home) == "paused"
        page.screenshot(path=artifacts / "goal-paused.png", full_page=True)

        agent.finish.set()
        page.get_by_role("button", name="Resume").click()
        expect(page.locator("#goal-summary [data-status]")).to_have_text("pursuing")
        expect(page.locator("#goal-summary .not-running")).to_contain_text("gk run --cwd")
        expect(page.get_by_role("status").filter(has_text="resume")).to_contain_text("applied")
        rerun = gk_popen("run", "--cwd", str(workspace), home=goalkeeper_home)
        try:
            assert rerun.wait(timeout=60) == 0, rerun.stdout.read() if rerun.stdout else ""
        finally:
            rerun.kill()
        expect(page.locator("#goal-summary [data-status]")).to_have_text("achieved", timeout=15_000)
        expect(page.get_by_role("progressbar").first).to_have_attribute("aria-valuenow", "3")
        expect(page.locator("#diff .diff-add").first).to_be_visible()
        expect(page.locator("#report h2").first).to_be_visible()
        expect(page.locator("#evidence svg.sparkline")).to_have_count(1)
        page.screenshot(path=artifacts / "goal-achieved.png")
        page.screenshot(path=artifacts / "goal-achieved-full.png", full_page=True)
        page.goto(served.url + "/#/")
        expect(page.locator("tr[data-goal] .status")).to_have_text("achieved")
        page.screenshot(path=artifacts / "goals-achieved.png")
    assert goal_status(goalkeeper_home) == "achieved"


HOSTILE = '<img src=x onerror="window.pwned=1">Fix <b>the</b> bug & ship'


@pytest.mark.slow
def test_a_refused_token_is_asked_again_api_text_stays_text_and_clear_asks_first(
        tmp_path: Path, goalkeeper_home: Path, browser: Browser, artifacts: Path) -> None:
    workspace = sample_repo(tmp_path)
    with Store(goalkeeper_home / "state.db") as store:
        new_goal(store, workspace, objective=HOSTILE, budget_tokens=1000)
    with gk_serve(goalkeeper_home) as served:
        page = open_dashboard(browser, served, token="not-the-token")
        expect(page.get_by_role("alert")).to_contain_text("refused")
        page.get_by_label("Server token").fill(served.token)
        page.get_by_role("button", name="Open dashboard").click()

        link = page.locator("tr[data-goal] td.objective a")
        expect(link).to_have_text(HOSTILE)  # shown as text, never parsed as markup
        assert page.locator("tr[data-goal] img").count() == 0
        assert page.evaluate("window.pwned") is None
        expect(page.locator("tr[data-goal] td.tokens")).to_have_text("0 / 1,000")

        link.click()
        page.get_by_label("tokens", exact=True).fill("500")
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page.locator("#goal-tokens")).to_have_text("0 / 1,500")
        page.reload()  # the token survives a reload: it is in sessionStorage
        expect(page.locator("#goal-tokens")).to_have_text("0 / 1,500")

        page.once("dialog", lambda dialog: dialog.dismiss())
        page.get_by_role("button", name="Clear").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(HOSTILE)  # dismissed: nothing cleared
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Clear").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("No goal")
        expect(page.get_by_role("button", name="Pause")).to_be_hidden()
        page.screenshot(path=artifacts / "goal-cleared.png")
    with Store(goalkeeper_home / "state.db") as store:
        [thread] = store.list_threads()
        assert store.get_goal(thread.thread_id) is None


def test_dashboard_files_ship_in_the_package_and_load_nothing_from_outside() -> None:
    static = resources.files("goalkeeper.server").joinpath("static")
    names = {entry.name for entry in static.iterdir()}
    assert {"index.html", "app.js", "app.css"} <= names
    for name in sorted(names):
        text = static.joinpath(name).read_text(encoding="utf-8")
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", text), f"{name} loads something from outside"
        assert "@import" not in text and "url(http" not in text, name
        for imported in re.findall(r"from \"\./([\w.]+)\"", text):
            assert imported in names, f"{name} imports ./{imported}, which is not shipped"
    index = static.joinpath("index.html").read_text(encoding="utf-8")
    assert '<script type="module" src="/static/app.js">' in index
    assert mimetypes.guess_type("app.js")[0] in ("text/javascript", "application/javascript")
