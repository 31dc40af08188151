"""The TUI's batch view (`/batch [ID]`): a table of a batch's goals, read from the store twice a second.

The rows are goals.batch's `batch_rows`, the one read model `gk batch`'s live table and the dashboard show
too. Enter on a goal's row answers its goal id (the app switches to that goal's thread); Esc answers None.
The store is read off the event loop, so a batch of a hundred goals does not stall the window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Static

from goalkeeper.core.figures import format_duration
from goalkeeper.core.safe_text import neutralise
from goalkeeper.errors import GoalkeeperError
from goalkeeper.goals.batch import Batch, BatchRow, EndedRows, batch_rows, batch_totals, find_batch
from goalkeeper.tui.status import compact_count

if TYPE_CHECKING:
    from goalkeeper.store import Store

#: How often the rows are read again (seconds).
REFRESH_S = 0.5

COLUMNS = ("goal", "status", "checks", "tokens", "cost", "elapsed")
NUMBERS = frozenset({"tokens", "cost", "elapsed"})
"""Columns read as numbers: right-aligned, heading included."""

STATUS_STYLES = {"pursuing": "cyan", "paused": "yellow", "achieved": "green", "unmet": "red",
                 "budget_limited": "magenta", "crashed": "bold red", "waiting": "dim"}


class BatchScreen(Screen[str | None]):
    """One batch: a row per goal (status, checks x/y, tokens, cost, elapsed) and its totals against the caps."""

    DEFAULT_CSS = """
    BatchScreen #batch-title { height: 1; padding: 0 1; text-style: bold; background: $boost; }
    BatchScreen DataTable { height: 1fr; }
    BatchScreen #batch-totals { height: auto; padding: 0 1; background: $boost; text-style: bold; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Back")]

    def __init__(self, store: Store, batch_id: str, refresh_s: float = REFRESH_S) -> None:
        super().__init__()
        self.store, self.batch_id, self.refresh_s = store, batch_id, refresh_s
        self.rows: dict[str, BatchRow] = {}
        self.ended: EndedRows = {}
        """The rows of the goals that had ended, read again only once their goal changes (one read at a time)."""
        self._reading = False

    def compose(self) -> ComposeResult:
        yield Label(Text(f"batch {self.batch_id}   Enter opens a goal's thread · Esc returns"), id="batch-title")
        yield DataTable(id="batch-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="batch-totals")
        yield Footer()

    async def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in COLUMNS:
            table.add_column(Text(column, justify="right" if column in NUMBERS else "left"), key=column)
        table.focus()
        await self.refresh_rows()
        self.set_interval(self.refresh_s, self.refresh_rows)

    async def refresh_rows(self) -> None:
        """Read the batch and its rows again (off the event loop) and show them; one read at a time."""
        if self._reading:
            return
        self._reading = True
        try:
            batch, rows = await asyncio.to_thread(self._read)
        except GoalkeeperError as error:  # e.g. a locked store: said where the totals go, and read again next tick
            if self.is_attached:
                self.query_one("#batch-totals", Static).update(Text(f"error: {error.message}", style="red"))
            return
        finally:
            self._reading = False
        if self.is_attached:
            self._show(batch, rows)

    def _read(self) -> tuple[Batch, list[BatchRow]]:
        return find_batch(self.store, self.batch_id), batch_rows(self.store, self.batch_id, self.ended)

    def _show(self, batch: Batch, rows: Sequence[BatchRow]) -> None:
        table = self.query_one(DataTable)
        for row in rows:
            cells = row_cells(row)
            if row.name in self.rows:
                for column, cell in zip(COLUMNS, cells, strict=True):
                    table.update_cell(row.name, column, cell)
            else:
                table.add_row(*cells, key=row.name)
            self.rows[row.name] = row
        self.query_one("#batch-totals", Static).update(totals_text(batch, rows))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        row = self.rows.get(str(event.row_key.value))
        if row is None:
            return
        if row.goal_id is None:
            self.notify(f"{row.name} has not started yet: it has no thread to open", severity="warning")
            return
        self.dismiss(row.goal_id)

    def action_close(self) -> None:
        self.dismiss(None)


def row_cells(row: BatchRow) -> tuple[Text, ...]:
    """A row's cells as Text (never markup: an error message is whatever the runner raised)."""
    checks = f"{row.checks_passing}/{row.checks_total}" if row.verified else "unverified"
    return (Text(row.name), status_cell(row), Text(checks), Text(f"{row.tokens:,}", justify="right"),
            Text(f"${row.usd:.2f}", justify="right"), Text(format_duration(row.elapsed_s), justify="right"))


def status_cell(row: BatchRow) -> Text:
    text = Text(row.status, style=STATUS_STYLES.get(row.status, ""))
    if row.error:
        text.append(f": {neutralise(row.error)}", style="red")
    elif row.reason and row.status not in ("pursuing", "achieved"):
        text.append(f" ({row.reason})", style="dim")
    return text


def totals_text(batch: Batch, rows: Sequence[BatchRow]) -> Text:
    """`total · 3/5 ended · 40K / 100K tok · $0.42 / $5.00 · 2m / 30m`: each against its cap, where one is set."""
    totals, caps = batch_totals(batch, rows), batch.caps
    tokens = compact_count(totals.tokens) + (f" / {compact_count(caps.tokens)}" if caps.tokens is not None else "")
    usd = f"${totals.usd:.2f}" + (f" / ${caps.usd:.2f}" if caps.usd is not None else "")
    elapsed = format_duration(totals.elapsed_s) + (f" / {format_duration(caps.time_s)}" if caps.time_s else "")
    return Text(f"total · {totals.ended}/{totals.goals} ended · {tokens} tok · {usd} · {elapsed}")
