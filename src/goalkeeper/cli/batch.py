"""`gk batch`: many goals at once, each in its own worktree on this machine (or, with `--engine temporal`, on
the workers of a fleet), with a live table.

The command parses and renders; goals/batch.py checks the input, records the batch and runs it. What runs goals
is imported when the command runs, so defining the command costs the CLI's start-up nothing. A Temporal batch
loads temporalio, so the command then ends without the interpreter's teardown, as `gk submit` does.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from goalkeeper.cli import console
from goalkeeper.cli.fleet import TlsOptions
from goalkeeper.cli.options import ModelFlags, with_options
from goalkeeper.core.figures import format_duration
from goalkeeper.errors import ConfigError
from goalkeeper.events import payload_of
from goalkeeper.goals import service
from goalkeeper.spec.contract import parse_duration

if TYPE_CHECKING:
    from rich.table import Table

    from goalkeeper.config.temporal import TlsFlags
    from goalkeeper.goals.batch import BatchEnd, BatchRow, EndedRows, Engine, Hooks
    from goalkeeper.store import EventRecord, Store
    from goalkeeper.store.batches import Batch


@with_options(model_flags=ModelFlags, tls_options=TlsOptions)
def batch(
    model_flags: ModelFlags,
    tls_options: TlsOptions,
    paths: Annotated[list[str] | None, typer.Argument(metavar="FILE...|DIR", help="Goal files, or folders of "
                                                      "them (every *.toml, sorted); with --resume, a batch id.")]
    = None,
    parallel: Annotated[int, typer.Option("--parallel", "-p", help="Goals running at once.")] = 4,
    cap_tokens: Annotated[int | None, typer.Option(help="Global token cap over every goal of the batch.")] = None,
    cap_usd: Annotated[float | None, typer.Option(help="Global USD cap over every goal of the batch.")] = None,
    cap_time: Annotated[str | None, typer.Option(help="Global time cap of the batch's run, e.g. 2h.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Carry on a batch: the id given, else this "
                                                          "repository's latest.")] = False,
    cwd: Annotated[Path, typer.Option("--cwd", help="The repository (default: the current directory's).")]
    = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per goal event, then a summary line.")]
    = False,
    engine: Annotated[str | None, typer.Option("--engine", help="local (default: goals run here) or temporal "
                                                                "(the fleet's workers run them).")] = None,
    temporal: Annotated[str | None, typer.Option("--temporal", help="The Temporal server's frontend, HOST:PORT "
                                                                    "(default 127.0.0.1:7233).")] = None,
    task_queue: Annotated[str | None, typer.Option("--task-queue", help="The shared task queue of the fleet's "
                                                                        "workers (default goalkeeper).")] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", help="The Temporal namespace (default "
                                                                      "default).")] = None,
    repo: Annotated[str | None, typer.Option("--repo", help="The repository (URL or path) the workers clone and "
                                                            "push to (default: this repository).")] = None,
    ref: Annotated[str | None, typer.Option("--ref", help="Where the goal branches start (default: the "
                                                          "batch's start commit).")] = None,
) -> int:
    """Run many goals at once, each in its own git worktree and goal branch. Exit code: the worst outcome."""
    from goalkeeper.cli.fleet import without_teardown
    from goalkeeper.goals import batch as batches  # the fleet and the runner load only when a batch runs

    flags = {"--engine": engine, "--temporal": temporal, "--task-queue": task_queue, "--namespace": namespace,
             "--repo": repo, "--ref": ref}
    given = [flag for flag, value in flags.items() if value is not None]
    tls = tls_options.flags()

    def body() -> int:
        hooks, view = _view(as_json)
        with service.open_store() as store:
            # Every input is checked before the live view starts and before anything is recorded.
            if resume:
                _check_resume(model_flags, (cap_tokens, cap_usd, cap_time), given, paths)
                batch_id, knobs = (paths[0] if paths else None), _run_knobs(cwd, None)
                with view.showing(store):
                    end = batches.resume_batch(store, cwd, batch_id, knobs, hooks, tls)
            else:
                goals = batches.read_goal_files([Path(path) for path in paths or []])
                batches.check_parallel(parallel)
                caps = batches.check_caps(cap_tokens, cap_usd, parse_duration(cap_time) if cap_time else None)
                chosen = _engine(engine or "local", [*given, *tls.given()], temporal, task_queue, namespace, repo,
                                 ref, tls)
                repository = service.repository_of(cwd)
                model = model_flags.settings(repository, cap_usd)
                knobs = _run_knobs(repository, model_flags.profile)
                target = batches.temporal_target(cwd, chosen)
                with view.showing(store):
                    end = batches.start_batch(store, cwd, goals, parallel, caps, model, knobs, hooks, target, tls)
        _show_end(end, as_json)
        return end.exit_code

    return without_teardown(body)


def _check_resume(model_flags: ModelFlags, caps: tuple[object, ...], given: list[str],
                  paths: list[str] | None) -> None:
    if model_flags.given or any(cap is not None for cap in caps) or given:
        raise ConfigError("--resume carries a batch on with the model, caps and engine it started with",
                          "drop the model, cap and engine flags (the TLS flags may be given: they are not stored)")
    if paths is not None and len(paths) > 1:
        raise ConfigError("--resume takes one batch id at most", "gk batch --resume [BATCH_ID]")


def _engine(name: str, given: list[str], address: str | None, task_queue: str | None, namespace: str | None,
            repo: str | None, ref: str | None, tls: TlsFlags) -> Engine:
    """The engine flags as one `Engine`, checked; a Temporal flag (the TLS ones too) with the local engine is
    refused."""
    from goalkeeper.goals.batch import Engine, check_engine

    if name == "local" and (temporal_flags := [flag for flag in given if flag != "--engine"]):
        raise ConfigError(f"{temporal_flags[0]} is a flag of the Temporal engine", "add --engine temporal, or drop it")
    defaults = Engine()
    return check_engine(Engine(name, address or defaults.address, task_queue or defaults.task_queue,
                               namespace or defaults.namespace, repo, ref, tls))


def _run_knobs(workspace: Path, profile: str | None) -> Any:
    """config.toml's `[run]` knobs (and the profile's), as `gk exec` stores them with a goal."""
    from goalkeeper.config.load import load_config

    return load_config(service.repository_of(workspace), profile).run


class _View:
    """What the batch shows while it runs: JSON lines, a live table (a terminal) or progress lines."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.store: Store | None = None
        self.lock = threading.Lock()
        self.shown: dict[str, str] = {}
        self.ended: EndedRows = {}
        """The rows of the goals that have ended, read again only when their goal changes."""
        from rich.live import Live  # a terminal's live table only: not on every command's start-up
        from rich.table import Table

        # Drawn at each tick, not by a refresh thread of its own as well: each draw lays out the whole table.
        self.live = Live(Table(), console=console.out, auto_refresh=False, transient=True) \
            if not as_json and sys.stdout.isatty() else None

    @contextlib.contextmanager
    def showing(self, store: Store) -> Iterator[None]:
        """The live table (on a terminal) while the block runs, read from `store`."""
        self.store = store
        if self.live is not None:
            self.live.start()
        try:
            yield
        finally:
            if self.live is not None:
                self.live.stop()

    def event(self, batch_id: str, name: str, record: EventRecord) -> None:
        """A goal's event, from the goal's own thread: one JSON line with the goal and batch ids."""
        line = json.dumps({"seq": record.seq, "kind": record.event.kind, "actor": record.event.actor,
                           "goal_id": record.goal_id, "ts": record.ts, "payload": payload_of(record.event),
                           "batch_id": batch_id, "goal": name})
        with self.lock:
            print(line, flush=True)

    def tick(self, batch: Batch) -> None:
        """~2 Hz on the main thread: redraw the table, or print the goals whose status changed."""
        from goalkeeper.goals.batch import batch_rows, batch_statuses

        if self.as_json or self.store is None:
            return
        if self.live is not None:
            rows = batch_rows(self.store, batch.batch_id, self.ended)
            self.live.update(rows_table(rows, batch, fit=console.out.size.height), refresh=True)
            return
        for name, status in batch_statuses(self.store, batch.batch_id):
            if self.shown.get(name) != status:
                self.shown[name] = status
                console.out.print(f"{name}: {status}", markup=False)


def _view(as_json: bool) -> tuple[Hooks, _View]:
    from goalkeeper.goals.batch import Hooks

    view = _View(as_json)
    return Hooks(on_event=view.event if as_json else None, on_tick=view.tick), view


def rows_table(rows: list[BatchRow], batch: Batch, fit: int | None = None) -> Table:
    """The batch as a table: one row per goal, then the totals against the batch's caps. Within `fit` lines (a
    live table on a terminal) when there are more goals than that: the running ones, as many as fit, then one
    line that counts the others by status, and the totals always last."""
    from rich.table import Table

    from goalkeeper.goals.batch import batch_totals

    table = Table(box=None, pad_edge=False)
    for column in ("goal", "status", "checks", "tokens", "cost", "elapsed"):
        table.add_column(column, justify="right" if column in ("tokens", "cost", "elapsed") else "left")
    room = max(1, fit - 4) if fit is not None else len(rows)  # the header, the count, the totals, the cursor's
    shown = rows if len(rows) <= room + 1 else [row for row in rows if row.status == "pursuing"][:room]
    for row in shown:
        table.add_row(row.name, _status(row), f"{row.checks_passing}/{row.checks_total}", f"{row.tokens:,}",
                      f"${row.usd:.2f}", format_duration(row.elapsed_s))
    if len(shown) < len(rows):
        names = {row.name for row in shown}
        others = Counter(row.status for row in rows if row.name not in names)
        table.add_row(f"{len(rows) - len(shown)} more", ", ".join(f"{count} {status}" for status, count in
                                                                   sorted(others.items())), style="dim")
    totals, caps = batch_totals(batch, rows), batch.caps
    tokens = f"{totals.tokens:,}" + (f" / {caps.tokens:,}" if caps.tokens is not None else "")
    usd = f"${totals.usd:.2f}" + (f" / ${caps.usd:.2f}" if caps.usd is not None else "")
    elapsed = format_duration(totals.elapsed_s) + (f" / {format_duration(caps.time_s)}" if caps.time_s else "")
    table.add_row("total", f"{totals.ended}/{totals.goals} ended", "", tokens, usd, elapsed, style="bold")
    return table


def _status(row: BatchRow) -> str:
    from goalkeeper.goals.batch import status_text

    return status_text(row.status, row.reason, row.error)


def _show_end(end: BatchEnd, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"batch_id": end.batch.batch_id, "exit_code": end.exit_code, "capped": end.capped,
                          "detached": end.detached, "goals": [row.as_json() for row in end.rows]}), flush=True)
        return
    console.out.print(rows_table(end.rows, end.batch))
    if end.capped:
        console.out.print(f"the batch's {end.capped} cap was reached", markup=False)
    if end.detached:
        console.out.print("detached: the goals still pursuing go on on the Temporal workers; "
                          f"gk batch --resume {end.batch.batch_id} follows them again", markup=False)
    # A goal paused, crashed or not started (exit 3 or 4): a resume carries it on.
    resume = f"; resume with: gk batch --resume {end.batch.batch_id}" if end.exit_code >= 3 else ""
    console.out.print(f"batch {end.batch.batch_id}{resume}", markup=False)
