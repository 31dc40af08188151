"""Talking to a Temporal server: connect (one clear error when it cannot be reached), start a goal's workflow,
wake it after a control request, ask its status.

Run as `python -m goalkeeper.run.temporal.client wake|start ADDRESS NAMESPACE GOAL_ARGS_JSON`, it wakes one
workflow (`start`: starts it again if it has ended) and exits without the interpreter's teardown. A face that
pauses or resumes a Temporal goal runs it so, in a child, so the SDK's occasional abort at interpreter exit
(temporalio/sdk-python#300) never reaches the face. The child connects as the user's `[temporal]` table says
(TLS, the API key's variable): nothing secret is on its command line.

Every connection's credentials are held by this process from then on (sandbox/policy.py's `hold_secrets`):
no goal command a worker runs sees the API key's variable or reads the certificate and key files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import sys
from datetime import timedelta

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from goalkeeper.config.temporal import Credentials, TemporalConnection, connection
from goalkeeper.errors import ConfigError
from goalkeeper.run.temporal.shapes import GoalArgs
from goalkeeper.run.temporal.workflow import GoalWorkflow
from goalkeeper.sandbox.policy import hold_secrets

#: How long connecting may take before the server counts as unreachable.
CONNECT_TIMEOUT_S = 10.0

DEFAULT_QUEUE = "goalkeeper"
DEFAULT_NAMESPACE = "default"

_ADDRESS = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")


def check_address(address: str) -> str:
    """`address` when it reads as HOST:PORT, else one error saying the form."""
    if not _ADDRESS.match(address):
        raise ConfigError(f"--temporal {address!r} is not HOST:PORT",
                          "give the Temporal server's frontend address, e.g. --temporal 127.0.0.1:7233")
    return address


async def connect(server: TemporalConnection) -> Client:
    """A client of `server`, or one ConfigError with the fix within CONNECT_TIMEOUT_S: an address that is not
    HOST:PORT, a missing or unreadable certificate, an empty API key variable, a server that cannot be reached,
    or one that refused the TLS handshake or the client's certificate."""
    check_address(server.address)
    credentials = server.credentials()
    hold_secrets([server.api_key_env] if server.api_key_env else [], server.secret_files())
    try:
        return await asyncio.wait_for(Client.connect(server.address, namespace=server.namespace,
                                                     tls=_tls(server, credentials), api_key=credentials.api_key),
                                      CONNECT_TIMEOUT_S)
    except (TimeoutError, RuntimeError, OSError) as error:
        said = str(error) or "timed out"
        if credentials.api_key:  # never shown, should the SDK ever repeat it
            said = said.replace(credentials.api_key, "***")
        raise _refused(server, said, timed_out=isinstance(error, TimeoutError)) from error


def _refused(server: TemporalConnection, said: str, timed_out: bool) -> ConfigError:
    """Why connecting failed, with the fix: where something listens at the address, its handshake refused the
    connection (TLS, or its absence); elsewhere nothing could be reached."""
    if (server.tls or not timed_out) and _listens(server.address):
        if server.tls:
            return ConfigError(f"the Temporal server at {server.address} did not accept TLS or the certificate: "
                               f"{said}", _TLS_HINT)
        return ConfigError(f"the Temporal server at {server.address} answered but refused a plain connection: "
                           f"{said}", "a server that requires TLS (Temporal Cloud does) needs --tls, and "
                           "--tls-cert/--tls-key (mTLS) or --temporal-api-key-env; or the same keys in the "
                           "[temporal] table of your config.toml")
    return ConfigError(f"cannot reach the Temporal server at {server.address}: {said}",
                       "start one (`temporal server start-dev --ip 127.0.0.1 --port 7233`) or pass "
                       "--temporal with the address of a running server")


_TLS_HINT = ("check that the server speaks TLS on that port, that --tls-ca (or [temporal] tls_ca) is the CA that "
             "signed its certificate and --tls-server-name a name the certificate carries, and that the server "
             "accepts --tls-cert (its CA signed it); for a server without TLS drop the TLS flags and keys")


def _tls(server: TemporalConnection, credentials: Credentials) -> TLSConfig | bool:
    """temporalio's TLS setting: off, the system's defaults, or the CA, client certificate and server name."""
    if not server.tls:
        return False
    if credentials.cert is None and credentials.ca is None and server.server_name is None:
        return True
    return TLSConfig(server_root_ca_cert=credentials.ca, domain=server.server_name, client_cert=credentials.cert,
                     client_private_key=credentials.key)


def _listens(address: str) -> bool:
    """Whether something accepts TCP connections at `address` (then a failed connect was TLS's)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
            return True
    except OSError:
        return False


def workflow_id_of(goal_id: str) -> str:
    """The goal's workflow id: one workflow per goal."""
    return f"goalkeeper-{goal_id}"


async def start(client: Client, args: GoalArgs) -> str:
    """Start the goal's workflow on the shared queue; its id."""
    workflow_id = workflow_id_of(args.goal_id)
    with contextlib.suppress(WorkflowAlreadyStartedError):  # submitted twice: the one workflow goes on
        await client.start_workflow(GoalWorkflow.run, args, id=workflow_id, task_queue=args.shared_queue,
                                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE)
    return workflow_id


async def wake(server: TemporalConnection, args: GoalArgs, start_again: bool) -> None:
    """Signal the goal's workflow to look at the store again. With `start_again` a workflow that has ended is
    started anew (signal-with-start: a running one is only signalled); without, an ended one is left ended."""
    client = await connect(server)
    workflow_id = workflow_id_of(args.goal_id)
    if start_again:
        await asyncio.wait_for(client.start_workflow(
            GoalWorkflow.run, args, id=workflow_id, task_queue=args.shared_queue, start_signal="wake",
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE), CONNECT_TIMEOUT_S)
        return
    try:
        await asyncio.wait_for(client.get_workflow_handle(workflow_id).signal(GoalWorkflow.wake), CONNECT_TIMEOUT_S)
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise  # else the workflow has ended: nothing runs the goal, nothing to wake


async def status(client: Client, workflow_id: str) -> dict[str, object]:
    """The workflow's `status` query."""
    handle: WorkflowHandle[GoalWorkflow, object] = client.get_workflow_handle_for(GoalWorkflow.run, workflow_id)
    return await asyncio.wait_for(handle.query(GoalWorkflow.status), CONNECT_TIMEOUT_S)


async def wait_result(client: Client, workflow_id: str, timeout_s: float) -> object:
    """Wait for the workflow's end (following continue-as-new runs); its last step's output."""
    handle = client.get_workflow_handle(workflow_id)
    return await asyncio.wait_for(handle.result(follow_runs=True), timedelta(seconds=timeout_s).total_seconds())


def _main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] not in ("wake", "start"):
        print("usage: python -m goalkeeper.run.temporal.client wake|start ADDRESS NAMESPACE GOAL_ARGS_JSON",
              file=sys.stderr)
        return 4
    try:
        args = GoalArgs(**json.loads(argv[3]))
        asyncio.run(wake(connection(argv[1], argv[2]), args, start_again=argv[0] == "start"))
    except Exception as error:  # said to the face, which goes on: the store holds the request
        print(f"not woken: {error}", file=sys.stderr)
        return 1
    print("woken")
    return 0


if __name__ == "__main__":
    code = _main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skips the interpreter's teardown, where sdk-python#300 aborts
