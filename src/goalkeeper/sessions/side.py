"""Side questions: an ephemeral, read-only fork of a goal's thread whose answer is stored as one `side` event.

The fork's prefix is built exactly as the runner builds its own, so provider caches hit. The answer never
enters the thread's context (the conversation ignores `side` events), and a side question never writes the
goal row: a running runner owns it under its version guard, so side usage is not charged to the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from goalkeeper.context.history import Conversation
from goalkeeper.context.prompts import as_data, render
from goalkeeper.context.render import contract_block
from goalkeeper.context.replay import goal_view, replay
from goalkeeper.errors import ContextLengthError, GoalNotFoundError
from goalkeeper.events import BaselineEvent, EvidenceEvent, SideEvent
from goalkeeper.models.base import Message
from goalkeeper.sessions.defaults import SIDE_EVENTS, SIDE_MAX_REQUESTS
from goalkeeper.sessions.session import SessionCost, ToolUse, open_session, read_only_tools, run_session
from goalkeeper.spec.settings import ModelSettings
from goalkeeper.store import Goal, Store


@dataclass(frozen=True)
class SideAnswer:
    """A side question and its answer, as stored in the thread's `side` event."""

    goal_id: str
    question: str
    answer: str
    cost: SessionCost
    seq: int
    """The `side` event's seq."""

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"goal_id": self.goal_id, "question": self.question, "answer": self.answer, **self.cost.payload(),
                "seq": self.seq, "charged_to_goal": False}


def fork_history(history: Sequence[Message], newest: int) -> list[Message]:
    """The newest `newest` messages of `history`, in a shape every provider accepts.

    A tool result whose call was cut off by the window is dropped, and so is a call that has no result in
    the window (a runner may be mid-tool right now); an assistant message left with neither text nor
    calls goes too.
    """
    window = list(history[-newest:]) if newest > 0 else []
    answered = {message.tool_call_id for message in window if message.role == "tool"}
    kept: set[str] = set()
    forked: list[Message] = []
    for message in window:
        if message.role == "tool":
            if message.tool_call_id in kept:
                forked.append(message)
            continue
        if message.role == "assistant" and message.tool_calls:
            calls = tuple(call for call in message.tool_calls if call.id in answered)
            kept.update(call.id for call in calls)
            if not calls and not message.content:
                continue
            message = replace(message, tool_calls=calls)
        forked.append(message)
    return forked


def fork_messages(store: Store, goal: Goal, question: str, newest: int) -> list[Message]:
    """The side request: the runner's own prefix, the newest history, then the question as data."""
    contract = goal.contract
    conversation = Conversation.from_events(render("system"), contract_block(contract),
                                            store.events(goal.thread_id, goal_id=goal.goal_id))
    return [*conversation.prefix, *fork_history(conversation.history, newest),
            Message("user", render("side", question=as_data(question)))]


def side_goal(store: Store, workspace: Path, thread_id: str | None) -> Goal:
    """The goal a side question asks about, or an error saying how to set one."""
    thread = store.get_thread(thread_id) if thread_id else store.current_thread(workspace)
    goal = store.get_goal(thread.thread_id) if thread is not None else None
    if goal is None:
        raise GoalNotFoundError(f"no goal in {workspace}: a side question asks about a goal's thread",
                                'set one with `gk goal "<objective>" --check NAME=COMMAND`, then ask again')
    return goal


def ask_side_question(store: Store, workspace: Path, question: str, *, thread_id: str | None = None,
                      model: ModelSettings | None = None, newest: int = SIDE_EVENTS,
                      max_requests: int = SIDE_MAX_REQUESTS, on_text: Callable[[str], None] | None = None,
                      on_tool: Callable[[ToolUse], None] | None = None) -> SideAnswer:
    """Answer `question` in a read-only fork of the goal's thread and store it as a `side` event.

    `model` overrides the goal's stored model (which overrides config). Provider failures raise.
    """
    goal = side_goal(store, workspace, thread_id)
    settings = goal.settings
    messages = fork_messages(store, goal, question, newest)
    opened = open_session(store, workspace, read_only_tools(), settings, model=model,
                          contract=goal.contract, goal_view=_goal_view(store, goal),
                          on_text=on_text, on_tool=on_tool)
    try:
        session, answer = run_session(opened, lambda session: session.converse(messages, max_requests,
                                                                              "side question"))
    except ContextLengthError as error:
        raise ContextLengthError(error.message, f"ask with fewer history messages, e.g. --events "
                                                f"{max(1, newest // 2)}") from None
    if not answer and session.requests > max_requests:
        answer = f"(no answer within {max_requests} requests)"
    side = SideEvent(question=question, answer=answer, **session.cost().payload(), events=newest,
                     charged_to_goal=False)
    [record] = store.append_events(goal.thread_id, [side], goal_id=goal.goal_id)
    return SideAnswer(goal.goal_id, question, answer, session.cost(), record.seq)


def _goal_view(store: Store, goal: Goal) -> dict[str, Any]:
    """What `get_goal` shows, as the runner's tool context has it."""
    facts = replay(store.events(goal.thread_id, goal_id=goal.goal_id, kinds=[BaselineEvent, EvidenceEvent]))
    return goal_view(goal.contract, goal.state, facts)
