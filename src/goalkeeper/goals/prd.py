"""The PRD loop: a finished goal is a spike; `distill` turns it into PRD.md and `implement` re-does it cleanly.

distill asks the goal's model, in one request with no tools, to write the PRD from the goal's diff,
checkpoints and evidence; the harness then appends the facts it knows for certain (the checks, the final
evidence, the spike's branch and base commit). implement reads those facts back and starts a fresh goal
with the same checks on a new branch made from the spike's base commit, so none of the spike's changes
come along. Neither one charges a goal's budget.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tomli_w

from goalkeeper.context.prompts import as_data, render
from goalkeeper.contract.toml import dump_contract, parse_contract
from goalkeeper.errors import ConfigError, ContractError, GoalkeeperError, GoalNotFoundError, WorkspaceError
from goalkeeper.events import DistilledEvent, GoalBranchEvent, ImplementsEvent
from goalkeeper.events import Usage as UsageRecord
from goalkeeper.goals import control
from goalkeeper.goals.report import build_report, evidence_table, render_markdown
from goalkeeper.goals.views import goal_events
from goalkeeper.models.base import Message, Usage
from goalkeeper.sessions.session import open_session, run_session
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import GoalSettings, ModelSettings
from goalkeeper.store import Goal, Store
from goalkeeper.tools.registry import ToolRegistry
from goalkeeper.workspace import checkpoints
from goalkeeper.workspace.git import GoalBranch, changes, commit_of, list_paths, start_goal, toplevel
from goalkeeper.workspace.goal import branch_of

DISTILLABLE = ("achieved", "unmet", "budget_limited")
"""A goal that has stopped for good; a pursuing or paused one is still being worked on."""
SECTIONS = ("Approach", "Why it works", "Trade-offs", "Constraints", "Needs cleanup", "Verification surface")
"""The PRD's sections, in order; the model writes them, the harness adds any it left out."""
FACTS_HEADING = "## Facts recorded by goalkeeper"
FACTS_MARK = "# goalkeeper facts: gk implement reads this block; edit the checks here, keep [spike] as written"
DIFF_CHARS = 60_000
"""The most diff characters the distill request carries (head and tail kept)."""
PRD_SUBJECT = "goalkeeper: the PRD this goal implements"

_FACTS_BLOCK = re.compile(r"```toml\n(" + re.escape(FACTS_MARK) + r"\n.*?)```", re.DOTALL)
_SPIKE_KEYS = ("goal_id", "branch", "base_commit", "status")


@dataclass(frozen=True)
class SpikeFacts:
    """What a PRD's facts block says about the spike it was distilled from."""

    goal_id: str
    branch: str
    base_commit: str
    status: str
    contract: Contract
    """The spike's contract: implement keeps its checks, constraints, boundaries, iteration and budget."""


@dataclass(frozen=True)
class Distilled:
    """A written PRD and what writing it cost."""

    path: Path
    text: str
    goal_id: str
    seq: int
    """The `distilled` event's seq."""
    usage: Usage
    model: str

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"path": str(self.path), "goal_id": self.goal_id, "seq": self.seq,
                "usage": UsageRecord.of(self.usage).model_dump(), "model": self.model}


@dataclass(frozen=True)
class Implementation:
    """A fresh goal set from a PRD, on its own branch from the spike's base commit."""

    goal: Goal
    branch: GoalBranch
    spike: SpikeFacts
    model: ModelSettings | None


# ---------------------------------------------------------------- distill


def finished_goal(store: Store, workspace: Path, goal_id: str | None, thread_id: str | None) -> Goal:
    """The goal to distill: the one named, or the workspace's current one; it must have stopped for good."""
    goal = store.get_goal_by_id(goal_id) if goal_id else store.current_goal(workspace, thread_id)
    status = goal.state.status
    if status not in DISTILLABLE:
        raise ConfigError(f"goal {goal.goal_id} is {status}: only a finished goal (achieved, unmet or "
                          "budget_limited) can be distilled",
                          "let it finish (gk run), or distill another with --goal ID")
    return goal


def distill(store: Store, workspace: Path, output: Path, *, goal_id: str | None = None, thread_id: str | None = None,
            force: bool = False, model: ModelSettings | None = None,
            on_text: Callable[[str], None] | None = None) -> Distilled:
    """Write PRD.md for a finished goal: the model's sections, then the harness's facts. Stores `distilled`."""
    if output.exists() and not force:
        raise ConfigError(f"{output} already exists", "pass --force to overwrite it, or --output another path")
    goal = finished_goal(store, workspace, goal_id, thread_id)
    branch = branch_of(goal_events(store, goal, [GoalBranchEvent]))
    if branch is None:
        raise WorkspaceError(f"goal {goal.goal_id} never ran, so it has no branch to distill", "run it first")
    where = Path(store.get_thread(goal.thread_id).workspace)
    report = build_report(store, goal)
    settings = goal.settings
    prompt = render("distill", objective=as_data(report["objective"]), report=as_data(render_markdown(report)),
                    diff=as_data(_clip(checkpoints.diff(where, branch))), sections=_section_list())
    opened = open_session(store, where, ToolRegistry([]), settings, model=model, on_text=on_text)
    session, written = run_session(opened, lambda session: session.request([Message("user", prompt)], ()))
    text = prd_text(written.content, report, goal.contract, branch)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    distilled = DistilledEvent(output=str(output), usage=UsageRecord.of(session.usage), model=session.model_name,
                               branch=branch.name, base_commit=branch.base_commit, charged_to_goal=False)
    [record] = store.append_events(goal.thread_id, [distilled], goal_id=goal.goal_id)
    return Distilled(output, text, goal.goal_id, record.seq, session.usage, session.model_name)


def _clip(diff: str) -> str:
    if len(diff) <= DIFF_CHARS:
        return diff or "(the goal changed no file)"
    half = DIFF_CHARS // 2
    return f"{diff[:half]}\n[... {len(diff) - DIFF_CHARS:,} characters of the diff cut ...]\n{diff[-half:]}"


def _section_list() -> str:
    return "\n".join(f"## {name}" for name in SECTIONS)


def prd_text(written: str, report: dict[str, Any], contract: Contract, branch: GoalBranch) -> str:
    """The model's PRD (a title and any missing section added), then the facts section the harness knows."""
    body = _unfenced(written).strip()
    if not body.startswith("# "):
        body = f"# PRD: {report['objective'].strip().splitlines()[0]}\n\n{body}"
    present = {line[3:].strip().lower() for line in body.splitlines() if line.startswith("## ")}
    missing = [name for name in SECTIONS if name.lower() not in present]
    body += "".join(f"\n\n## {name}\n\n(The model did not write this section.)" for name in missing)
    return f"{body}\n\n{facts_section(report, contract, branch)}\n"


def _unfenced(text: str) -> str:
    """The text without the ```markdown fence a model sometimes wraps a whole document in."""
    stripped = text.strip()
    match = re.fullmatch(r"```(?:markdown|md)?\n(.*)\n```", stripped, re.DOTALL)
    return match.group(1) if match else stripped


def facts_section(report: dict[str, Any], contract: Contract, branch: GoalBranch) -> str:
    """What the harness knows for certain, with a TOML block `gk implement` reads back."""
    spike = {"goal_id": report["goal_id"], "branch": branch.name, "base_commit": branch.base_commit,
             "status": report["status"], "reason": report["reason"]}
    checks = "\n".join(f"- `{c.name}`: `{c.run}`" + (f" (metric target {c.metric.target})" if c.metric else "")
                       for c in contract.checks) or "- (none: the spike was an unverified goal)"
    kept = contract.model_copy(update={"checklist": ()})
    return "\n".join([
        FACTS_HEADING, "",
        f"- spike: goal `{report['goal_id']}` on branch `{branch.name}`, from base commit `{branch.base_commit}`",
        f"- final status: {report['status']} (`{report['reason']}`: {report['reason_text']})", "",
        "### Checks", "", checks, "", "### Final evidence", "", evidence_table(report["baseline"], report["final"]), "",
        "### For gk implement", "",
        "`gk implement` starts a fresh goal from the base commit with this PRD as its objective and this contract.",
        "", "```toml", FACTS_MARK, dump_contract(kept).rstrip(), "", tomli_w.dumps({"spike": spike}).rstrip(), "```"])


# ---------------------------------------------------------------- implement


def read_prd(path: Path) -> tuple[str, SpikeFacts]:
    """The PRD's text before its facts section (the new goal's objective) and the facts; one clear error if not."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}", "pass the PRD.md that `gk distill` wrote") from None
    found = _FACTS_BLOCK.search(text)
    if found is None or FACTS_HEADING not in text:
        raise ContractError(f"{path} has no goalkeeper facts block (`{FACTS_HEADING}` with its ```toml block)",
                            "write the PRD with `gk distill`, or restore that section as it wrote it")
    try:
        data = tomllib.loads(found.group(1))
        dumped = tomli_w.dumps({key: value for key, value in data.items() if key != "spike"})
    except (tomllib.TOMLDecodeError, RecursionError) as error:  # RecursionError: nested hundreds of levels down
        why = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise ContractError(f"{path}: the facts block is not valid TOML ({why})",
                            "undo the edit to the ```toml block, or distill again") from None
    spike = data.pop("spike", None)
    bad = [key for key in _SPIKE_KEYS if not isinstance((spike or {}).get(key), str) or not spike[key].strip()]
    if bad:
        raise ContractError(f"{path}: the facts block's [spike] table lacks {', '.join(bad)}",
                            "restore [spike] as `gk distill` wrote it (goal_id, branch, base_commit, status)")
    contract = parse_contract(dumped, source=f"{path} (facts block)")
    body = text[:text.index(FACTS_HEADING)].strip()
    facts = SpikeFacts(spike["goal_id"], spike["branch"], spike["base_commit"], spike["status"], contract)
    return body or contract.outcome, facts


def implement(store: Store, workspace: Path, prd: Path, *, model: ModelSettings | None = None) -> Implementation:
    """Set a fresh goal from a PRD, on a new branch from the spike's base commit, in a new thread.

    The objective is the PRD (as data, like every objective); the checks, constraints, boundaries, iteration
    policy and budget are the spike's. An untracked PRD inside the workspace is committed as the new branch's
    first commit (its snapshot), so the work starts from a clean tree and diffs start after it.
    """
    body, spike = read_prd(prd)
    top = toplevel(workspace)
    base = commit_of(top, spike.base_commit)
    prd_path = _inside(top, prd)
    pending = changes(top)
    others = [c.path for c in pending if c.path != prd_path or c.status != "??"]
    if others:
        raise WorkspaceError(f"the working tree of {top} has uncommitted changes:\n{list_paths(others)}",
                             "commit or stash them first: implement switches to the spike's base commit")
    spike_goal = _stored_goal(store, spike.goal_id)
    settings = spike_goal.settings if spike_goal else GoalSettings()
    chosen = model or settings.model
    contract = spike.contract.model_copy(update={"outcome": body, "checklist": ()})
    thread = store.create_thread(top)
    record = control.set_goal(store, top, contract, GoalSettings(model=chosen, run=settings.run),
                              thread_id=thread.thread_id)
    try:
        branch = start_goal(top, record.goal_id, f"implement {_title(body)}", allow_dirty=bool(pending), base=base,
                            snapshot_subject=PRD_SUBJECT)
    except GoalkeeperError:
        store.delete_goal(record.goal_id, control.clear_events("implement could not make its branch", "harness"))
        raise
    implements = ImplementsEvent(spike_goal_id=spike.goal_id, spike_branch=spike.branch, base_commit=base,
                                 prd=prd_path or str(prd.resolve()), spike_status=spike.status)
    opened = GoalBranchEvent(**asdict(branch), notice=None)
    store.append_events(thread.thread_id, [opened, implements], goal_id=record.goal_id)
    return Implementation(store.get_goal_by_id(record.goal_id), branch, spike, chosen)


def _inside(top: Path, path: Path) -> str | None:
    """`path` relative to the repository top-level, `/`-separated, or None when it lies outside."""
    try:
        return path.resolve().relative_to(top.resolve()).as_posix()
    except ValueError:
        return None


def _stored_goal(store: Store, goal_id: str) -> Goal | None:
    try:
        return store.get_goal_by_id(goal_id)
    except GoalNotFoundError:
        return None  # a PRD carried to another machine: its facts are enough


def _title(body: str) -> str:
    heading = next((line.lstrip("#").strip() for line in body.splitlines() if line.startswith("# ")), "")
    return heading.removeprefix("PRD:").strip() or "prd"
