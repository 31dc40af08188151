"""Auto-compaction: when the next request would reach `model_auto_compact_token_limit`, the model writes a
hand-off summary and the history is replaced by it plus what the harness knows for certain.

A compaction happens between two requests, so it can fall in the middle of a turn without ending it.
It is an event (`compacted`): the store keeps every earlier event, and a restart rebuilds the same
compacted conversation. If the summary request fails, the oldest tool outputs are cut to head and tail
instead, and compaction is not tried again until the context has grown.
"""

from __future__ import annotations

from typing import Protocol

from goalkeeper.context.handoff import Facts, handoff_message, missing_sections
from goalkeeper.context.prompts import render
from goalkeeper.core.outcomes import Action, ModelResponded, Proceed
from goalkeeper.errors import ProviderError
from goalkeeper.events import CompactedEvent, CompactionFailedEvent, Event, Usage
from goalkeeper.models.base import Message, ModelRequest, ModelResponse
from goalkeeper.run.sampling import SamplingHost, charge_failed, request_due, watched
from goalkeeper.tools.registry import ToolRegistry

#: Output tokens the hand-off summary may use (less for small windows: an eighth of the compaction limit).
SUMMARY_MAX_TOKENS = 4_000

#: After a failed compaction, the context must grow by this share of the limit before it is tried again.
RETRY_GROWTH = 0.1


class CompactionHost(SamplingHost, Protocol):
    """What a compaction needs from the runner, besides what any request needs."""

    compact_limit: int

    def facts(self) -> Facts: ...
    def evidence_text(self) -> str: ...
    def evidence_shown(self) -> dict[str, list[object]]: ...
    def price(self, response: ModelResponse) -> float: ...


def compaction_due(host: CompactionHost, tools: ToolRegistry) -> int | None:
    """The next request's tokens when they reach the limit and a compaction may run now; else None."""
    conversation = host.conversation
    tokens = conversation.request_tokens(tools.specs)
    if tokens < host.compact_limit or conversation.responses_since_compaction == 0:
        return None  # right after a compaction, compacting again could not make the context smaller
    failed = conversation.compaction_failed_at
    if failed is not None and tokens < failed + RETRY_GROWTH * host.compact_limit:
        return None
    return tokens


async def compact(host: CompactionHost, tools: ToolRegistry, tokens: int) -> Action | None:
    """Ask for the hand-off summary and replace the history with it; None means go on with the turn."""
    conversation = host.conversation
    due = host.steer(request_due(host, tools.specs))
    if not isinstance(due.action, Proceed):
        return due.action
    wanted = min(SUMMARY_MAX_TOKENS, max(256, host.compact_limit // 8))
    room = due.action.max_output_tokens
    request = ModelRequest((*conversation.messages(), Message("user", render("compact"))), tools.specs,
                           wanted if room is None else min(wanted, room))
    try:
        response = await watched(host, request, due.action.deadline_s)
    except ProviderError as error:
        charge_failed(host, error)
        _fall_back(host, tokens, error.message)
        return None
    if isinstance(response, Proceed):
        return None  # cut at the time limit and charged: the next request's check decides
    if not isinstance(response, ModelResponse):
        return response  # a pause or clear arrived while the summary was being written
    usage = response.usage
    charged = ModelResponded(usage.charged_tokens, usage.cached_input_tokens, host.price(response), host.elapsed())
    if not response.content.strip():
        host.steer(charged)
        _fall_back(host, tokens, "the summary came back empty")
        return None
    handoff = handoff_message(response.content, conversation.prefix[1].content, host.facts(), host.evidence_text(),
                              conversation.responses, conversation.turn.number)
    compacted = CompactedEvent(summary=response.content, handoff=handoff, responses=conversation.responses,
                               turn=conversation.turn.number, request_tokens=tokens,
                               missing_sections=missing_sections(response.content),
                               evidence_shown=host.evidence_shown(), usage=Usage.of(usage), model=response.model)
    decision = host.steer(charged, [compacted])
    return None if isinstance(decision.action, Proceed) else decision.action


def _fall_back(host: CompactionHost, tokens: int, why: str) -> None:
    """Cut the oldest tool outputs to head and tail instead, and remember not to retry at once."""
    events: list[Event] = [CompactionFailedEvent(why=why, request_tokens=tokens)]
    plan = host.conversation.fallback_trim_plan()
    if plan is not None:
        events.append(plan.model_copy(update={"why": "compaction failed"}))
    host.record(events)
