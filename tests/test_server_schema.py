"""Schemathesis against the server's OpenAPI spec: no 5xx, and every response matches the spec. And the spec
committed as docs/openapi.json is the app's own (scripts/openapi writes it).

The store holds a goal that really ran, so generated requests reach real data, not only 404s.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks
from schemathesis.core.result import Ok

from goalkeeper.run.runner import Runner
from goalkeeper.server import close_app, create_app
from goalkeeper.store import Store
from scenario import HONEST_FIX, new_goal, sample_repo, scripted

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "schema-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.response_headers_conformance]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, list[str]]]:
    """The app over a store with an achieved goal (a real scripted run) and a thread without a goal."""
    root = tmp_path_factory.mktemp("schema")
    path = root / "state.db"
    with Store(path) as store:
        repo = sample_repo(root)
        goal = new_goal(store, repo)
        asyncio.run(Runner(store, goal, scripted(HONEST_FIX), repo, handle_signals=False).run())
        empty = store.create_thread(root)
        threads = [goal.thread_id, empty.thread_id]
    app = create_app(path, token=TOKEN, poll_s=0.02)
    yield app, threads
    close_app(app)


def test_every_response_matches_the_spec_and_none_is_a_5xx(seeded: tuple[Any, list[str]]) -> None:
    app, threads = seeded
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH)

    @schema.hook
    def flatmap_path_parameters(context: Any, parameters: dict[str, Any] | None) -> Any:
        # A generated id is almost never a real thread: send the real ones too, so bodies of 200s are checked.
        if not parameters or "thread_id" not in parameters:
            return st.just(parameters)
        return st.sampled_from([parameters, *({**parameters, "thread_id": t} for t in threads)])

    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results) >= 14
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def exercise(case: Any) -> None:
            # Streams never end: the test client keeps what arrived within the read timeout.
            case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=0.5)

        try:
            exercise()
        except Exception as failure:  # one operation's failure must not hide the others'
            failures.append(f"{operation.label}: {failure}")
    assert not failures, "\n\n".join(failures)


def test_the_committed_spec_is_the_apps_own() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "openapi"), "--check"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr + "\nrun: .venv/bin/python scripts/openapi"
