"""Auto-compaction: when the next request would reach `model_auto_compact_token_limit`, the model writes a
hand-off summary and the history is replaced by it plus what the harness knows for certain.

A compaction happens between two requests, so it can fall in the middle of a turn without ending it.
It is an event (`compacted`): the store keeps every earlier event, and a restart rebuilds the same
compacted conversation. If the summary request fails, the oldest tool outputs are cut to head and tail
instead, and compaction is not tried again until the context has grown.
"""

from __future__ import annotations

from goalkeeper.context.handoff import handoff_message, missing_sections
from goalkeeper.context.prompts import render
from goalkeeper.context.render import evidence_digest, evidence_lines
from goalkeeper.core.outcomes import Action, ModelResponded, Proceed
from goalkeeper.errors import ProviderError
from goalkeeper.events import CompactedEvent, CompactionFailedEvent, Event, Usage
from goalkeeper.models.base import Message, ModelRequest, ModelResponse
from goalkeeper.run.goal_run import GoalRun
from goalkeeper.run.sampling import charge_failed, request_due, watched
from goalkeeper.tools.registry import ToolRegistry

#: Output tokens the hand-off summary may use (less for small windows: an eighth of the compaction limit).
SUMMARY_MAX_TOKENS = 4_000

#: After a failed compaction, the context must grow by this share of the limit before it is tried again.
RETRY_GROWTH = 0.1


async def compact_if_due(run: GoalRun, tools: ToolRegistry) -> Action | None:
    """Compact the context when the next request would reach the limit; an action means the turn must stop."""
    tokens = compaction_due(run, tools)
    return None if tokens is None else await compact(run, tools, tokens)


def compaction_due(run: GoalRun, tools: ToolRegistry) -> int | None:
    """The next request's tokens when they reach the limit and a compaction may run now; else None."""
    conversation = run.conversation
    tokens = conversation.request_tokens(tools.specs)
    if tokens < run.compact_limit or conversation.responses_since_compaction == 0:
        return None  # right after a compaction, compacting again could not make the context smaller
    failed = conversation.compaction_failed_at
    if failed is not None and tokens < failed + RETRY_GROWTH * run.compact_limit:
        return None
    return tokens


async def compact(run: GoalRun, tools: ToolRegistry, tokens: int) -> Action | None:
    """Ask for the hand-off summary and replace the history with it; None means go on with the turn."""
    conversation = run.conversation
    due = run.steer(request_due(run, tools.specs))
    if not isinstance(due.action, Proceed):
        return due.action
    wanted = min(SUMMARY_MAX_TOKENS, max(256, run.compact_limit // 8))
    room = due.action.max_output_tokens
    request = ModelRequest((*conversation.messages(), Message("user", render("compact"))), tools.specs,
                           wanted if room is None else min(wanted, room))
    try:
        response = await watched(run, request, due.action.deadline_s)
    except ProviderError as error:
        charge_failed(run, error)
        _fall_back(run, tokens, error.message)
        return None
    if isinstance(response, Proceed):
        return None  # cut at the time limit and charged: the next request's check decides
    if not isinstance(response, ModelResponse):
        return response  # a pause or clear arrived while the summary was being written
    usage = response.usage
    charged = ModelResponded(usage.charged_tokens, usage.cached_input_tokens, run.price(response), run.elapsed())
    if not response.content.strip():
        run.steer(charged)
        _fall_back(run, tokens, "the summary came back empty")
        return None
    handoff = handoff_message(response.content, conversation.prefix[1].content, run.facts.handoff,
                              evidence_lines(run.facts.evidence), conversation.responses, run.facts.turn.number)
    compacted = CompactedEvent(summary=response.content, handoff=handoff, responses=conversation.responses,
                               turn=run.facts.turn.number, request_tokens=tokens,
                               missing_sections=missing_sections(response.content),
                               evidence_shown=evidence_digest(run.facts.evidence), usage=Usage.of(usage),
                               model=response.model)
    decision = run.steer(charged, [compacted])
    return None if isinstance(decision.action, Proceed) else decision.action


def _fall_back(run: GoalRun, tokens: int, why: str) -> None:
    """Cut the oldest tool outputs to head and tail instead, and remember not to retry at once."""
    events: list[Event] = [CompactionFailedEvent(why=why, request_tokens=tokens)]
    plan = run.conversation.fallback_trim_plan()
    if plan is not None:
        events.append(plan.model_copy(update={"why": "compaction failed"}))
    run.record(events)
