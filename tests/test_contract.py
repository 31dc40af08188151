"""The goal contract: goal.toml in and out, the flag grammar, durations and human error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.contract.summary import contract_summary_lines
from goalkeeper.contract.toml import dump_contract, load_contract
from goalkeeper.core.figures import format_duration
from goalkeeper.errors import ContractError
from goalkeeper.spec.contract import (
    Boundaries,
    Budget,
    Check,
    Constraints,
    Contract,
    IterationPolicy,
    Metric,
    parse_duration,
)

FULL_EXAMPLE = """\
outcome = "Make the test suite green"
blocked_when = "the fix needs a schema change"
[[checks]]
name = "tests"
run = "python -m pytest -q"
timeout = "10m"
[[checks]]
name = "p95"
run = "python bench.py"
metric = { json_path = "p95_ms", target = "< 120" }
[constraints]
keep_green = ["ruff check ."]
[boundaries]
paths = ["src/**"]
protect = ["tests/**"]
network = false
sandbox = "workspace-write"
[iteration]
policy = "smallest change first"
max_attempts = 3
no_progress_turns = 5
[budget]
tokens = 200000
usd = 5.0
time = "2h"
turns = 40
"""


def write_goal(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "goal.toml"
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = write_goal(tmp_path, text)
    with pytest.raises(ContractError) as caught:
        load_contract(path)
    return str(caught.value)


# ---------------------------------------------------------------- loading goal.toml


def test_full_example_loads_every_table(tmp_path: Path) -> None:
    contract = load_contract(write_goal(tmp_path, FULL_EXAMPLE))

    assert contract == Contract(
        outcome="Make the test suite green",
        blocked_when="the fix needs a schema change",
        checks=[
            Check(name="tests", run="python -m pytest -q", timeout_s=600.0),
            Check(name="p95", run="python bench.py", metric=Metric(json_path="p95_ms", target="< 120")),
        ],
        constraints=Constraints(keep_green=["ruff check ."]),
        boundaries=Boundaries(
            paths=["src/**"], protect=["tests/**"], network=False, sandbox="workspace-write"
        ),
        iteration=IterationPolicy(policy="smallest change first", max_attempts=3, no_progress_turns=5),
        budget=Budget(tokens=200000, usd=5.0, time_s=7200.0, turns=40),
    )
    assert contract.verified
    assert [check.name for check in contract.metric_checks] == ["p95"]


def test_a_bare_outcome_is_an_unverified_goal(tmp_path: Path) -> None:
    contract = load_contract(write_goal(tmp_path, 'outcome = "tidy the README"\n'))

    assert not contract.verified
    assert contract.metric_checks == []
    assert any("unverified" in line for line in contract_summary_lines(contract))


def test_timeout_may_be_a_number_of_seconds(tmp_path: Path) -> None:
    toml = 'outcome = "x"\n[[checks]]\nname = "t"\nrun = "true"\ntimeout = 90\n'

    contract = load_contract(write_goal(tmp_path, toml))

    assert contract.checks[0].timeout_s == 90.0


def test_missing_goal_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ContractError) as caught:
        load_contract(tmp_path / "nowhere.toml")

    assert caught.value.message == f"goal file not found: {tmp_path / 'nowhere.toml'}"
    assert caught.value.hint


def test_toml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    message = load_error(tmp_path, 'outcome = "x"\n[[checks]\nname = "t"\n')

    assert f"{tmp_path / 'goal.toml'}:2:" in message
    assert "TOML syntax error" in message
    assert "[[checks]" in message  # the offending line is shown


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    message = load_error(tmp_path, 'outcome = "x"\n[[checks]]\nname = "t"\nrun = "true"\ntimout = "5m"\n')

    assert "checks[0].timout: unknown key (did you mean `timeout`?)" in message
    assert "write one of: name, run, timeout, metric" in message


def test_unknown_table_suggests_the_close_one(tmp_path: Path) -> None:
    message = load_error(tmp_path, 'outcome = "x"\n[budgets]\ntokens = 5\n')

    assert "budgets: unknown key (did you mean `budget`?)" in message


def test_each_validation_problem_names_file_key_and_fix(tmp_path: Path) -> None:
    message = load_error(tmp_path, """\
outcome = " "
[[checks]]
name = "has space"
timeout = "ten minutes"
metric = { regex = "(a)(b)", target = "about 5" }
[boundaries]
sandbox = "open"
network = "maybe"
[iteration]
max_attempts = 0
[budget]
tokens = 1.5
usd = -1
""")
    lines = message.splitlines()
    expected_keys = [
        "outcome", "checks[0].name", "checks[0].run", "checks[0].timeout", "checks[0].metric.regex",
        "checks[0].metric.target", "boundaries.network", "boundaries.sandbox", "iteration.max_attempts",
        "budget.tokens", "budget.usd",
    ]
    assert sorted(line.split(": ")[1] for line in lines) == sorted(expected_keys)
    for line in lines:
        assert line.startswith(f"{tmp_path / 'goal.toml'}: ")
        assert "; write " in line
    assert "Input should" not in message and "pydantic" not in message  # never raw pydantic output


@pytest.mark.parametrize(
    ("toml", "key", "says"),
    [
        ('[[checks]]\nname = "a"\nrun = "x"\n[[checks]]\nname = "a"\nrun = "y"\n', "checks", "unique"),
        ('[[checks]]\nname = "a"\nrun = "x"\nmetric = { target = "< 5" }\n',
         "checks[0].metric", "exactly one"),
        ('[[checks]]\nname = "a"\nrun = "x"\nmetric = { regex = "x", target = "< 5" }\n',
         "checks[0].metric.regex", "0 capture groups"),
        ('[[checks]]\nname = "a"\nrun = "x"\nmetric = { json_path = "a..b", target = "< 5" }\n',
         "checks[0].metric.json_path", "not a JSON path"),
        ('[budget]\ntime = "soon"\n', "budget.time", "not a duration"),
        ('[budget]\nturns = 0\n', "budget.turns", "greater than 0"),
    ],
)
def test_contract_rules_are_reported_by_key(tmp_path: Path, toml: str, key: str, says: str) -> None:
    message = load_error(tmp_path, 'outcome = "x"\n' + toml)

    assert f"goal.toml: {key}: " in message
    assert says in message
    assert "; write " in message


def test_a_missing_outcome_shows_what_to_write(tmp_path: Path) -> None:
    message = load_error(tmp_path, 'blocked_when = "x"\n')

    assert 'outcome: is required; write outcome = "Make the test suite green"' in message


# ---------------------------------------------------------------- dumping goal.toml


ROUND_TRIP_CASES = [
    Contract(outcome="just words"),
    Contract(outcome="multi\nline \"quoted\" \\ text", blocked_when="never 'ever'"),
    Contract(
        outcome="speed",
        checks=[
            Check(name="unit", run="pytest -q", timeout_s=5400),
            Check(name="odd.timeout", run="true", timeout_s=2.5),
            Check(name="p95", run="python bench.py",
                  metric=Metric(json_path="$.results[0].ms", target="<= 1e3")),
            Check(name="score", run="./score",
                  metric=Metric(regex=r"score: ([\d.]+)\s*$", target=">= 0.8")),
        ],
        constraints=Constraints(keep_green=["ruff check .", "mypy"]),
        boundaries=Boundaries(paths=["src/**"], protect=["tests/**"], network=True, sandbox="read-only"),
        iteration=IterationPolicy(policy="one file at a time", max_attempts=1, no_progress_turns=9),
        budget=Budget(tokens=1, usd=0.25, time_s=90061.0, turns=3),
    ),
    Contract(outcome="fractional time", budget=Budget(time_s=0.125)),
    Contract(outcome="planned", checklist=("read cart.py", 'fix "percent"', "run the tests"),
             checks=[Check(name="tests", run="pytest")], budget=Budget(turns=4)),
]


@pytest.mark.parametrize("contract", ROUND_TRIP_CASES)
def test_dump_then_load_gives_the_same_contract(tmp_path: Path, contract: Contract) -> None:
    assert load_contract(write_goal(tmp_path, dump_contract(contract))) == contract


def test_dump_uses_the_toml_key_names_and_leaves_defaults_out() -> None:
    text = dump_contract(ROUND_TRIP_CASES[2])

    assert 'timeout = "1h 30m"' in text
    assert 'time = "1d 1h 1m 1s"' in text
    assert "[[checks]]" in text
    assert "timeout_s" not in text and "time_s" not in text
    assert dump_contract(Contract(outcome="x")) == 'outcome = "x"\n'


_floats = st.floats(min_value=0.001, max_value=1e9, allow_nan=False, allow_infinity=False)
_targets = st.builds("{} {!r}".format, st.sampled_from(["<", "<=", ">", ">=", "=="]),
                     st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**6, 10**6))
_json_paths = st.sampled_from(["p95", "a.b.c", "$.results[0].ms", "x[2][3]"])
_regexes = st.sampled_from([r"p95=(\d+)", r"^score: ([0-9.]+)$", "(?:a|b)=(.*)"])
_metrics = st.builds(Metric, json_path=_json_paths, target=_targets) | st.builds(
    Metric, regex=_regexes, target=_targets
)
_checks = st.builds(
    Check,
    name=st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True),
    run=st.text(min_size=1, max_size=30).filter(str.strip).filter(lambda run: "\0" not in run),  # NUL: refused
    timeout_s=_floats | st.integers(1, 10**7).map(float),
    metric=st.none() | _metrics,
)
_contracts = st.builds(
    Contract,
    outcome=st.text(min_size=1, max_size=40).filter(str.strip),
    checks=st.lists(_checks, max_size=3, unique_by=lambda check: check.name),
    constraints=st.builds(Constraints, keep_green=st.lists(st.text(max_size=20).filter(lambda c: "\0" not in c),
                                                           max_size=2)),
    boundaries=st.builds(Boundaries, paths=st.lists(st.text(max_size=10), max_size=2),
                         protect=st.lists(st.text(max_size=10), max_size=2), network=st.booleans(),
                         sandbox=st.sampled_from(["read-only", "workspace-write", "danger-full-access"])),
    iteration=st.builds(IterationPolicy, policy=st.text(max_size=20), max_attempts=st.integers(1, 50),
                        no_progress_turns=st.integers(1, 50)),
    blocked_when=st.text(max_size=20),
    checklist=st.lists(st.text(min_size=1, max_size=20).filter(str.strip), max_size=3).map(tuple),
    budget=st.builds(Budget, tokens=st.none() | st.integers(1, 10**9), usd=st.none() | _floats,
                     time_s=st.none() | _floats | st.integers(1, 10**7).map(float),
                     turns=st.none() | st.integers(1, 1000)),
)


@settings(max_examples=60, deadline=None)
@given(_contracts)
def test_any_contract_survives_a_round_trip(
    tmp_path_factory: pytest.TempPathFactory, contract: Contract
) -> None:
    path = tmp_path_factory.mktemp("round") / "goal.toml"
    path.write_text(dump_contract(contract), encoding="utf-8")

    assert load_contract(path) == contract


# ---------------------------------------------------------------- metrics


@pytest.mark.parametrize(
    ("target", "meets", "misses", "better", "worse"),
    [
        ("< 120", 119.9, 120, 10, 20),
        ("<= 120", 120, 120.1, 10, 20),
        ("> 0.8", 0.81, 0.8, 0.9, 0.85),
        (">= 0.8", 0.8, 0.79, 0.9, 0.85),
        ("== 3", 3, 3.1, 3.2, 3.5),
    ],
)
def test_metric_target_compares_in_its_direction(
    target: str, meets: float, misses: float, better: float, worse: float
) -> None:
    metric = Metric(json_path="v", target=target)

    assert metric.met(meets)
    assert not metric.met(misses)
    assert metric.better(better, worse)
    assert not metric.better(worse, better)
    assert not metric.better(better, better)


def test_metric_exposes_its_target_parts() -> None:
    metric = Metric(regex=r"p95: (\d+)", target="<=120.5")

    assert (metric.op, metric.value, metric.lower_is_better) == ("<=", 120.5, True)
    assert not Metric(regex=r"(\d+)", target=">1").lower_is_better


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400), ("1h 30m", 5400),
     ("1.5h", 5400), ("2d", 172800), (" 45S ", 45), (12, 12), (2.5, 2.5)],
)
def test_durations_parse_to_seconds(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "5 parsecs", "-3", "h", True, float("nan")])
def test_bad_durations_show_valid_examples(text: str | float) -> None:
    with pytest.raises(ContractError) as caught:
        parse_duration(text)

    assert caught.value.hint is not None and '"1h30m"' in caught.value.hint


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5400, "1h 30m"), (720, "12m"), (45, "45s"), (0, "0s"), (90061, "1d 1h 1m 1s"), (2.5, "2.5s")],
)
def test_durations_format_for_people_and_read_back(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


def test_durations_hide_fractions_people_do_not_need() -> None:
    assert format_duration(3725.123) == "1h 2m 5s"
    assert format_duration(0.04321) == "0.0432s"


# ---------------------------------------------------------------- flags


def test_flags_build_checks_metrics_and_budget() -> None:
    contract = contract_from_flags(
        "make it fast",
        checks=["unit=pytest -q", "ruff check .", "pytest tests/slow"],
        metrics=["p95=python bench.py", "score=./score.sh"],
        targets=["p95 < 120", "score>=0.8"],
        json_paths=["p95=stats.p95"],
        regexes=["score=score: ([0-9.]+)"],
        keep_green=["mypy"],
        protect=["tests/**"],
        budget_tokens=1000,
        budget_usd=2.5,
        budget_time="1h30m",
        budget_turns=7,
        max_attempts=2,
        no_progress_turns=4,
    )

    assert [(check.name, check.run) for check in contract.checks] == [
        ("unit", "pytest -q"), ("ruff", "ruff check ."), ("pytest", "pytest tests/slow"),
        ("p95", "python bench.py"), ("score", "./score.sh"),
    ]
    assert contract.checks[3].metric == Metric(json_path="stats.p95", target="< 120")
    assert contract.checks[4].metric == Metric(regex="score: ([0-9.]+)", target=">= 0.8")
    assert contract.budget == Budget(tokens=1000, usd=2.5, time_s=5400, turns=7)
    assert (contract.iteration.max_attempts, contract.iteration.no_progress_turns) == (2, 4)
    assert contract.constraints.keep_green == ["mypy"]
    assert contract.boundaries.protect == ["tests/**"]


def test_unnamed_checks_are_named_after_their_command_and_made_unique() -> None:
    contract = contract_from_flags("x", checks=["pytest -q", "pytest tests/b", "./scripts/lint.sh --fix"])

    assert [check.name for check in contract.checks] == ["pytest", "pytest-2", "lint.sh"]


def test_derived_names_skip_names_already_taken() -> None:
    contract = contract_from_flags("x", checks=["pytest-2=echo named", "pytest -q", "pytest tests/c"])

    assert [check.name for check in contract.checks] == ["pytest-2", "pytest", "pytest-3"]


def test_flags_overlay_a_goal_file() -> None:
    base = Contract(
        outcome="from the file",
        checks=[Check(name="tests", run="pytest")],
        constraints=Constraints(keep_green=["ruff check ."]),
        budget=Budget(tokens=10, turns=3),
    )

    contract = contract_from_flags(
        None, base=base, checks=["pytest -x"], keep_green=["mypy"], budget_tokens=99
    )

    assert contract.outcome == "from the file"
    assert [check.name for check in contract.checks] == ["tests", "pytest"]
    assert contract.constraints.keep_green == ["ruff check .", "mypy"]
    assert contract.budget == Budget(tokens=99, turns=3)
    assert contract_from_flags("new words", base=base).outcome == "new words"


@pytest.mark.parametrize(
    ("flags", "names_flag", "example"),
    [
        ({"metrics": ["p95=python b.py"], "json_paths": ["p95=p95"]}, "--metric p95 has no target",
         "--target"),
        ({"metrics": ["p95=python b.py"], "targets": ["p95<1"]}, "--metric p95", "--json-path p95="),
        ({"metrics": ["p95=python b.py"], "targets": ["p59<1"], "json_paths": ["p95=p"]}, "--target",
         "--metric"),
        ({"metrics": ["p95=python b.py"], "targets": ["p95<1"], "regexes": ["p9=(x)"]}, "--regex",
         "--metric"),
        ({"metrics": ["p95=python b.py"], "targets": ["p95 about 1"], "json_paths": ["p95=p"]}, "--target",
         "p95<120"),
        ({"metrics": ["p95=python b.py"], "targets": ["p95<fast"], "json_paths": ["p95=p"]}, "--target",
         "p95<120"),
        ({"metrics": ["p95=python b.py"], "targets": ["p95<1"], "regexes": ["p95=(a)(b)"]}, "--regex",
         "--regex 'p95="),
        ({"metrics": ["python b.py"]}, "--metric", "--metric p95="),
        ({"checks": ["a=true", "a=false"]}, "--check", "--check a-2="),
        ({"budget_tokens": 0}, "--budget-tokens", "--budget-tokens 200000"),
        ({"budget_usd": -1.0}, "--budget-usd", "--budget-usd 5"),
        ({"budget_time": "soon"}, "--budget-time", "--budget-time 2h"),
        ({"max_attempts": 0}, "--max-attempts", "--max-attempts 3"),
    ],
)
def test_bad_flags_name_the_flag_and_show_an_example(
    flags: dict[str, Any], names_flag: str, example: str
) -> None:
    with pytest.raises(ContractError) as caught:
        contract_from_flags("x", **flags)

    assert names_flag in caught.value.message
    assert caught.value.hint is not None and example in caught.value.hint


def test_flags_without_an_objective_or_goal_file_are_refused() -> None:
    with pytest.raises(ContractError, match="no objective"):
        contract_from_flags(None, checks=["pytest"])
    with pytest.raises(ContractError, match="empty"):
        contract_from_flags("   ")


def test_summary_lines_show_checks_targets_and_budget(tmp_path: Path) -> None:
    lines = contract_summary_lines(load_contract(write_goal(tmp_path, FULL_EXAMPLE)))

    assert lines[0] == "goal: Make the test suite green"
    assert "check p95: python bench.py -> p95_ms < 120" in lines
    assert "keep green: ruff check ." in lines
    assert "budget: 200,000 tokens, $5.00, 2h, 40 turns" in lines
    assert len(lines) <= 8


# ---------------------------------------------------------------- checklist


def test_checklist_loads_in_order_and_blank_items_are_refused(tmp_path: Path) -> None:
    contract = load_contract(write_goal(tmp_path, 'outcome = "x"\nchecklist = ["first", "second"]\n'))
    assert contract.checklist == ("first", "second")
    error = load_error(tmp_path, 'outcome = "x"\nchecklist = ["first", "  "]\n')
    assert "checklist: item 2 is empty" in error and 'checklist = [' in error


def test_a_checklist_flag_replaces_the_goal_files_checklist(tmp_path: Path) -> None:
    base = load_contract(write_goal(tmp_path, 'outcome = "x"\nchecklist = ["old"]\n'))
    assert contract_from_flags("y", base=base, checklist=["a", "b"]).checklist == ("a", "b")
    assert contract_from_flags("y", base=base).checklist == ("old",)


def test_summary_lines_number_the_checklist() -> None:
    lines = contract_summary_lines(Contract(outcome="x", checklist=("read cart.py", "fix it")))
    assert lines[-3:] == ["checklist: 2 items, in order", "  1. read cart.py", "  2. fix it"]
    assert not any("checklist" in line for line in contract_summary_lines(Contract(outcome="x")))
