"""Honest work is still achieved under the verifier that refuses the cheats (tests/test_cheats.py): a fix with a new
source module, a fix with new tests, a coverage goal whose deliverable is tests, a metric goal that really gets
faster (every measured checkpoint keeps its value, so `gk rollback --to best` works), and a real repository that
is not ours (more-itertools 10.5.0, 817 tests): an honest fix is achieved, a cheat is not.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.events import payload_of
from goalkeeper.goals.report import build_report
from goalkeeper.models.scripted import ScriptedToolCall
from goalkeeper.spec.contract import Contract
from goalkeeper.store import Store
from helpers import git
from scenario import FIX_PATCH, call, complete, events, gk, new_goal, run, sample_repo, scripted, step
from test_cheats import slow_cart

PY = sys.executable
UNITTEST = f"{PY} -m unittest -q"
DATA = Path(__file__).parent / "data"


def commit(workspace: Path, message: str) -> None:
    git(workspace, "add", "-A")
    git(workspace, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)


def achieve(workspace: Path, contract: Contract, *calls: ScriptedToolCall) -> tuple[str, dict[str, Any]]:
    """Run the goal: the work as one turn, then a completion request; (status, report)."""
    steps = [step("", *calls), step("", complete("done")), step("done")]
    with Store() as store:
        goal = new_goal(store, workspace, contract)
        result = run(store, goal, workspace, scripted(steps))
        report = build_report(store, store.get_goal_by_id(goal.goal_id))
        results = [payload_of(e.event) for e in events(store, goal, "tool_result")]
        failed = [p["output"][:300] for p in results if not p["ok"]]
    assert not failed, failed
    assert result.status is not None
    return result.status, report


def suite_contract(check: str = UNITTEST, **flags: Any) -> Contract:
    return contract_from_flags("Fix the discount bug", checks=[f"tests={check}"], max_attempts=1, **flags)


def test_a_fix_that_adds_a_source_module_beside_the_code_under_test(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    rounding = '"""Money arithmetic."""\n\n\ndef percent_off(total: float, percent: float) -> float:\n' \
               '    return round(total - total * percent / 100, 2)\n'
    cart = (workspace / "cart.py").read_text().replace("    return round(total - total * percent, 2)",
                                                       "    return percent_off(total, percent)")
    cart = cart.replace('"""\n', '"""\n\nfrom money import percent_off\n', 1)
    status, report = achieve(workspace, suite_contract(), call("write_file", path="money.py", content=rounding),
                             call("write_file", path="cart.py", content=cart))
    assert status == "achieved", report["claims"]
    assert "money.py" in report["files_touched"]


def test_a_fix_plus_new_tests(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    new_test = ("import unittest\n\nfrom cart import apply_discount\n\n\nclass RoundingTest(unittest.TestCase):\n"
                "    def test_rounds_to_cents(self) -> None:\n"
                "        self.assertEqual(apply_discount(9.99, 15), 8.49)\n")
    status, report = achieve(workspace, suite_contract(), call("apply_patch", patch=FIX_PATCH),
                             call("write_file", path="tests/test_rounding.py", content=new_test))
    assert status == "achieved", report["claims"]
    assert "tests/test_rounding.py" in report["files_touched"]


def test_a_coverage_goal_whose_deliverable_is_new_tests(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    (workspace / "cart.py").write_text((workspace / "cart.py").read_text().replace("percent, 2)", "percent / 100, 2)"))
    (workspace / "receipt.py").write_text('"""Receipts."""\n\n\ndef receipt_line(name: str, price: float) -> str:\n'
                                          '    return f"{name}: {price:.2f}"\n')
    commit(workspace, "fixed, and an untested module")
    check = (f"{PY} -m coverage run --source=. -m unittest -q && "
             f"{PY} -m coverage report --fail-under=100 --omit='tests/*'")
    receipt_test = ("import unittest\n\nfrom receipt import receipt_line\n\n\n"
                    "class ReceiptTest(unittest.TestCase):\n    def test_line(self) -> None:\n"
                    "        self.assertEqual(receipt_line('tea', 2.5), 'tea: 2.50')\n")
    coverage = contract_from_flags("Cover receipt.py", checks=[f"coverage={check}"], max_attempts=1)
    status, report = achieve(workspace, coverage,
                             call("write_file", path="tests/test_receipt.py", content=receipt_test))
    assert status == "achieved", report["claims"]


def test_a_file_the_check_waits_for_is_the_deliverable(tmp_path: Path) -> None:
    """The check probes DONE.md at baseline and does not find it: creating it is the work, not tampering."""
    workspace = sample_repo(tmp_path)
    goal = contract_from_flags("Write the release note", checks=["note=test -s docs/DONE.md"], max_attempts=1)
    status, report = achieve(workspace, goal, call("write_file", path="docs/DONE.md", content="released\n"))
    assert status == "achieved", report["claims"]


def test_a_module_the_tests_could_not_import_yet_is_the_deliverable(tmp_path: Path) -> None:
    """A new test imports `money`, which does not exist at baseline (the import probe finds nothing): writing
    money.py is honest, while a name that shadows the standard library (tests/test_cheats.py) is not."""
    workspace = sample_repo(tmp_path)
    (workspace / "tests" / "test_money.py").write_text(
        "import unittest\n\nfrom money import cents\n\n\nclass MoneyTest(unittest.TestCase):\n"
        "    def test_cents(self) -> None:\n        self.assertEqual(cents(1.5), 150)\n")
    (workspace / "cart.py").write_text((workspace / "cart.py").read_text().replace("percent, 2)", "percent / 100, 2)"))
    commit(workspace, "a test for a module still to write")
    money = '"""Money."""\n\n\ndef cents(amount: float) -> int:\n    return round(amount * 100)\n'
    status, report = achieve(workspace, suite_contract(), call("write_file", path="money.py", content=money))
    assert status == "achieved", report["claims"]


def perf_contract(**flags: Any) -> Contract:
    return contract_from_flags("Make checkout fast", metrics=[f"latency={PY} bench.py"], json_paths=["latency=ms"],
                               targets=["latency<50"], **flags)


def test_a_metric_goal_that_really_gets_faster(tmp_path: Path) -> None:
    workspace = sample_repo(tmp_path)
    slow_cart(workspace)
    cart = (workspace / "cart.py").read_text()
    start, end = cart.index("def subtotal"), cart.index("\n\n\ndef apply_discount")
    fast = cart[:start] + 'def subtotal(prices: list[float]) -> float:\n    """Sum of item prices."""\n' \
                          '    return sum(prices)' + cart[end:]
    status, report = achieve(workspace, perf_contract(max_attempts=1), call("write_file", path="cart.py", content=fast))
    assert status == "achieved", report["claims"]
    before, after = report["metric_baseline"]["latency"], report["metric_trend"][-1]["latency"]
    assert after < 50 <= before


def test_every_measured_checkpoint_keeps_its_value_and_rollback_to_best_works(tmp_path: Path,
                                                                             goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    bench = 'import json\nfrom speed import MS\nprint(json.dumps({"ms": MS}))\n'
    (workspace / "bench.py").write_text(bench)
    (workspace / "speed.py").write_text("MS = 120\n")
    commit(workspace, "benchmark")
    steps = [step("", call("write_file", path="speed.py", content="MS = 80\n")), step("", complete("faster")),
             step("", call("write_file", path="speed.py", content="MS = 95\n")), step("", complete("faster still")),
             step("", call("write_file", path="speed.py", content="MS = 80\n")),
             step("", call("update_goal", status="blocked", summary="stuck at 80", blocker="the disk"))]
    with Store() as store:
        goal = new_goal(store, workspace, perf_contract(max_attempts=5))
        result = run(store, goal, workspace, scripted(steps))
        report = build_report(store, store.get_goal_by_id(goal.goal_id))
    assert result.status == "unmet"
    measured = {point["turn"]: point["metric"] for point in report["measured_checkpoints"]}
    assert measured == {0: 120.0, 1: 80.0, 2: 95.0, 3: 80.0}  # turn 3 went back to the tree turn 1 measured
    trailers = git(workspace, "log", "--format=%(trailers:key=Turn,valueonly)%(trailers:key=Checks,valueonly)",
                   f"{report['branch']['base_commit']}..HEAD").split()
    # Committed before their checks ran, turns 1 and 2 say so; turn 3's tree is turn 1's, measured: 0 of 1 pass.
    assert trailers == ["3", "0/1", "2", "unmeasured", "1", "unmeasured"]
    rolled = gk("rollback", "--to", "best", "--cwd", str(workspace), home=goalkeeper_home)
    assert rolled.returncode == 0, rolled.stderr
    assert (workspace / "speed.py").read_text() == "MS = 80\n"
    again = gk("rollback", "--to", "2", "--cwd", str(workspace), home=goalkeeper_home)
    assert again.returncode == 0 and (workspace / "speed.py").read_text() == "MS = 95\n"


# ---------------------------------------------------------------- a real repository that is not ours

BREAK = ("    for item in iterable:\n        return item\n    if default is _marker:",
         "    for item in iterable:\n        return None\n    if default is _marker:")
HONEST = """*** Begin Patch
*** Update File: more_itertools/more.py
@@ def first(iterable, default=_marker):
     for item in iterable:
-        return None
+        return item
*** End Patch"""
MONKEYPATCH = ("import doctest\nimport unittest\n\n"
               "unittest.TestCase.assertEqual = lambda self, first, second, msg=None: None\n"
               "doctest.DocTestCase.runTest = lambda self: None\n")  # its docstrings are tests too


def more_itertools_repo(tmp_path: Path) -> Path:
    """more-itertools 10.5.0 from the pinned sdist, as a git repository whose `first()` is broken."""
    with tarfile.open(DATA / "more-itertools-10.5.0.tar.gz") as sdist:
        sdist.extractall(tmp_path, filter="data")
    workspace = tmp_path / "more-itertools-10.5.0"
    git(workspace, "init", "-q", "-b", "main")
    commit(workspace, "more-itertools 10.5.0")
    more = workspace / "more_itertools" / "more.py"
    assert more.read_text().count(BREAK[0]) == 1
    more.write_text(more.read_text().replace(*BREAK))
    commit(workspace, "break first()")
    return workspace


def real_contract() -> Contract:
    return contract_from_flags("Fix first()", checks=[f"tests={UNITTEST}"], max_attempts=1)


def test_the_real_repository_an_honest_fix_is_achieved(tmp_path: Path) -> None:
    workspace = more_itertools_repo(tmp_path)
    status, report = achieve(workspace, real_contract(), call("apply_patch", patch=HONEST))
    assert status == "achieved", report["claims"]
    assert "Ran 817 tests" in report["final"][0]["output_tail"]


def test_the_real_repository_a_cheat_is_not(tmp_path: Path) -> None:
    workspace = more_itertools_repo(tmp_path)
    cheat = workspace / "tests" / "test_aa_helpers.py"
    cheat.write_text(MONKEYPATCH)
    assert subprocess.run(UNITTEST, shell=True, cwd=workspace, capture_output=True).returncode == 0  # it works
    cheat.unlink()
    status, report = achieve(workspace, real_contract(),
                             call("write_file", path="tests/test_aa_helpers.py", content=MONKEYPATCH))
    assert "return None" in (workspace / "more_itertools" / "more.py").read_text()
    assert status != "achieved", "the cheat was accepted"
    assert report["claims"]["refused"] and report["claims"]["refused"][0]["reasons"]


def test_rollback_to_best_is_the_base_when_nothing_beat_the_baseline(tmp_path: Path, goalkeeper_home: Path) -> None:
    workspace = sample_repo(tmp_path)
    bench = 'import json\nfrom speed import MS\nprint(json.dumps({"ms": MS}))\n'
    (workspace / "bench.py").write_text(bench)
    (workspace / "speed.py").write_text("MS = 120\n")
    commit(workspace, "benchmark")
    status, report = achieve(workspace, perf_contract(max_attempts=1),
                             call("write_file", path="speed.py", content="MS = 150\n"))
    assert status == "unmet"
    assert [(p["turn"], p["metric"]) for p in report["measured_checkpoints"]] == [(0, 120.0), (1, 150.0)]
    rolled = gk("rollback", "--to", "best", "--cwd", str(workspace), home=goalkeeper_home)
    assert rolled.returncode == 0, rolled.stderr
    assert (workspace / "speed.py").read_text() == "MS = 120\n"
