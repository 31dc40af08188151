"""One goal's run as one value: what the turn, the requests, the checks and the tool calls all work on.

It holds the goal, its model and tools, the conversation and the replayed facts, the sandbox and the clock,
and it is the one place a run commits: `steer` decides on an outcome and commits the decision, `record`
commits events that change no state. Every event is folded into the conversation and the facts as it is made.

A step's events share one transaction where intent-before-action allows: with `hold=True` a commit that only
goes on waits for the next one, and `flush` writes what waits before any effect (a tool runs only after its
intent's commit, a model request only after `flush`), so whatever a crash loses was never acted on.

An optional `Gate` is consulted before each effect (a model request, a tool call, a check run, a turn's
checkpoint commit): the Temporal engine runs one effect per activity, and the gate ends the run cleanly
before the next one. Without a gate (the local runner) nothing stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from goalkeeper.config.load import Config
from goalkeeper.config.schema import HookTable, McpServer
from goalkeeper.context.history import Conversation
from goalkeeper.context.prompts import render
from goalkeeper.context.render import contract_block, evidence_digest, opening_message
from goalkeeper.context.replay import GoalFacts
from goalkeeper.context.tokens import auto_compact_limit
from goalkeeper.core.decide import decide, outcome_of
from goalkeeper.core.lifecycle import TurnKind
from goalkeeper.core.outcomes import Action, Decision, GoalCleared, Interrupted, Outcome, Proceed, StartTurn, Stop, Wait
from goalkeeper.core.state import GoalState, request_of
from goalkeeper.errors import GoalkeeperError, StaleGoalError
from goalkeeper.events import (
    ApprovalRuleEvent,
    BaselineEvent,
    ControlRequestEvent,
    Event,
    EvidenceEvent,
    StatusChangedEvent,
    TurnEndedEvent,
)
from goalkeeper.models.base import Model, ModelResponse
from goalkeeper.models.pricing import cost_usd, price_of
from goalkeeper.run.inbox import Inbox, applied_marker
from goalkeeper.run.policy import command_env, goal_sandbox
from goalkeeper.sandbox.policy import SandboxPolicy
from goalkeeper.spec.contract import Contract
from goalkeeper.spec.settings import GoalSettings, Price
from goalkeeper.store import EventRecord, Goal, Store
from goalkeeper.tools.agents import AgentPool
from goalkeeper.tools.mcp import McpServers
from goalkeeper.tools.registry import Approver, ToolRegistry, goal_registry
from goalkeeper.verify.cleanroom import Baseline, baseline_of
from goalkeeper.workspace.measured import measured_trees
from goalkeeper.workspace.tree import tree_hash


class GoalGone(GoalkeeperError):
    """The goal was cleared or replaced while this runner drove it."""


Effect = Literal["model", "tool", "checks", "checkpoint"]
"""What a runner does outside itself, one at a time: the steps the Temporal engine makes activities of."""


class StepDone(Exception):
    """The gate ended the run before its next effect, `effect` (the runner flushes and returns)."""

    def __init__(self, effect: Effect) -> None:
        super().__init__(effect)
        self.effect = effect


@dataclass
class Gate:
    """Lets `allowed` effects happen, then stops the run before the next one (StepDone names it)."""

    allowed: int = 1
    done: list[Effect] = field(default_factory=list)

    def before(self, effect: Effect) -> None:
        """Called before each effect: raises StepDone once the allowance is used."""
        if len(self.done) >= self.allowed:
            raise StepDone(effect)
        self.done.append(effect)


@dataclass
class GoalRun:
    """One goal being driven: its record, parsed once, and everything the run has learnt since."""

    store: Store
    goal: Goal
    model: Model
    workspace: Path
    contract: Contract
    settings: GoalSettings
    state: GoalState
    version: int
    tools: ToolRegistry
    conversation: Conversation
    sandbox: SandboxPolicy
    env: dict[str, str]
    unit_price: Price | None
    compact_limit: int
    on_event: Callable[[EventRecord], None] | None = None
    on_text: Callable[[str], None] | None = None
    """Receives the model's text as it streams (a UI shows it as it arrives)."""
    approver: Approver | None = None
    facts: GoalFacts = field(default_factory=GoalFacts)
    clock: tuple[float, float] = (0.0, 0.0)
    """(monotonic time this run started, the goal's active seconds before it)."""
    interrupted: bool = False
    """Ctrl-C or SIGTERM asked for a pause: honoured within a tool call's watch, else at the next boundary."""
    lease_lost: bool = False
    inbox: Inbox = field(default_factory=Inbox)
    measured: dict[str, int] = field(default_factory=dict)
    """Tree hash → checks passing when the harness ran them on that tree (workspace.measured.measured_trees)."""
    held: list[Event] = field(default_factory=list)
    """Events made and folded in, waiting for the next commit (see the module's docstring)."""
    unsaved: bool = False
    """A decision's state waits for the next commit too."""
    gate: Gate | None = None
    """Ends the run before an effect (the Temporal engine's one step per activity); None runs on."""
    prepared: bool = False
    """`prepare` has run for this value (a run kept open across steps does not prepare again)."""
    read_first: str = ""
    """The contract's `read_first` files as the goal's first turn shows them (read by `prepare`)."""
    hooks: tuple[HookTable, ...] = ()
    """`[[hooks]]` of config.toml at the goal's base (prepare reads them; run/hooks.py runs them)."""
    hook_queue: list[Event] = field(default_factory=list)
    """Turn ends and status changes committed since their post_turn and status_change hooks last ran."""
    agents: AgentPool = field(default_factory=AgentPool)
    """The child agents (`spawn_agent`) running now."""
    mcp_tables: Mapping[str, McpServer] = field(default_factory=dict)
    """config.toml's `[mcp_servers]`, as `prepare` read it."""
    mcp: McpServers | None = None
    """The MCP servers started for this run (prepare.start_mcp); stopped when the run ends."""

    @classmethod
    def open(cls, store: Store, goal: Goal, model: Model, workspace: Path, *,
             on_event: Callable[[EventRecord], None] | None = None, on_text: Callable[[str], None] | None = None,
             approver: Approver | None = None) -> GoalRun:
        """The run of `goal` as the store has it: its events replayed into the conversation and the facts."""
        contract = goal.contract
        settings = goal.settings
        state = goal.state
        stored = settings.model
        # The price is fixed when the goal is set; goals stored before prices were kept look it up.
        price = stored.price if stored is not None and stored.price is not None else price_of(model.name)
        sandbox = goal_sandbox(contract, workspace, settings.own_files)  # config.toml's secrets join later
        run = cls(store, goal, model, workspace, contract, settings, state, goal.version,
                  goal_registry(settings.run.agents.max_threads > 0).with_approvals(approver=approver),
                  Conversation(render("system"), contract_block(contract)), sandbox,
                  command_env(Config(), key_env(settings)), price, auto_compact_limit(stored),
                  on_event, on_text, approver, clock=(time.monotonic(), state.spent.time_s))
        if store.get_thread(goal.thread_id).parent_thread_id is not None:
            # A fork's first event is its fork record: the goal opens with the parent's work so far.
            run.conversation.apply(store.events(goal.thread_id, limit=1)[0])
        records = store.events(goal.thread_id, goal_id=goal.goal_id)
        for record in records:
            run.absorb(record)
        # One read saw every event of the goal up to its newest, control requests and markers included.
        run.inbox.cursor = records[-1].seq if records else 0
        return run

    def steer(self, outcome: Outcome, extra: list[Event] | None = None, *, hold: bool = False) -> Decision:
        """Decide on `outcome` and commit the decision (with `extra` events) before anything acts on it. With
        `hold`, a decision that only goes on (the turn, or the next one) waits for the next commit."""
        decision = decide(self.state, outcome)
        if not extra and not decision.events and isinstance(decision.action, Proceed):
            # Nothing to record: only the clock moved. Kept in memory; the next commit persists it.
            self.state = decision.state
            return decision
        return self.commit(decision, extra, hold=hold and isinstance(decision.action, Proceed | StartTurn))

    def record(self, events: list[Event], *, hold: bool = False) -> None:
        """Commit events that change no state (intents, results, messages); with `hold`, at the next commit."""
        self.commit(None, events, hold=hold)

    def commit(self, decision: Decision | None, extra: list[Event] | None = None, *,
               hold: bool = False) -> Decision:
        """Commit what is held, `extra`, then the decision's events, and the state under the goal's version
        guard; with `hold`, fold them in now and leave the writing to the next commit."""
        events = [*(extra or []), *(decision.events if decision else [])]
        self.hook_queue += [event for event in events if isinstance(event, TurnEndedEvent | StatusChangedEvent)]
        if decision is not None:
            self.state, self.unsaved = decision.state, True
        if hold:
            for event in events:
                # Not stored yet, so it has no seq: the conversation and the facts read only the event.
                self.absorb(EventRecord(0, self.goal.thread_id, self.goal.goal_id, time.time(), event))
            self.held.extend(events)
        else:
            self._write(events)
        return decision or Decision(self.state, Wait())

    def before(self, effect: Effect) -> None:
        """Ask the gate, if any, before an effect (StepDone ends the run here)."""
        if self.gate is not None:
            self.gate.before(effect)

    def flush(self) -> None:
        """Write what is held: called before anything acts on it."""
        if self.held or self.unsaved:
            self._write([])

    def _write(self, events: list[Event]) -> None:
        held, state = self.held, self.state if self.unsaved else None
        try:
            version, records = self.store.commit(self.goal.goal_id, [*held, *events], state=state,
                                                 expected_version=self.version if state is not None else None)
        except StaleGoalError as stale:
            raise GoalGone("the goal was cleared, replaced or changed by another process") from stale
        self.held, self.unsaved = [], False
        if state is not None:
            self.version = version
        for index, record in enumerate(records):
            if index >= len(held):  # held events were folded in when they were made
                self.absorb(record)
            if self.on_event is not None:
                self.on_event(record)

    def absorb(self, record: EventRecord) -> None:
        """Keep the conversation, the facts and the inbox in step with the store."""
        self.conversation.apply(record)
        self.facts.apply(record.event)
        self.inbox.see(record)
        match record.event:
            case ApprovalRuleEvent(match=match):
                self.tools.remember(match)
            case BaselineEvent() | EvidenceEvent():
                self.measured.update(measured_trees([record.row()]))

    def controls(self) -> list[tuple[int, ControlRequestEvent]]:
        """The goal's control requests not yet applied, oldest first, after reading what arrived since the last
        read (its cost does not grow with the goal's events)."""
        return self.inbox.read(self.store, self.goal.goal_id, self.goal.thread_id)

    def poll_controls(self) -> Action | None:
        """Apply queued pauses, clears, budget raises and caps; an action means the turn must stop here (a cap's
        StartTurn: the wrap-up turn it opened comes next)."""
        if self.lease_lost:
            raise GoalGone("another runner took over this goal's lease")
        if self.interrupted:
            self.interrupted = False
            return self.steer(Interrupted()).action
        for seq, request in self.controls():
            outcome = outcome_of(request_of(request))
            decision = decide(self.state, outcome)
            applied = applied_marker(seq, decision)  # a refusal is recorded there, for the person
            if isinstance(outcome, GoalCleared):
                self.flush()  # what the run did before the clear stays in the goal's history
                self.store.delete_goal(self.goal.goal_id, [applied, *decision.events])
                raise GoalGone("the goal was cleared while running")
            decision = self.commit(decision, [applied])
            if isinstance(decision.action, Stop | StartTurn):  # a stop, or a batch cap's wrap-up turn
                return decision.action
        return None

    def elapsed(self) -> float:
        """The goal's active seconds, across every run of it."""
        started, base = self.clock
        return base + time.monotonic() - started

    def opening(self, kind: TurnKind) -> dict[str, Any]:
        """The hidden message that opens a turn (with any harness notice in front), and the evidence it shows."""
        facts = self.facts
        text = opening_message(kind, self.state, facts.evidence, self.conversation.shown, why=facts.why)
        if self.read_first and kind == "continuation" and self.state.spent.turns == 1:
            text = f"{self.read_first}\n\n{text}"  # the goal's first turn: recorded with it, so never read twice
        shows_evidence = kind in ("continuation", "audit_feedback", "nudge")
        return {"content": f"Harness notice:{facts.notice}\n\n{text}" if facts.notice else text,
                "evidence_shown": evidence_digest(facts.evidence) if shows_evidence else self.conversation.shown}

    def baseline_source(self) -> Baseline | None:
        """What the clean room is built from (None before the goal's branch and mirror exist)."""
        return None if self.facts.mirror is None else baseline_of(self.facts.mirror, self.goal.goal_id)

    async def tree_hash(self) -> str | None:
        """The working tree's content hash (off the event loop: it can take a while on big trees)."""
        return await asyncio.to_thread(tree_hash, self.workspace)

    def price(self, response: ModelResponse) -> float:
        """USD for one response."""
        return cost_usd(self.unit_price, response.usage)


def key_env(settings: GoalSettings) -> str | None:
    """The variable the goal's model reads its API key from (`--api-key-env BARS_KEY`), if any."""
    return settings.model.api_key_env if settings.model is not None else None
