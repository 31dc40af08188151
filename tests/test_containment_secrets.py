"""Credentials stay out of the agent's reach: the environment is scrubbed by name pattern and by value, the
usual credential files in $HOME and $GOALKEEPER_HOME read as nothing inside the sandbox, while a virtualenv
named `.env/` still runs. And a shell command of any size runs (through a file, not argv)."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

import pytest

from goalkeeper.events import payload_of
from goalkeeper.sandbox.bwrap import run_confined, run_sandboxed
from goalkeeper.sandbox.policy import (
    DEFAULT_SECRET_ENV,
    DEFAULT_SECRETS,
    SandboxPolicy,
    command_environment,
    holds_credentials,
)
from goalkeeper.sandbox.process import run_command
from goalkeeper.store import Store
from scenario import FIX_PATCH, call, complete, events, new_goal, run, sample_repo, scripted, shell, step

SECRET_ENV = {
    "AZURE_OPENAI_KEY": "sk-azure-1", "BARS_KEY": "sk-bars-2", "SECRET_KEY": "django-3", "GITHUB_PAT": "ghp-4",
    "GH_TOKEN": "gho-5", "NPM_TOKEN": "npm-6", "CLIENT_SECRET": "cs-7", "DB_PASSWORD": "pw-8",
    "GOOGLE_APPLICATION_CREDENTIALS": "/keys/sa-9.json", "AWS_SESSION_TOKEN": "aws-10", "GOALKEEPER_SECRET": "gk-11",
    "DATABASE_URL": "postgres://app:hunter12@db:5432/app", "PIP_INDEX_URL": "https://u:tok13@pypi.example/simple",
    "WEBHOOK_URL": "https://hooks.example/x?token=tok14", "ANTHROPIC_API_KEY": "sk-ant-15",
    "MY_PROVIDER": "provider-16", "GOALKEEPER_STORE_URL": "postgresql://gk@db/gk", "PGPASSWORD": "pw-17",
}
HARMLESS_ENV = {"SERVICE_URL": "http://localhost:8080/v1", "DOCS_URL": "https://example.com/?page=2",
                "KEYBOARD": "us", "LANG": "C.UTF-8"}


def test_the_environment_filter_drops_credentials_by_name_and_by_value() -> None:
    kept = command_environment({**SECRET_ENV, **HARMLESS_ENV}, DEFAULT_SECRET_ENV, also=["MY_PROVIDER"])
    assert kept == HARMLESS_ENV
    assert command_environment({"MY_PROVIDER": "x"}) == {"MY_PROVIDER": "x"}  # only `also` names it
    assert command_environment({"X": "1"}, ("x",)) == {}  # globs are case-insensitive
    assert holds_credentials("redis://:pw@cache:6379/0") and holds_credentials("https://h/?api_key=1")
    assert not holds_credentials("https://example.com/path?design=1") and not holds_credentials("plain")


CREDENTIAL_FILES = {
    ".git-credentials": "https://user:ghp_gitcred@github.com", ".npmrc": "//registry/:_authToken=npm_tok",
    ".pypirc": "password = pypi_pw", ".docker/config.json": '{"auths": {"x": {"auth": "docker_tok"}}}',
    ".kube/config": "token: kube_tok", ".config/gh/hosts.yml": "oauth_token: gh_tok", ".netrc": "password netrc_pw",
    ".aws/credentials": "aws_secret_access_key = aws_tok", ".ssh/id_rsa": "PRIVATE ssh_key",
    ".gnupg/private-keys-v1.d/k.key": "gpg_tok", ".config/gcloud/credentials.db": "gcloud_tok",
    ".azure/accessTokens.json": "azure_tok", ".pgpass": "db:5432:*:gk:pgpass_pw",
}


@pytest.fixture
def fake_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    for name, content in CREDENTIAL_FILES.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(content)
    (home / ".bashrc").write_text("# visible\n")
    return home


def sandboxed(workspace: Path, command: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    policy = SandboxPolicy("workspace-write", workspace.resolve())
    result = asyncio.run(run_sandboxed(policy, command, workspace, 60, env=env))
    return result.exit_code, result.output


def test_credential_files_in_home_and_goalkeeper_home_read_as_nothing(
        git_repo: Path, fake_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gk_home = tmp_path / "elsewhere" / "gk"
    gk_home.mkdir(parents=True)
    (gk_home / "server-token").write_text("server_tok")
    (gk_home / "config.toml").write_text('[[notify]]\nurl = "https://hooks.example/?secret=webhook_tok"\n')
    (gk_home / "state.db").write_text("store_tok")
    monkeypatch.setenv("GOALKEEPER_HOME", str(gk_home))
    env = {**os.environ, "HOME": str(fake_home)}
    files = " ".join(str(fake_home / name) for name in CREDENTIAL_FILES)
    _, output = sandboxed(git_repo, f"cat {files} {gk_home}/* 2>&1; ls -A {gk_home}; cat ~/.bashrc", env)
    for needle in ("gitcred", "npm_tok", "pypi_pw", "docker_tok", "kube_tok", "gh_tok", "netrc_pw", "aws_tok",
                   "ssh_key", "gpg_tok", "gcloud_tok", "azure_tok", "server_tok", "webhook_tok", "store_tok",
                   "pgpass_pw"):
        assert needle not in output, f"{needle} was readable: {output}"
    assert "# visible" in output  # $HOME itself is still there
    assert (gk_home / "server-token").read_text() == "server_tok"  # masked, not touched


def test_a_virtualenv_named_dot_env_is_not_a_secret_but_dot_env_files_are(git_repo: Path) -> None:
    venv = git_repo / ".env"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {Path(sys.executable).parent}\n")
    (venv / "bin" / "python").symlink_to(sys.executable)
    (git_repo / ".env.local").write_text("API_TOKEN=dotenv_tok\n")
    (git_repo / "deploy").mkdir()
    (git_repo / "deploy" / ".env").write_text("DB=dotenv_deep\n")
    code, output = sandboxed(git_repo, ".env/bin/python -c 'print(40 + 2)' && cat .env.local deploy/.env")
    assert code == 0, output
    assert "42" in output and "dotenv_tok" not in output and "dotenv_deep" not in output


def test_a_hostile_run_reads_no_credential_from_env_or_home(
        tmp_path: Path, fake_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = sample_repo(tmp_path)
    for name, value in SECRET_ENV.items():
        if name != "MY_PROVIDER":
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(fake_home))
    attempts = [shell("env"), shell("cat /proc/self/environ | tr '\\0' '\\n'"),
                shell("cat ~/.git-credentials ~/.npmrc ~/.pypirc ~/.docker/config.json ~/.kube/config"),
                shell("cat ~/.config/gh/hosts.yml ~/.aws/credentials ~/.netrc; ls -A $GOALKEEPER_HOME /")]
    steps = [step("look around", attempt) for attempt in attempts]
    steps += [step("", call("apply_patch", patch=FIX_PATCH)), step("", complete("fixed")), step("done")]
    with Store() as store:
        goal = new_goal(store, workspace, protect=["tests/**"], no_progress_turns=50)
        result = run(store, goal, workspace, scripted(steps))
        outputs = " ".join(payload_of(e.event)["output"] for e in events(store, goal, "tool_result"))
    assert result.status == "achieved"
    for value in [*SECRET_ENV.values(), "ghp_gitcred", "npm_tok", "pypi_pw", "docker_tok", "kube_tok", "gh_tok",
                  "aws_tok", "netrc_pw"]:
        if value != "provider-16":
            assert value not in outputs, f"{value} reached the model"


# --- commands of any size -----------------------------------------------------------------------------------

MEGABYTE_COMMAND = ": '" + "x" * (1024 * 1024) + "'\necho \"ran $((6 * 7))\"; read line; echo \"stdin: $?\""


def test_a_one_megabyte_command_runs_in_the_sandbox_and_unconfined(git_repo: Path) -> None:
    scripts = Path(tempfile.gettempdir())
    mine = f"goalkeeper-command-{os.getpid()}-*"  # other test workers run commands at the same time
    before = set(scripts.glob(mine))
    code, output = sandboxed(git_repo, MEGABYTE_COMMAND)
    assert code == 0, output[:500]
    assert "ran 42" in output and "stdin: 1" in output  # stdin is empty, not the script
    plain = asyncio.run(run_command(MEGABYTE_COMMAND, git_repo, 60))
    assert plain.exit_code == 0 and "ran 42" in plain.output and "stdin: 1" in plain.output
    danger = asyncio.run(run_confined(SandboxPolicy("danger-full-access", git_repo), MEGABYTE_COMMAND, git_repo, 60))
    assert danger.exit_code == 0 and "ran 42" in danger.output
    assert plain.command == MEGABYTE_COMMAND  # the record shows the command, not the script file
    assert set(scripts.glob(mine)) <= before  # each script file was removed


def test_a_one_megabyte_shell_call_does_not_stop_the_run(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    steps = [step("big", shell(MEGABYTE_COMMAND)), step("", call("apply_patch", patch=FIX_PATCH)),
             step("", complete("fixed")), step("done")]
    with Store() as store:
        goal = new_goal(store, workspace, protect=["tests/**"], no_progress_turns=50)
        result = run(store, goal, workspace, scripted(steps))
        first = payload_of(events(store, goal, "tool_result")[0].event)
    assert result.status == "achieved"
    assert first["ok"] and "ran 42" in first["output"]


def test_the_file_tools_read_a_dot_env_virtualenv_but_not_dot_env_files(git_repo: Path) -> None:
    """The file tools mask what the sandbox masks: `.env*` names files, so a `.env/` virtualenv stays readable."""
    from goalkeeper.tools.paths import BoundaryRefused, check_read

    (git_repo / ".env" / "bin").mkdir(parents=True)
    (git_repo / ".env" / "pyvenv.cfg").write_text("home = /usr/bin\n")  # what makes it a virtualenv
    (git_repo / ".env" / "bin" / "activate").write_text("# venv\n")
    (git_repo / "secrets").mkdir()
    (git_repo / "secrets" / "prod.key").write_text("KEY\n")
    (git_repo / "deploy").mkdir()
    (git_repo / "deploy" / ".env.prod").write_text("TOKEN=x\n")
    policy = SandboxPolicy("workspace-write", git_repo.resolve(), secrets=(*DEFAULT_SECRETS, "secrets"))
    check_read(git_repo, ".env/bin/activate", git_repo / ".env" / "bin" / "activate", policy)
    with pytest.raises(BoundaryRefused, match="secret glob"):  # a glob without `/` still covers a folder's files
        check_read(git_repo, "secrets/prod.key", git_repo / "secrets" / "prod.key", policy)
    with pytest.raises(BoundaryRefused, match="secret glob"):
        check_read(git_repo, "deploy/.env.prod", git_repo / "deploy" / ".env.prod", policy)
