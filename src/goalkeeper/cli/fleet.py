"""The fleet commands: `gk worker` runs a Temporal worker, `gk submit` hands a goal to the Temporal engine.

Both load temporalio (only they do, with a face that wakes a Temporal goal's workflow through a child
process). They end without the interpreter's teardown once their work is done, so the SDK's occasional abort
at exit (temporalio/sdk-python#300) cannot turn a finished command into a crash: the exit code is the
command's own. docs/guide/fleet.md says how to run a fleet.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from goalkeeper.cli import console
from goalkeeper.cli.options import ModelFlags, StartIn, option, start_in, with_options
from goalkeeper.errors import ConfigError, GoalkeeperError
from goalkeeper.goals import service
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import GoalSettings

if TYPE_CHECKING:
    from goalkeeper.config.temporal import TemporalConnection, TlsFlags
    from goalkeeper.store import Goal, Store

Temporal = Annotated[str, typer.Option("--temporal", help="The Temporal server's frontend, HOST:PORT.")]
Queue = Annotated[str, typer.Option("--task-queue", help="The shared task queue of the fleet's workers.")]
Namespace = Annotated[str, typer.Option("--namespace", help="The Temporal namespace.")]


@dataclass(frozen=True)
class TlsOptions:
    """How to connect to a secured Temporal server (Temporal Cloud, a self-hosted one with TLS); each flag wins
    over the same key of the user's `[temporal]` table."""

    tls: bool = option("Connect over TLS (implied by the other TLS flags).", "--tls", default=False)
    tls_cert: str | None = option("The client certificate (PEM) for mTLS; needs --tls-key.", "--tls-cert")
    tls_key: str | None = option("The client certificate's private key (PEM).", "--tls-key")
    tls_ca: str | None = option("The CA (PEM) that signed the server's certificate (default: the system's).",
                                "--tls-ca")
    tls_server_name: str | None = option("The name the server's certificate carries, if not the address's host.",
                                         "--tls-server-name")
    temporal_api_key_env: str | None = option("The variable holding the Temporal API key (its name, not the "
                                              "key); implies --tls.", "--temporal-api-key-env")

    def flags(self) -> TlsFlags:
        """The flags as given (None where not given: the user's `[temporal]` table decides)."""
        from goalkeeper.config.temporal import TlsFlags

        return TlsFlags(self.tls or None, self.tls_cert, self.tls_key, self.tls_ca, self.tls_server_name,
                        self.temporal_api_key_env)

    def connection(self, address: str, namespace: str) -> TemporalConnection:
        """The connection these flags describe, over the user's `[temporal]` table; one clear error if bad."""
        from goalkeeper.config.temporal import connection

        return connection(address, namespace, self.flags())


@with_options(tls_options=TlsOptions)
def worker(
    tls_options: TlsOptions,
    temporal: Temporal,
    task_queue: Queue = "goalkeeper",
    workspaces: Annotated[Path | None, typer.Option("--workspaces", help="Where goals' workspaces are cloned "
                                                    "(default: workspaces/ beside the store).")] = None,
    max_goals: Annotated[int, typer.Option("--max-goals", min=1, help="Goals this worker runs at once.")] = 4,
    namespace: Namespace = "default",
    cwd: StartIn = None,
) -> int:
    """Run a Temporal worker until Ctrl-C or SIGTERM: it takes goals from the shared queue and runs their steps."""
    start_in(cwd)  # a relative --workspaces is read from there

    def body() -> int:
        from goalkeeper.run.temporal.client import check_address
        from goalkeeper.run.temporal.worker import serve

        check_address(temporal)
        server = tls_options.connection(temporal, namespace)
        with service.open_store() as store:
            folder = workspaces or store.path.parent / "workspaces"

            def ready(queue: str) -> None:
                console.out.print(f"worker ready: queue {queue}, workspaces {folder}, at most {max_goals} goals",
                                  markup=False, highlight=False)
                sys.stdout.flush()

            import asyncio

            asyncio.run(serve(store, server, task_queue, folder, max_goals, _report_files, ready))
        console.out.print("worker stopped")
        return 0

    return without_teardown(body)


@with_options(model_flags=ModelFlags, tls_options=TlsOptions)
def submit(
    model_flags: ModelFlags,
    tls_options: TlsOptions,
    file: Annotated[Path, typer.Argument(help="The goal contract (goal.toml).")],
    repo: Annotated[str, typer.Option("--repo", help="The repository (URL or path) workers clone and push to.")],
    engine: Annotated[str, typer.Option("--engine", help="The engine: temporal.")] = "temporal",
    ref: Annotated[str | None, typer.Option("--ref", help="Where the goal branch starts (default HEAD).")] = None,
    temporal: Temporal = "127.0.0.1:7233",
    task_queue: Queue = "goalkeeper",
    namespace: Namespace = "default",
    takeover_after: Annotated[float, typer.Option("--takeover-after", min=1, help="Seconds without a heartbeat "
                                                  "before another worker takes the goal over.")] = 30.0,
    continue_every: Annotated[int, typer.Option("--continue-every", min=2, help="Steps per workflow run before "
                                                "it continues as new.")] = 200,
    unverified: Annotated[bool, typer.Option("--unverified", help="Allow a goal with no checks.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    cwd: StartIn = None,
) -> int:
    """Submit a goal to the Temporal engine; prints its id. Workers (`gk worker`) run it."""
    def body() -> int:
        start_in(cwd)  # FILE and a local --repo are read from there
        if engine != "temporal":
            raise ConfigError(f"--engine {engine}: gk submit knows only the temporal engine",
                              "pass --engine temporal, or run the goal here with `gk exec --file FILE`")
        from goalkeeper.contract.toml import load_contract
        from goalkeeper.run.temporal.client import check_address

        check_address(temporal)
        tls = tls_options.flags()
        contract = load_contract(file)
        with service.open_store() as store:
            goal, workflow_id = submit_goal(store, contract, model_flags, repo=repo, ref=ref, address=temporal,
                                            task_queue=task_queue, namespace=namespace,
                                            takeover_s=takeover_after, continue_every=continue_every,
                                            unverified=unverified, tls=tls)
        if as_json:
            print(json.dumps({"goal_id": goal.goal_id, "thread_id": goal.thread_id, "workflow_id": workflow_id}))
        else:
            print(goal.goal_id)
        return 0

    return without_teardown(body)


def submit_goal(store: Store, contract: Contract, model_flags: ModelFlags | None, *, repo: str, ref: str | None,
                address: str, task_queue: str = "goalkeeper", namespace: str = "default", takeover_s: float = 30.0,
                continue_every: int = 200, unverified: bool = False,
                tls: TlsFlags | None = None) -> tuple[Goal, str]:
    """Submit one goal to Temporal (`gk submit`): its repository is staged beside the store, its model chosen
    there, its workflow started; (the goal, its workflow id). `tls` (the TLS flags) is laid over the user's
    `[temporal]` table. `gk batch --engine temporal` submits through goals/fleet.py's `submit` too, with the
    batch's model."""
    import asyncio

    from goalkeeper.config.temporal import connection
    from goalkeeper.goals import fleet

    def settings_in(staged: Path) -> GoalSettings:
        given = model_flags is not None and model_flags.given
        model = model_flags.settings(staged, contract.budget.usd) if model_flags is not None and given else None
        return GoalSettings(model=model)

    submitted = fleet.submit(store, contract, settings_in, repo=repo, ref=ref,
                             server=connection(address, namespace, tls), task_queue=task_queue,
                             takeover_s=takeover_s, continue_every=continue_every, unverified=unverified)
    return asyncio.run(submitted)


def _report_files(store: Store, goal: Goal) -> dict[str, str]:
    """The report a worker pushes when a goal stops: REPORT.md and report.json (goals/report.py)."""
    from goalkeeper.goals.report import build_report, render_markdown

    data = build_report(store, goal)
    return {"REPORT.md": render_markdown(data), "report.json": json.dumps(data, indent=1) + "\n"}


def without_teardown(body: Callable[[], int]) -> int:
    """Run `body`, rendering its error as `gk` does; once temporalio is loaded, exit without the interpreter's
    teardown (sdk-python#300 aborts there, after the work is done)."""
    try:
        code = body()
    except GoalkeeperError as error:
        console.show_error(error)
        code = error.exit_code
    if "temporalio" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
