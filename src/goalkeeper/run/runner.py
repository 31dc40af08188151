"""Drives one goal: baseline, then turns and check runs as `decide` directs, until the goal stops.

The runner is where effects happen (model requests, tool runs, store writes); `decide` chooses them.
Every decision's events and the new state are committed in one transaction before acting on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from goalkeeper.config import Config, GoalSettings, load_config
from goalkeeper.config.trust import HARNESS_PROTECT
from goalkeeper.context.handoff import Facts, facts_from
from goalkeeper.context.history import Conversation
from goalkeeper.context.prompts import render
from goalkeeper.context.render import contract_block, evidence_digest, evidence_lines, opening_message
from goalkeeper.context.tokens import auto_compact_limit, counter_for
from goalkeeper.contract import Contract
from goalkeeper.core.decide import begin, decide, outcome_of, time_deadline, with_baseline
from goalkeeper.core.lifecycle import Status, TurnKind
from goalkeeper.core.outcomes import (
    Action,
    CheckResult,
    ChecksRan,
    Decision,
    GoalCleared,
    Interrupted,
    Outcome,
    Proceed,
    RequestDue,
    RunChecks,
    StartTurn,
    Stop,
    Wait,
)
from goalkeeper.core.state import request_of, state_to_dict
from goalkeeper.errors import (
    ContractError,
    GoalkeeperError,
    LeaseHeldError,
)
from goalkeeper.events import (
    ApprovalRuleEvent,
    BaselineEvent,
    BaselineMirrorEvent,
    CheckpointEvent,
    Event,
    Evidence,
    EvidenceEvent,
    GoalBranchEvent,
    MessageEvent,
    NudgeEvent,
    RecoveryCheckpointEvent,
    SandboxEvent,
    VerificationPinsEvent,
    VerificationSurfaceEvent,
)
from goalkeeper.goals.control import load_state
from goalkeeper.models.base import Model, ModelRequest, ModelResponse, ToolCall
from goalkeeper.models.pricing import cost_usd, price_of
from goalkeeper.run.compaction import compact, compaction_due
from goalkeeper.run.inbox import applied_marker, pending_requests
from goalkeeper.run.sampling import request_due, sample
from goalkeeper.run.turn import INTERRUPTED, run_turn
from goalkeeper.sandbox import limits as process_limits
from goalkeeper.sandbox.bwrap import require_sandbox
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.store import EventRecord, GoalRecord, StaleGoalError, Store
from goalkeeper.tools.base import ToolContext, ToolResult
from goalkeeper.tools.registry import Approver, ToolRegistry, default_registry
from goalkeeper.verify.checks import run_checks
from goalkeeper.verify.cleanroom import Baseline, baseline_of, keep_baseline
from goalkeeper.verify.observed import Surface, surface_summary, traced_surface
from goalkeeper.verify.pins import Pins, pin_verification_surface
from goalkeeper.verify.surface import verify_goal
from goalkeeper.verify.trace import Tracer, tracer_problem
from goalkeeper.workspace.checkpoints import Violation
from goalkeeper.workspace.git import GoalBranch
from goalkeeper.workspace.goal import commit_turn, measured_trees, open_branch, violations_notice
from goalkeeper.workspace.tree import tree_hash

#: How often a running tool call looks at signals and the clock, and how often at the store's control requests.
WATCH_S, STORE_POLL_S = 0.1, 0.5


@dataclass(frozen=True)
class RunResult:
    """How a run ended. `status` is None when the goal was cleared while running."""

    goal_id: str
    status: Status | None
    reason: str


class GoalGone(GoalkeeperError):
    """The goal was cleared or replaced while this runner drove it."""


class Runner:
    """One goal, one process, one lease.

    `on_event` sees every committed event; `on_text` the model's text as it streams. With an `approver` a
    person answers the commands the rules ask about (else they are denied: the run is headless).
    `handle_signals=False` leaves Ctrl-C and SIGTERM to the caller (a TUI owns its keys).
    """

    def __init__(self, store: Store, goal: GoalRecord, model: Model, workspace: Path,
                 on_event: Callable[[EventRecord], None] | None = None, *,
                 on_text: Callable[[str], None] | None = None, approver: Approver | None = None,
                 handle_signals: bool = True) -> None:
        self.store, self.goal, self.model, self.workspace = store, goal, model, workspace
        self.contract = Contract.model_validate(goal.contract)
        self.settings = GoalSettings.model_validate(goal.settings)
        self.state, self.version = load_state(goal), goal.version
        stored = self.settings.model
        # The price is fixed when the goal is set; goals stored before prices were kept look it up.
        self.unit_price = stored.price if stored is not None and stored.price is not None else price_of(model.name)
        self.counter = counter_for(stored.model if stored else model.name, stored.wire_api if stored else "chat")
        self.compact_limit = auto_compact_limit(stored)
        self.tools: ToolRegistry = default_registry().with_approvals(approver=approver)
        self.on_event, self.on_text, self.approver = on_event, on_text, approver
        self.handle_signals = handle_signals
        self.evidence: list[Evidence] = []
        self.baseline_evidence: list[Evidence] = []
        """The baseline run's evidence: each check's tests are judged against it (verify/tests.py)."""
        self.keep_green: list[str] | None = None
        self.why = ""
        boundaries = self.contract.boundaries
        # The harness's own folder is protected whatever the contract says; config.toml's secrets join in _start.
        self.sandbox = SandboxPolicy(boundaries.sandbox, workspace, (*HARNESS_PROTECT, *boundaries.protect),
                                     tuple(boundaries.paths), network=boundaries.network)
        self.env = Config().command_env(os.environ, self._key_env())
        self.branch: GoalBranch | None = None
        self.pins: Pins | None = None
        self.mirror: BaselineMirrorEvent | None = None
        """The `baseline_mirror` event's payload: the baseline mirror and the environment snapshot."""
        self.surface: Surface | None = None
        """The verification surface observed at baseline (None for goals stored before it was recorded)."""
        self.notice = ""
        """Something the harness must tell the model in the next opening message (reverted edits, recovery)."""
        self._clock = (time.monotonic(), self.state.spent.time_s)
        self._interrupted = False
        self._lease_lost = False
        history = store.events(goal.thread_id, goal_id=goal.goal_id)
        self.conversation = Conversation(render("system"), contract_block(self.contract), self.counter)
        for record in history:
            self._absorb(record)

    async def run(self) -> RunResult:
        """Drive the goal until it stops; Ctrl-C / SIGTERM pause it at the next boundary."""
        self.store.acquire_lease(self.goal.goal_id)
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            with _signals_call(self.interrupt) if self.handle_signals else contextlib.nullcontext():
                action = await self._start()
                while isinstance(action, StartTurn | RunChecks):
                    action = await run_turn(self) if isinstance(action, StartTurn) else await self.verify()
            return RunResult(self.goal.goal_id, self.state.status, self.state.reason.value)
        except GoalGone as gone:
            return RunResult(self.goal.goal_id, None, gone.message)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(GoalkeeperError):
                self.store.release_lease(self.goal.goal_id)
            await self.model.aclose()

    async def _start(self) -> Action:
        """Apply queued controls, run the baseline once, then pick up wherever the store says we were."""
        if (control := self.poll_controls()) is not None:
            return control
        if self.state.status != "pursuing":
            return Stop(self.state.status, self.state.reason)
        require_sandbox(self.sandbox)  # refuses to start rather than run unconfined
        # Said out loud on every run: how the commands are confined, including what could not be bounded.
        limit = process_limits.describe() if self.sandbox.mode != "danger-full-access" else "unconfined"
        self.record([SandboxEvent(mode=self.sandbox.mode, network=self.sandbox.network, processes=limit)])
        await self._open_branch()
        await self._keep_baseline()
        await self._pin_surface()
        config = self._configure()
        self.tools = self.tools.with_approvals(rules=config.rules, approval_policy=config.approval_policy,
                                               goal_branch=self.branch.name if self.branch else None)
        if self.keep_green is None:
            await self.baseline()
        turn = self.conversation.turn
        if turn.pending_checks:
            return RunChecks(turn.pending_checks)
        if not turn.ended:
            return StartTurn(turn.kind)
        return self._commit(begin(self.state)).action

    def _configure(self) -> Config:
        """config.toml as committed at the goal's base (its snapshot with --allow-dirty), never the goal branch,
        which the model writes; its secrets join the sandbox and the environment filter."""
        branch = self.branch
        config = load_config(self.workspace, commit=branch.snapshot_commit or branch.base_commit if branch else "HEAD")
        self.sandbox = replace(self.sandbox, secrets=config.secrets, secret_env=config.secret_env)
        self.env = config.command_env(os.environ, self._key_env())
        return config

    def _key_env(self) -> str | None:
        """The variable the goal's model reads its API key from (`--api-key-env BARS_KEY`), if any."""
        return self.settings.model.api_key_env if self.settings.model is not None else None

    async def _open_branch(self) -> None:
        """Create the goal branch on the first run; later, check it out and commit what a crash left."""
        turn = self.conversation.turn
        interrupted = turn.number if turn.number and not turn.ended else None
        boundaries = self.contract.boundaries
        opened = await asyncio.to_thread(open_branch, self.workspace, self.goal.goal_id, self.contract.outcome,
                                         self.branch, self.settings.allow_dirty, interrupted,
                                         list(self.sandbox.protect), list(boundaries.paths),
                                         boundaries.max_file_bytes)
        if opened is not None:
            self.record([opened])

    async def _keep_baseline(self) -> None:
        """Before anything of the model's runs: the baseline mirror and environment snapshot; found again later."""
        if self.branch is None:
            return
        commit = self.branch.snapshot_commit or self.branch.base_commit
        kept = await asyncio.to_thread(keep_baseline, self.workspace, self.goal.goal_id, commit, self.mirror)
        self.record([kept])

    def baseline_source(self) -> Baseline | None:
        """What the clean room is built from (None before the goal's branch and mirror exist)."""
        return None if self.mirror is None else baseline_of(self.mirror, self.goal.goal_id)

    async def _pin_surface(self) -> None:
        """Pin the verification surface once, before the baseline; in deny mode its files become read-only."""
        if self.pins is None:
            pins = await asyncio.to_thread(pin_verification_surface, self.workspace, self.contract,
                                           self.contract.verify.pins)
            self.record([VerificationPinsEvent(pins=pins.to_json(), edits=self.contract.verify.edits,
                                               files=sorted(pins.paths))])
        if self.contract.verify.edits == "deny" and self.pins is not None:
            self.sandbox = replace(self.sandbox, protect=(*self.sandbox.protect, *sorted(self.pins.paths)))

    async def commit_checkpoint(self, turn: int, message: str) -> dict[str, Any]:
        """The turn's checkpoint commit on the goal branch; boundary violations are reverted first."""
        if self.branch is None:
            return {}
        # The Checks trailer states the result for the tree being committed, or `unmeasured`: never the last run's
        tree = await self.tree_hash()
        runs = self.store.events(self.goal.thread_id, goal_id=self.goal.goal_id, kinds=[BaselineEvent, EvidenceEvent])
        passing = measured_trees(runs).get(tree) if tree else None
        boundaries = self.contract.boundaries
        return await asyncio.to_thread(commit_turn, self.workspace, self.branch, self.goal.goal_id, turn,
                                       passing, len(self.contract.checks), message,
                                       list(self.sandbox.protect), list(boundaries.paths), boundaries.max_file_bytes)

    async def baseline(self) -> None:
        """Run every check and keep_green command once before the first turn, under the tracer when it works
        here (that one run is also the observation of the verification surface); red constraints are dropped."""
        problem = await asyncio.to_thread(tracer_problem, self.sandbox)
        tracer = Tracer() if problem is None else None
        try:
            evidence = await run_checks(self.contract, self.workspace, sandbox=self.sandbox, env=self.env,
                                        tracer=tracer)
            surface = await asyncio.to_thread(traced_surface, tracer, problem, self.workspace,
                                              self.pins or Pins((), ()))
        finally:
            if tracer is not None:
                tracer.close()
        missing = [e for e in evidence if e.is_check and e.exit_code == 127]
        if missing:
            raise ContractError(f"check `{missing[0].name}` cannot run: {missing[0].error or 'command not found'}",
                                "fix its `run` command (or install the tool), then `gk goal ... --replace`")
        active = [e.name for e in evidence if not e.is_check and e.passed]
        dropped = [e.name for e in evidence if not e.is_check and not e.passed]
        tree = await self.tree_hash()
        state = with_baseline(self.state, _results(evidence, self.contract), tree)
        kept = BaselineEvent(evidence=evidence, keep_green_active=active, keep_green_dropped=dropped, tree_hash=tree)
        observed = VerificationSurfaceEvent(surface=surface.to_json(), summary=surface_summary(surface))
        self._commit(Decision(state, Wait()), [kept, observed])

    async def verify(self) -> Action:
        """Run the checks (and the constraints green at baseline) and let `decide` judge them."""
        trigger = self.conversation.turn.pending_checks or "completion"
        surface: dict[str, Any] | None = None
        base = self.baseline_source()
        if self.pins is not None and base is not None:
            evidence, surface = await verify_goal(self.workspace, base, self.pins, self.contract, self.keep_green,
                                                  self.sandbox, self.env, self.surface, self.baseline_evidence)
        else:
            evidence = await run_checks(self.contract, self.workspace, keep_green=self.keep_green,
                                        sandbox=self.sandbox, env=self.env, baseline=self.baseline_evidence)
        ran = ChecksRan(self.goal.goal_id, trigger, _results(evidence, self.contract),
                        turn=self.state.spent.turns, tree_hash=await self.tree_hash())
        # The tree measured: its checkpoint's value.
        run = EvidenceEvent(trigger=trigger, turn=ran.turn, evidence=evidence, surface=surface, tree_hash=ran.tree_hash)
        return self.steer(ran, [run]).action

    # ---- what a turn needs (turn.TurnHost)

    def steer(self, outcome: Outcome, extra: list[Event] | None = None) -> Decision:
        """Decide on `outcome` and commit the decision (with `extra` events) before anything acts on it."""
        decision = decide(self.state, outcome)
        if not extra and not decision.events and isinstance(decision.action, Proceed):
            # Nothing to record: only the clock moved. Kept in memory; the next commit persists it.
            self.state = decision.state
            return decision
        return self._commit(decision, extra)

    def record(self, events: list[Event]) -> None:
        """Commit events that change no state (intents, results, messages)."""
        self._commit(None, events)

    def elapsed(self) -> float:
        """The goal's active seconds, across every run of it."""
        started, base = self._clock
        return base + time.monotonic() - started

    def poll_controls(self) -> Action | None:
        """Apply queued pauses, clears and budget raises; an action means the turn must stop here."""
        if self._lease_lost:
            raise GoalGone("another runner took over this goal's lease")
        if self._interrupted:
            self._interrupted = False
            return self.steer(Interrupted()).action
        for seq, request in pending_requests(self.store, self.goal.goal_id, self.goal.thread_id):
            outcome = outcome_of(request_of(request))
            decision = decide(self.state, outcome)
            applied = applied_marker(seq, decision)  # a refusal is recorded there, for the person
            if isinstance(outcome, GoalCleared):
                self.store.delete_goal(self.goal.goal_id, [applied, *decision.events])
                raise GoalGone("the goal was cleared while running")
            decision = self._commit(decision, [applied])
            if isinstance(decision.action, Stop):
                return decision.action
        return None

    def opening(self, kind: TurnKind) -> dict[str, Any]:
        """The hidden message that opens a turn (with any harness notice in front), and the evidence it shows."""
        text = opening_message(kind, self.state, self.evidence, self.conversation.shown, why=self.why)
        shows_evidence = kind in ("continuation", "audit_feedback", "nudge")
        return {"content": f"Harness notice:{self.notice}\n\n{text}" if self.notice else text,
                "evidence_shown": self.evidence_shown() if shows_evidence else self.conversation.shown}

    async def compact_if_due(self, tools: ToolRegistry) -> Action | None:
        """Compact the context when the next request would reach the limit (compaction.py)."""
        tokens = compaction_due(self, tools)
        return None if tokens is None else await compact(self, tools, tokens)

    def facts(self) -> Facts:
        """What the store says for certain about this goal, for a compaction's hand-off."""
        return facts_from(self.store.events(self.goal.thread_id, goal_id=self.goal.goal_id))

    def evidence_text(self) -> str:
        """The latest evidence, one line per check."""
        return evidence_lines(self.evidence)

    def evidence_shown(self) -> dict[str, list[object]]:
        """The latest evidence as a continuation compares it."""
        return evidence_digest(self.evidence)

    def request_due(self, tools: ToolRegistry) -> RequestDue:
        """The next request, priced as if nothing were cached (sampling.py)."""
        return request_due(self, tools.specs)

    async def sample(self, request: ModelRequest, deadline_s: float | None = None) -> ModelResponse | Action:
        """One model request with retries; provider failures pause the goal (sampling.py)."""
        return await sample(self, request, deadline_s)

    async def call_tool(self, call: ToolCall, tools: ToolRegistry) -> ToolResult:
        """Run one tool call of `tools` in the workspace, cut short by a pause, Ctrl-C, SIGTERM, a clear or the
        time limit; when its output was cut, the full text goes to the store under the id the cut's marker
        names (`blob_id_of`), so `read_output` can page through it."""
        task = asyncio.create_task(tools.execute(call, self._tool_context()))
        why = await self._watch(task)
        if why is not None:
            task.cancel()  # run_command kills the call's whole process group when cancelled
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return ToolResult(f"{INTERRUPTED}: {why} while this call ran, so it was stopped and its processes "
                              "killed; it may have partly run. Inspect the workspace before repeating it.",
                              ok=False, interrupted=why)
        result = task.result()
        if result.approval is not None:
            self.record(result.approval.events(call.id, self.goal.goal_id))
        if result.full_output is not None:
            blob = self.store.put_blob(result.full_output)
            result = replace(result, full_output=None, blob_id=blob)
        return result

    async def tree_hash(self) -> str | None:
        """The working tree's content hash (off the event loop: it can take a while on big trees)."""
        return await asyncio.to_thread(tree_hash, self.workspace)

    def known_tree_hash(self) -> str | None:
        """The tree hash as of the last time it was computed."""
        return self.state.tree_hash

    def price(self, response: ModelResponse) -> float:
        """USD for one response."""
        return cost_usd(self.unit_price, response.usage)

    # ---- plumbing

    def _commit(self, decision: Decision | None, extra: list[Event] | None = None) -> Decision:
        events = [*(extra or []), *(decision.events if decision else [])]
        state = state_to_dict(decision.state) if decision else None
        try:
            version, records = self.store.commit(self.goal.goal_id, events, state=state,
                                                 expected_version=self.version if decision else None)
        except StaleGoalError as stale:
            raise GoalGone("the goal was cleared, replaced or changed by another process") from stale
        if decision is not None:
            self.state, self.version = decision.state, version
        for record in records:
            self._absorb(record)
            if self.on_event is not None:
                self.on_event(record)
        return decision or Decision(self.state, Wait())

    def _absorb(self, record: EventRecord) -> None:
        """Keep the in-memory views (conversation, latest evidence, keep_green) in step with the store."""
        self.conversation.apply(record)
        event = record.event
        if isinstance(event, (EvidenceEvent, BaselineEvent)):
            self.evidence = list(event.evidence)
        match event:
            case BaselineEvent():
                self.keep_green = list(event.keep_green_active)
                self.baseline_evidence = list(self.evidence)
            case NudgeEvent():
                self.why = event.why
            case BaselineMirrorEvent():
                self.mirror = event
            case VerificationPinsEvent():
                self.pins = Pins.from_json(event.pins)
            case VerificationSurfaceEvent():
                self.surface = Surface.from_json(event.surface)
            case GoalBranchEvent():
                self.branch = GoalBranch(event.name, event.base_commit, event.snapshot_commit)
            case CheckpointEvent():
                violations = [Violation(**v) for v in event.violations or []]
                self.notice += (" " + event.notice if event.notice else "") + violations_notice(violations)
            case RecoveryCheckpointEvent():
                self.notice += " " + event.notice if event.notice else ""
            case MessageEvent():
                self.notice = ""  # told
            case ApprovalRuleEvent():
                self.tools.remember(event.match)

    def _tool_context(self) -> ToolContext:
        run = self.settings.run
        view = {"objective": self.contract.outcome, "status": self.state.status, "verified": self.contract.verified,
                "checks": {e.name: "pass" if e.passed else "fail" for e in self.evidence},
                "spent": asdict(self.state.spent), "limits": asdict(self.state.limits),
                "checklist": list(self.contract.checklist)}
        return ToolContext(self.workspace, run.shell_timeout_s, output_token_limit=run.tool_output_token_limit,
                           counter=self.counter, read_blob=self.store.get_blob, env=self.env, goal_view=view,
                           sandbox=self.sandbox, headless=self.approver is None)

    async def _watch(self, task: asyncio.Task[ToolResult]) -> str | None:
        """Wait for `task`; say why it must be cut short if something asks for that first. Signals and the
        clock are looked at every WATCH_S, the store's control requests every STORE_POLL_S."""
        next_poll = time.monotonic() + STORE_POLL_S
        while True:
            done, _ = await asyncio.wait({task}, timeout=WATCH_S)
            if done:
                return None
            if self._interrupted:
                return "Ctrl-C or SIGTERM reached the harness"
            if self._lease_lost:
                return "another runner took over the goal"
            deadline = time_deadline(self.state)
            if deadline is not None and self.elapsed() >= deadline:
                return "the goal's time budget ran out"
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + STORE_POLL_S
                if self._stop_requested():
                    return "a person paused or cleared the goal"

    def _stop_requested(self) -> bool:
        """A pause or clear is waiting in the store (a budget raise or a resume never cuts a call short)."""
        pending = pending_requests(self.store, self.goal.goal_id, self.goal.thread_id)
        return any(request.action in ("pause", "clear") for _, request in pending)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.run.heartbeat_s)
            try:
                self.store.heartbeat(self.goal.goal_id)
            except LeaseHeldError:
                self._lease_lost = True  # acted on at the next boundary
                return

    def interrupt(self) -> None:
        """Pause (what Ctrl-C does): a running tool call is cut short; safe to call from the runner's event loop."""
        self._interrupted = True  # honoured within WATCH_S while a tool runs, else at the next boundary


@contextlib.contextmanager
def _signals_call(handler: Callable[[], None]) -> Iterator[None]:
    """Route Ctrl-C and SIGTERM to `handler` while the block runs (only possible in the main thread)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, handler)
    try:
        yield
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)


def _results(evidence: list[Evidence], contract: Contract) -> tuple[CheckResult, ...]:
    direction = {check.name: check.metric.lower_is_better for check in contract.checks if check.metric}
    return tuple(CheckResult(e.name, e.kind, e.passed, e.metric, direction.get(e.name)) for e in evidence)

