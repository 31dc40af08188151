"""goalkeeper's unittest runner: `python -m <module> ARGS` runs what `python -m unittest ARGS` would run,
recording every test id and outcome, then a canary whose assertEqual(1, 2) must fail.

The output file is opened, and the environment that named it dropped, before any test module is imported.
The canary runs after the suite with a result of its own, so -f cannot skip it and it never changes the
exit code; the harness calls it tampering if it does not fail.
"""

from __future__ import annotations

import json
import os
import sys
import unittest
from typing import Any

_OUT = os.environ.pop("GOALKEEPER_TESTS_OUT", "")
_TOKEN = os.environ.pop("GOALKEEPER_TESTS_TOKEN", "")
_stream = open(_OUT, "a", encoding="utf-8") if _OUT else None  # noqa: SIM115 (open for the whole run)


def _emit(record: dict[str, Any]) -> None:
    if _stream is not None:
        _stream.write(json.dumps(record) + "\n")
        _stream.flush()


def _ids(suite: Any) -> list[str]:
    if isinstance(suite, unittest.TestSuite):
        return [test_id for test in suite for test_id in _ids(test)]
    return [suite.id()]


class _Result(unittest.TextTestResult):
    """A text result that also records each outcome."""

    def _record(self, test: Any, outcome: str, **extra: Any) -> None:
        _emit({"id": test.id(), "when": "call", "outcome": outcome, **extra})

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        self._record(test, "passed")

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._record(test, "failed")

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._record(test, "error")

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._record(test, "skipped")

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._record(test, "skipped", xfail=True)

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, "failed", xfail=True)

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            # A failing subtest fails its test, whatever the test's own outcome says.
            _emit({"id": test.id(), "when": "call", "outcome": "failed", "subtest": True})


class _Runner(unittest.TextTestRunner):
    resultclass = _Result  # type: ignore[assignment]  # a TextTestResult, as typeshed wants

    def run(self, test: Any) -> Any:
        _emit({"collected": _ids(test)})
        return super().run(test)


class GoalkeeperCanary(unittest.TestCase):
    """Must fail: if it passes, assertEqual (or the result machinery) has been tampered with."""

    def test_canary(self) -> None:
        self.assertEqual(1, 2)


def main() -> None:
    program = unittest.main(module=None, argv=["python -m unittest", *sys.argv[1:]], testRunner=_Runner,
                            exit=False)
    canary = unittest.defaultTestLoader.loadTestsFromTestCase(GoalkeeperCanary)
    _emit({"canaries": _ids(canary)})
    canary.run(_Result(unittest.runner._WritelnDecorator(open(os.devnull, "w")), True, 0))  # noqa: SIM115
    result = program.result
    code = 0 if result.wasSuccessful() else 1
    if result.testsRun == 0 and not result.skipped and sys.version_info >= (3, 12):
        code = 5  # what unittest itself says for "no tests ran"
    _emit({"finished": True, "exitstatus": code, "token": _TOKEN})
    if _stream is not None:
        _stream.close()
    sys.exit(code)


if __name__ == "__main__":
    main()
