"""Exports the README's SVG screenshots of the TUI, each from a real run driven with Textual's Pilot.

The model is the tests' local Chat Completions server scripted with an honest fix (tests/test_tui.py);
the runner, the sandbox, the checks, git and the store are real. Run it with `scripts/screenshots`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from textual.pilot import Pilot  # noqa: E402
from textual.widgets import Static  # noqa: E402

from chat_server import ChatServer, Completion  # noqa: E402
from goalkeeper.cli.demo import prepare_sample  # noqa: E402
from goalkeeper.store import Store  # noqa: E402
from goalkeeper.tui.app import GoalkeeperApp  # noqa: E402
from goalkeeper.tui.screens import ApprovalScreen, RestateScreen, SideOverlay  # noqa: E402
from goalkeeper.tui.transcript import ToolCallView  # noqa: E402
from test_tui import (  # noqa: E402
    ASK_TESTS,
    GOAL,
    FixOverChat,
    screen_is,
    status_of,
    submit,
    text_of,
    until,
    write_config,
)

OUT = Path(__file__).resolve().parent
SIZE = (120, 36)
Scene = Callable[[GoalkeeperApp, Pilot[None]], Awaitable[None]]


class HeldFix(FixOverChat):
    """The honest fix, held before its third answer so a picture of a goal being pursued can be taken."""

    def __init__(self, hold_s: float) -> None:
        super().__init__()
        self.hold_s = hold_s

    def goal_step(self, answered: int) -> Completion:
        step = super().goal_step(answered)
        return replace(step, delay_s=self.hold_s) if answered == 2 else step


async def shoot(name: str, scene: Scene, *, replies: FixOverChat | None = None, restate: bool = False,
                extra: str = "") -> None:
    """Run `scene` on a fresh copy of the sample repo and save the screen as docs/screenshots/NAME.svg."""
    base = Path(tempfile.gettempdir()) / "gk-screenshots"
    shutil.rmtree(base, ignore_errors=True)
    home = base / "home"
    home.mkdir(parents=True)
    os.environ["GOALKEEPER_HOME"] = str(home)
    workspace = prepare_sample(base)
    with ChatServer(reply_fn=replies or FixOverChat()) as server, Store() as store:
        write_config(home, server, restate=restate, extra=extra)
        app = GoalkeeperApp(workspace, store=store, poll_s=0.1)
        async with app.run_test(size=SIZE) as pilot:
            await scene(app, pilot)
            await pilot.pause(0.3)
            app.save_screenshot(filename=f"{name}.svg", path=str(OUT))
            await settle(app, pilot)
    print(f"docs/screenshots/{name}.svg")


async def settle(app: GoalkeeperApp, pilot: Pilot[None]) -> None:
    """Pause a goal still running (its held request is cancelled cleanly) before the window closes."""
    while len(app.screen_stack) > 1:
        await pilot.press("escape")
    if status_of(app).startswith("Pursuing goal"):
        await submit(pilot, "/goal pause")
        await until(pilot, lambda: not status_of(app).startswith("Pursuing goal"), "the pause", timeout=60)


async def pursuing(app: GoalkeeperApp, pilot: Pilot[None]) -> None:
    await submit(pilot, GOAL)
    await until(pilot, lambda: "Percent means 10 for 10%." in text_of(app) and "apply_patch" in text_of(app)
                and len(list(app.query(ToolCallView))) >= 2, "two answers")
    first = next(iter(app.query(ToolCallView)))
    first.collapsed = False  # the failing test run, opened


async def side(app: GoalkeeperApp, pilot: Pilot[None]) -> None:
    await pursuing(app, pilot)
    await submit(pilot, "/side why did the tests fail at first?")
    await until(pilot, screen_is(pilot, SideOverlay), "the overlay")
    overlay = app.screen
    assert isinstance(overlay, SideOverlay)
    await until(pilot, lambda: "not charged" in str(overlay.query_one("#side-footer", Static).content), "the answer")


async def approval(app: GoalkeeperApp, pilot: Pilot[None]) -> None:
    await submit(pilot, GOAL)
    await until(pilot, screen_is(pilot, ApprovalScreen), "the approval prompt")


async def restatement(app: GoalkeeperApp, pilot: Pilot[None]) -> None:
    await submit(pilot, GOAL)
    await until(pilot, screen_is(pilot, RestateScreen), "the restatement")


async def achieved(app: GoalkeeperApp, pilot: Pilot[None]) -> None:
    await submit(pilot, GOAL)
    await until(pilot, lambda: status_of(app).startswith("Goal achieved"), "achieved")
    await submit(pilot, "/status")
    await until(pilot, lambda: "objective  Fix the discount bug" in text_of(app), "the summary")


async def main() -> None:
    await shoot("pursuing", pursuing, replies=HeldFix(60.0))
    await shoot("side", side, replies=HeldFix(60.0))
    await shoot("approval", approval, extra=ASK_TESTS)
    await shoot("restate", restatement, restate=True)
    await shoot("achieved", achieved)


if __name__ == "__main__":
    asyncio.run(main())
