"""Bad inputs that used to end in a traceback: a NUL byte in a check command or a keep_green constraint is a
ContractError when the goal is set (goal.toml, flags, the API), never a failure later in the run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.errors import ContractError
from goalkeeper.server import close_app, create_app
from goalkeeper.store import Store
from scenario import gk, sample_repo

GOAL = '''outcome = "Make the tests pass"
[[checks]]
name = "tests"
run = "{run}"
[constraints]
keep_green = ["{keep}"]
'''


@pytest.mark.parametrize(("run", "keep"), [("python -m unittest\\u0000 -q", "true"),
                                           ("python -m unittest -q", "ruff\\u0000check")],
                         ids=["check", "keep_green"])
def test_a_nul_in_a_goal_file_is_a_contract_error(tmp_path: Path, goalkeeper_home: Path, run: str,
                                                  keep: str) -> None:
    workspace = sample_repo(tmp_path)
    goal = tmp_path / "goal.toml"
    goal.write_text(GOAL.format(run=run, keep=keep))
    done = gk("goal", "--file", str(goal), "--cwd", str(workspace), home=goalkeeper_home)
    assert done.returncode == 4 and "Traceback" not in done.stderr, done.stderr
    assert "NUL byte" in done.stderr
    assert "goal is now" not in done.stdout and "Run it with" not in done.stdout


def test_a_nul_from_flags_or_the_api_is_a_contract_error(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="NUL byte"):
        contract_from_flags("Fix it", checks=["tests=python -m unittest\0 -q"])
    with pytest.raises(ContractError, match="NUL byte"):
        contract_from_flags("Fix it", checks=["tests=true"], keep_green=["ruff\0check"])
    workspace = sample_repo(tmp_path)
    app = create_app(tmp_path / "state.db", token="t")
    try:
        with Store(tmp_path / "state.db") as store:
            thread = store.create_thread(workspace)

        async def post() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gk",
                                         headers={"Authorization": "Bearer t"}) as client:
                return await client.put(f"/threads/{thread.thread_id}/goal",
                                        json={"objective": "Fix it", "checks": ["tests=echo \0 x"]})

        answer = asyncio.run(post())
        assert answer.status_code == 422 and "NUL byte" in answer.json()["detail"], answer.text
    finally:
        close_app(app)
