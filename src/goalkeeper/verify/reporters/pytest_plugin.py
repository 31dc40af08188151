"""goalkeeper's pytest plugin: every test id and outcome, a canary, and no deselection by the repository.

Loaded with `-p <module>` before any conftest. It opens its output file and forgets the environment that
named it at import, so the code under test cannot read where the records go. The repository's addopts and
conftests cannot narrow the selection: `-k`, `-m`, `--deselect`, `--ignore` are put back to what the check's
command line said before collection, and whatever is deselected anyway is recorded as "deselected".
Two canary tests whose assertion is false run last; their failure is recorded and then hidden from pytest
(so the check's exit code is the suite's own), and the harness calls it tampering if they do not fail.
"""

from __future__ import annotations

import importlib
import json
import os
import pathlib
from typing import Any

import pytest

_OUT = os.environ.pop("GOALKEEPER_TESTS_OUT", "")
_TOKEN = os.environ.pop("GOALKEEPER_TESTS_TOKEN", "")
_ALLOWED = json.loads(os.environ.pop("GOALKEEPER_TESTS_SELECT", "{}") or "{}")
_CANARY_FILE = os.environ.pop("GOALKEEPER_TESTS_CANARY", "")
_stream = open(_OUT, "a", encoding="utf-8") if _OUT else None  # noqa: SIM115 (open for the whole run)
_canaries: list[Any] = []
if _CANARY_FILE:
    pytest.register_assert_rewrite(pathlib.Path(_CANARY_FILE).stem)
_ran: set[str] = set()
_session: list[Any] = []

#: Options that narrow the selection: reset to the command line's values before collection.
_SELECT = ("keyword", "markexpr", "deselect", "ignore", "ignore_glob")


def _emit(record: dict[str, Any]) -> None:
    if _stream is not None:
        _stream.write(json.dumps(record) + "\n")
        _stream.flush()


def _reset_selection(config: Any) -> None:
    for name in _SELECT:
        if hasattr(config.option, name):
            setattr(config.option, name, _ALLOWED.get(name, "" if name in ("keyword", "markexpr") else None))


def pytest_configure(config: Any) -> None:
    if _stream is None:
        return
    if getattr(config.option, "numprocesses", None) or getattr(config.option, "dist", "no") != "no":
        _emit({"unsupported": "pytest-xdist spreads the tests over workers"})


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_collection(session: Any) -> Any:
    if _stream is not None:
        _session.append(session)
        _reset_selection(session.config)
    yield


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> Any:
    if _stream is not None:
        _reset_selection(config)
    yield
    if _stream is None:
        return
    _emit({"collected": [item.nodeid for item in items]})
    parent = _canary_parent(items)
    if _CANARY_FILE and parent is not None:
        _canaries.extend(_canary_items(parent))
        items.extend(_canaries)
    # An empty list: no test module to host the canaries (nothing collected), which the rules judge instead.
    _emit({"canaries": [item.nodeid for item in _canaries]})


def _canary_parent(items: list[Any]) -> Any:
    """The first test module with a test not marked skip/xfail: the canaries live there, under the same
    conftests and hooks as the suite (a conftest's hooks apply only to tests below it)."""
    for item in items:
        module = item.getparent(pytest.Module)
        if module is not None and not any(True for name in ("skip", "skipif", "xfail")
                                          for _ in item.iter_markers(name)):
            return module
    return None


def _canary_items(parent: Any) -> list[Any]:
    """The canary module's functions (imported through pytest's assertion rewriting) as tests of `parent`."""
    module = importlib.import_module(pathlib.Path(_CANARY_FILE).stem)
    return [pytest.Function.from_parent(parent, name=f"test_{_TOKEN}_{name}", callobj=getattr(module, name))
            for name in ("canary_assert", "canary_assert_equal")]


def pytest_deselected(items: list[Any]) -> None:
    for item in items:
        _emit({"id": item.nodeid, "when": "deselect", "outcome": "deselected"})


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        _emit({"collect_error": report.nodeid, "text": str(report.longrepr)[-500:]})


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report: Any) -> None:
    if _stream is None:
        return
    record = {"id": report.nodeid, "when": report.when, "outcome": report.outcome}
    if hasattr(report, "wasxfail"):
        record["xfail"] = True
    if getattr(report, "context", None) is not None or type(report).__name__ == "SubtestReport":
        record["subtest"] = True
    _emit(record)
    if report.nodeid in _ids(_canaries):
        _ran.add(report.nodeid)
        if report.failed:
            _hide(report)


def _hide(report: Any) -> None:
    """Recorded; now hidden from pytest, so the check's exit code and -x/--maxfail are the suite's own.

    The session counted the failure already (its hook runs first): uncount it.
    """
    report.outcome = "passed"
    report.longrepr = None
    for session in _session:
        session.testsfailed = max(0, session.testsfailed - 1)
        maxfail = session.config.getvalue("maxfail")
        if session.shouldfail and (not maxfail or session.testsfailed < maxfail):
            # pytest >= 8 refuses to unset shouldfail through its property; the canary's count is ours to undo.
            setattr(session, "_shouldfail" if hasattr(session, "_shouldfail") else "shouldfail", False)


def _ids(items: list[Any]) -> set[str]:
    return {item.nodeid for item in items}


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtestloop(session: Any) -> Any:
    outcome = yield
    # -x, --maxfail or a collection error stops the loop first: the canaries run all the same.
    if _stream is not None and not session.config.option.collectonly:
        for item in _canaries:
            if item.nodeid not in _ran:
                item.ihook.pytest_runtest_protocol(item=item, nextitem=None)
    del outcome


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: Any) -> None:
    # Before the terminal's summary: the canaries are not the suite's, so "N passed" stays the suite's count.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and _canaries:
        ids = _ids(_canaries)
        for key, reports in list(reporter.stats.items()):
            reporter.stats[key] = [r for r in reports if getattr(r, "nodeid", None) not in ids]
            if not reporter.stats[key]:
                del reporter.stats[key]


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: Any) -> None:
    # The last record: a run that exits early (os._exit, atexit, sys.exit at import) never writes it.
    _emit({"finished": True, "token": _TOKEN})
