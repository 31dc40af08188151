"""Lint for a goal contract: what the contract alone says about the six elements and the budget.

Pure: it never runs a check, never reads a file and never prints (lint_run.py runs the checks once and adds
what only execution can tell). A strong goal names six things (DESIGN §1); each finding names the element
it is about and says exactly what to write, in goal.toml or as a flag.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from goalkeeper.errors import ContractError
from goalkeeper.sandbox.globs import path_matches
from goalkeeper.spec.contract import Contract

Severity = Literal["error", "warning", "info"]
Element = Literal["outcome", "verification", "constraints", "boundaries", "iteration", "blocked", "budget",
                  "context", "deliverables"]

#: The six elements of a goal and the budget, then the practitioner's template's other fields: what to read
#: first and what not to do (context), what must exist at the end and what the reviewer should know
#: (deliverables). In the order a report shows them.
ELEMENTS: tuple[Element, ...] = ("outcome", "verification", "constraints", "boundaries", "iteration", "blocked",
                                 "budget", "context", "deliverables")

#: What each score means.
SCORE_LABELS = {0: "missing", 1: "weak", 2: "strong"}

# Words that name a direction rather than a destination: "improve", "faster", "clean up".
_VAGUE = re.compile(
    r"\b(improv\w*|better|faster|quicker|speed(?:s|ing)?[ -]?up|optimi[sz]\w*|clean(?:s|ing)?[ -]?up|tid(?:y|ier)"
    r"|polish\w*|enhanc\w*|simplif\w*|moderni[sz]\w*|nicer|streamlin\w*|more (?:robust|efficient|readable|"
    r"maintainable|reliable))\b", re.IGNORECASE)
# Words about speed: only a metric with a target can tell when such a goal is done.
_PERFORMANCE = re.compile(
    r"\b(faster|quicker|speed\w*|perform(?:ance|ant)|latenc\w*|throughput|slow(?:er|ness)?|p50|p9[059])\b",
    re.IGNORECASE)
# What makes words checkable: a number, a `command`, or a condition a command can observe.
_CHECKABLE = re.compile(
    r"\d|`[^`]+`|\b(pass(?:es|ing)?|green|exits? (?:with )?(?:code )?0|returns?|no (?:errors?|warnings?|failures?|"
    r"findings?)|zero)\b", re.IGNORECASE)

#: Fewer words than this is a terse outcome: the model reads the outcome on every request.
TERSE_WORDS = 4

_BUDGET_FIX = '[budget] with tokens = 300000 and time = "2h" (or --budget-tokens 300000 --budget-time 2h)'


@dataclass(frozen=True)
class Finding:
    """One thing lint noticed about a contract: how bad, which element, and exactly how to fix it."""

    severity: Severity
    """error: the goal would not work as written (`gk goal` refuses it without --force); warning: it works,
    but worse than it could; info: a suggestion."""
    element: Element
    code: str
    """A short kebab-case id, stable across releases: tests and scripts match on it."""
    message: str
    """What is wrong, in words that name the check, glob or key."""
    fix: str
    """What to write instead: TOML or a flag."""

    def as_json(self) -> dict[str, str]:
        """The finding as a JSON object."""
        return {"severity": self.severity, "element": self.element, "code": self.code, "message": self.message,
                "fix": self.fix}


@dataclass(frozen=True)
class Score:
    """How well the contract names one element: 0 missing, 1 weak, 2 strong."""

    element: Element
    score: int
    note: str
    """What the contract has for this element, in a few words."""

    @property
    def label(self) -> str:
        """missing, weak or strong."""
        return SCORE_LABELS[self.score]


@dataclass(frozen=True)
class LintReport:
    """Every finding about a goal and the score of each element."""

    findings: tuple[Finding, ...]
    scores: tuple[Score, ...]
    ran: bool = False
    """Whether the checks and keep_green commands were run (not just read)."""
    notes: tuple[str, ...] = field(default=())
    """What the linter itself could not do (a check not finished in time), for a person."""
    pinned: tuple[str, ...] = field(default=())
    """The files the goal's verification surface pins at baseline (tests, test configs, files checks name)."""
    surface: dict[str, Any] | None = None
    """The verification surface the run observed (verify.observed.surface_summary): how many paths, which
    are notable, and whether it was observed or only inferred."""

    @property
    def errors(self) -> list[Finding]:
        """Findings that make the goal unfit to set: `gk lint` exits 1 and `gk goal` refuses (without --force)."""
        return [finding for finding in self.findings if finding.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        """Findings that weaken the goal without breaking it."""
        return [finding for finding in self.findings if finding.severity == "warning"]

    @property
    def total(self) -> int:
        """The sum of the scores, out of 14."""
        return sum(score.score for score in self.scores)

    def as_json(self) -> dict[str, Any]:
        """The report as JSON: findings, scores, and counts."""
        return {"ok": not self.errors, "ran": self.ran, "errors": len(self.errors), "warnings": len(self.warnings),
                "total": self.total, "out_of": 2 * len(ELEMENTS),
                "scores": {s.element: {"score": s.score, "label": s.label, "note": s.note} for s in self.scores},
                "findings": [finding.as_json() for finding in self.findings], "notes": list(self.notes),
                "pinned": list(self.pinned), "surface": self.surface}


class GoalLintError(ContractError):
    """The lint gate refused a goal; `report` holds every finding, for a face that shows them."""

    def __init__(self, report: LintReport) -> None:
        super().__init__("the goal has lint errors: " + "; ".join(f.message for f in report.errors),
                         "fix them (each finding says how; `gk lint` shows each element's score), or set it "
                         "anyway (--force; `force: true` over HTTP)")
        self.report = report


# ---------------------------------------------------------------- the outcome's words


def is_vague(outcome: str) -> bool:
    """Whether the outcome names a direction ("improve", "faster", "clean up") but nothing checkable."""
    return _VAGUE.search(outcome) is not None and _CHECKABLE.search(outcome) is None


def is_about_performance(outcome: str) -> bool:
    """Whether the outcome is about speed, which only a metric with a target can judge."""
    return _PERFORMANCE.search(outcome) is not None


# ---------------------------------------------------------------- the findings


def lint_contract(contract: Contract) -> list[Finding]:
    """Every finding that reading the contract alone can make, in element order."""
    return [*_outcome(contract), *_verification(contract), *_constraints(contract), *_boundaries(contract),
            *_iteration(contract), *_blocked(contract), *_budget(contract),
            *_context(contract), *_deliverables(contract)]


def _outcome(contract: Contract) -> list[Finding]:
    outcome = contract.outcome.strip()
    findings = []
    if is_vague(outcome):
        word = _VAGUE.search(outcome)
        assert word is not None  # is_vague found it
        severity: Severity = "warning" if contract.checks else "error"
        consequence = ("the checks decide when it is done, but the model reads these words on every turn"
                       if contract.checks else "nothing says when it is done, so the goal can run forever")
        findings.append(Finding(
            severity, "outcome", "vague-outcome",
            f"the outcome says {word.group(0)!r} with no number or checkable condition: {consequence}",
            'name the end state and how to observe it: outcome = "p95 of `python bench.py` under 120 ms" or '
            '"`python -m pytest -q` passes with no test skipped"'))
    elif len(outcome.split()) < TERSE_WORDS:
        findings.append(Finding(
            "info", "outcome", "terse-outcome", f"the outcome {outcome!r} is {len(outcome.split())} word(s)",
            'say what done looks like in a sentence: outcome = "Fix the discount bug so `python -m unittest` '
            'passes"'))
    return findings


def _verification(contract: Contract) -> list[Finding]:
    findings = []
    if not contract.checks:
        vague = is_vague(contract.outcome)
        findings.append(Finding(
            "error" if vague else "warning", "verification", "no-checks",
            "no checks: " + ("the outcome is not checkable either, so nothing can tell when it is done" if vague
                             else "an unverified goal, judged only by the model's own completion audit"),
            '[[checks]] name = "tests" run = "python -m pytest -q" (or --check tests="python -m pytest -q")'))
    if is_about_performance(contract.outcome) and not contract.metric_checks:
        findings.append(Finding(
            "error", "verification", "no-metric",
            "the outcome is about speed, but no check reads a metric with a target: exit codes cannot say "
            "\"fast enough\", so the goal would end at the wrong time or never",
            '[[checks]] name = "bench" run = "python bench.py" metric = { json_path = "p95_ms", target = "< 120" } '
            "(or --metric bench='python bench.py' --json-path bench=p95_ms --target 'bench<120')"))
    return findings


def _constraints(contract: Contract) -> list[Finding]:
    if contract.constraints.keep_green:
        return []
    return [Finding("info", "constraints", "no-constraints",
                     "no keep_green commands: nothing guards what already works against regressions",
                     '[constraints] keep_green = ["python -m pytest -q"] (or --keep-green "python -m pytest -q")')]


def _boundaries(contract: Contract) -> list[Finding]:
    boundaries = contract.boundaries
    findings = []
    for glob in boundaries.protect:
        if _covers(glob, ["x", "a/b/c.py", ".x/y"]):
            findings.append(Finding(
                "error", "boundaries", "protect-everything",
                f"protect glob {glob!r} covers the whole workspace, so the agent can change nothing",
                'protect only what must not change: protect = ["tests/**"]'))
    for path in boundaries.paths:
        covering = next((glob for glob in boundaries.protect if _covers(glob, _examples(path))), None)
        if covering is not None and not _covers(covering, ["x", "a/b/c.py", ".x/y"]):
            findings.append(Finding(
                "error", "boundaries", "path-protected",
                f"paths allows {path!r}, but protect glob {covering!r} covers all of it: protect wins, so "
                "nothing there can change",
                f"remove {path!r} from paths, or narrow protect so that it leaves part of {path!r} open"))
    if not boundaries.paths and not boundaries.protect:
        findings.append(Finding(
            "info", "boundaries", "no-boundaries",
            "neither paths nor protect is set: the agent may change any file, tests included",
            '[boundaries] protect = ["tests/**"] (or --protect "tests/**"), paths = ["src/**"] to confine edits'))
    return findings


def _iteration(contract: Contract) -> list[Finding]:
    if contract.iteration.policy.strip():
        return []
    iteration = contract.iteration
    return [Finding(
        "info", "iteration", "no-iteration-policy",
        f"no iteration policy: the model chooses its next step alone (limits: max_attempts {iteration.max_attempts}, "
        f"no_progress_turns {iteration.no_progress_turns})",
        '[iteration] policy = "reproduce first, then the smallest change that fixes one failure; re-run the check"')]


def _blocked(contract: Contract) -> list[Finding]:
    if contract.blocked_when.strip():
        return []
    return [Finding(
        "warning", "blocked", "no-blocked-condition",
        "no blocked_when: the model is not told when to stop and report, so it guesses",
        'blocked_when = "the fix needs a change outside the repository (a service, credentials, a schema)"')]


def _budget(contract: Contract) -> list[Finding]:
    budget = contract.budget
    if any(value is not None for value in (budget.tokens, budget.usd, budget.time_s, budget.turns)):
        return []
    return [Finding("warning", "budget", "no-budget",
                    "no budget: a goal that never converges spends until someone stops it", _BUDGET_FIX)]


def _context(contract: Contract) -> list[Finding]:
    if contract.read_first or contract.non_goals:
        return []
    return [Finding(
        "info", "context", "no-context",
        "no read_first and no non_goals: the model finds its bearings by exploring, and learns what is out of "
        "scope only from the boundaries",
        'read_first = ["README.md", "docs/ARCHITECTURE.md"] and non_goals = ["no new dependencies"]')]


def _deliverables(contract: Contract) -> list[Finding]:
    findings = []
    boundaries = contract.boundaries
    for artifact in contract.artifacts:
        examples = _examples(artifact.path)
        protected = next((glob for glob in boundaries.protect if _covers(glob, examples)), None)
        outside = boundaries.paths and not any(_covers(glob, examples) for glob in boundaries.paths)
        if protected or outside:
            why = f"protect glob `{protected}` covers it" if protected else "no `paths` glob covers it"
            findings.append(Finding(
                "error", "deliverables", "artifact-unwritable",
                f"artifact `{artifact.path}` can never be written: {why}, so the goal can never be achieved",
                f'add "{artifact.path}" to [boundaries] paths, or take it out of protect'))
    if not contract.artifacts and not contract.reviewer_notes.strip():
        findings.append(Finding(
            "info", "deliverables", "no-deliverables",
            "no artifacts and no reviewer_notes: a promised file (a report, a migration) is not checked",
            'artifacts = ["docs/MIGRATION.md"] and reviewer_notes = "what the reviewer should look at"'))
    return findings


# ---------------------------------------------------------------- globs against globs


def _covers(glob: str, paths: Iterable[str]) -> bool:
    """Whether `glob` covers every one of `paths`."""
    return all(path_matches(glob, path) for path in paths)


def _examples(glob: str) -> list[str]:
    """Concrete paths that `glob` covers, standing in for all of them: a protect glob that covers every
    example covers (for lint's purpose) the whole glob."""
    segments = [part for part in glob.strip().strip("/").split("/") if part]
    concrete = "/".join("a/b" if part == "**" else _concrete(part) for part in segments) or "x"
    examples = [concrete, f"{concrete}/x"]
    if "/" not in glob.strip().strip("/") and not glob.strip().startswith("/"):
        examples.append(f"d/{concrete}")  # an unanchored glob covers the name at any depth
    return examples


def _concrete(segment: str) -> str:
    """One name a glob segment matches: `*` and `?` become letters, a class its first member."""
    def member(match: re.Match[str]) -> str:
        body = match.group(1)
        return "z" if body.startswith("!") else body[0]
    return re.sub(r"\[([^\]]+)\]", member, segment.replace("*", "x").replace("?", "x"))


# ---------------------------------------------------------------- scores


def score_contract(contract: Contract, findings: Sequence[Finding]) -> tuple[Score, ...]:
    """Each element's score: 0 when the contract does not name it, 1 when it is named but a warning or error
    is about it, 2 when it is named and nothing worse than a note is."""
    troubled = {finding.element for finding in findings if finding.severity != "info"}
    present = _present(contract)
    scores = []
    for element in ELEMENTS:
        named, note = present[element]
        value = 0 if not named else 1 if element in troubled else 2
        if element == "outcome" and value == 2 and any(f.code == "terse-outcome" for f in findings):
            value = 1
        scores.append(Score(element, value, note))
    return tuple(scores)


def _present(contract: Contract) -> dict[Element, tuple[bool, str]]:
    """Whether the contract names each element, and what it has."""
    checks = contract.checks
    metrics = len(contract.metric_checks)
    boundaries = contract.boundaries
    budget = contract.budget
    limits = [name for name, value in (("tokens", budget.tokens), ("usd", budget.usd), ("time", budget.time_s),
                                       ("turns", budget.turns)) if value is not None]
    checks_note = f"{len(checks)} check(s)" + (f", {metrics} with a metric" if metrics else "") if checks else "none"
    bounds = [f"{len(boundaries.paths)} path glob(s)"] * bool(boundaries.paths)
    bounds += [f"{len(boundaries.protect)} protect glob(s)"] * bool(boundaries.protect)
    sandbox = f"{boundaries.sandbox}, network {'on' if boundaries.network else 'off'}"
    return {
        "outcome": (True, f"{len(contract.outcome.split())} words"),
        "verification": (bool(checks), checks_note),
        "constraints": (bool(contract.constraints.keep_green),
                        f"{len(contract.constraints.keep_green)} keep_green" if contract.constraints.keep_green
                        else "none"),
        "boundaries": (bool(bounds), ", ".join([*bounds, sandbox])),
        "iteration": (bool(contract.iteration.policy.strip()),
                      ("policy, " if contract.iteration.policy.strip() else "defaults: ")
                      + f"max_attempts {contract.iteration.max_attempts}, "
                      f"no_progress_turns {contract.iteration.no_progress_turns}"),
        "blocked": (bool(contract.blocked_when.strip()), "blocked_when" if contract.blocked_when.strip() else "none"),
        "budget": (bool(limits), ", ".join(limits) or "none"),
        "context": (bool(contract.read_first or contract.non_goals),
                    f"{len(contract.read_first)} read_first, {len(contract.non_goals)} non-goal(s)"),
        "deliverables": (bool(contract.artifacts or contract.reviewer_notes.strip()),
                         f"{len(contract.artifacts)} artifact(s)"
                         + (", reviewer notes" if contract.reviewer_notes.strip() else "")),
    }


def lint_report(contract: Contract, findings: Sequence[Finding] = (), ran: bool = False,
                notes: Sequence[str] = (), pinned: Sequence[str] = (),
                surface: dict[str, Any] | None = None) -> LintReport:
    """The report for `contract`: the pure findings, then `findings` (from running the checks), and scores."""
    every = [*lint_contract(contract), *findings]
    order = {element: index for index, element in enumerate(ELEMENTS)}
    every.sort(key=lambda finding: order[finding.element])  # stable: within an element, pure findings first
    return LintReport(tuple(every), score_contract(contract, every), ran=ran, notes=tuple(notes),
                      pinned=tuple(pinned), surface=surface)
