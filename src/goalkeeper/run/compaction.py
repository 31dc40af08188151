"""Auto-compaction: when the next request would reach `model_auto_compact_token_limit`, or the provider refused
one as too long, the model writes a hand-off summary and the history is replaced by it plus what the harness
knows for certain.

A compaction happens between two requests, so it can fall in the middle of a turn without ending it.
It is an event (`compacted`): the store keeps every earlier event, and a restart rebuilds the same
compacted conversation. The summary is asked for once: if the request fails, or the answer is a tool call
or empty, the harness writes the summary from its own records (`compaction_failed`, then `compacted`), so
the context is bounded whatever the model does, and no second full-context request is sent.
"""

from __future__ import annotations

from goalkeeper.context.handoff import REQUIRED_SECTIONS, fallback_summary, handoff_message, missing_sections
from goalkeeper.context.prompts import render
from goalkeeper.context.render import evidence_digest, evidence_lines
from goalkeeper.core.outcomes import Action, ModelResponded, Proceed
from goalkeeper.errors import ProviderError
from goalkeeper.events import CompactedEvent, CompactionFailedEvent, Event, Usage
from goalkeeper.models.base import Message, ModelRequest, ModelResponse
from goalkeeper.models.base import Usage as ModelUsage
from goalkeeper.run.goal_run import GoalRun
from goalkeeper.run.sampling import charge_failed, request_due, watched
from goalkeeper.tools.registry import ToolRegistry

#: Output tokens the hand-off summary may use (less for small windows: an eighth of the compaction limit).
SUMMARY_MAX_TOKENS = 4_000

#: The share of the compaction limit the hand-off message may fill (the prefix and the next turn need the rest).
HANDOFF_SHARE = 0.3


async def compact_if_due(run: GoalRun, tools: ToolRegistry) -> Action | None:
    """Compact the context when the next request would reach the limit; an action means the turn must stop."""
    tokens = compaction_due(run, tools)
    return None if tokens is None else await compact(run, tools, tokens)


async def compact_now(run: GoalRun, tools: ToolRegistry) -> Action | None:
    """Compact whatever the size: the provider refused the request as too long for its context window."""
    return await compact(run, tools, run.conversation.request_tokens(tools.specs))


def compaction_due(run: GoalRun, tools: ToolRegistry) -> int | None:
    """The next request's tokens when they reach the limit and a compaction may run now; else None."""
    conversation = run.conversation
    tokens = conversation.request_tokens(tools.specs)
    if tokens < run.compact_limit or conversation.responses_since_compaction == 0:
        return None  # right after a compaction, compacting again could not make the context smaller
    return tokens


async def compact(run: GoalRun, tools: ToolRegistry, tokens: int) -> Action | None:
    """Ask once for the hand-off summary and replace the history with the hand-off, the model's summary or
    the harness's own; None means go on with the turn."""
    due = run.steer(request_due(run, tools.specs))
    if not isinstance(due.action, Proceed):
        return due.action
    wanted = min(SUMMARY_MAX_TOKENS, max(256, run.compact_limit // 8))
    room = due.action.max_output_tokens
    request = ModelRequest((*run.conversation.messages(), Message("user", render("compact"))), tools.specs,
                           wanted if room is None else min(wanted, room))
    try:
        response = await watched(run, request, due.action.deadline_s)
    except ProviderError as error:
        charge_failed(run, error)
        run.record(_handoff_events(run, tokens, None, error.message))
        return None
    if isinstance(response, Proceed):
        return None  # cut at the time limit and charged: the next request's check decides
    if not isinstance(response, ModelResponse):
        return response  # a pause or clear arrived while the summary was being written
    usage = response.usage
    charged = ModelResponded(usage.charged_tokens, usage.cached_input_tokens, run.price(response), run.elapsed())
    decision = run.steer(charged, _handoff_events(run, tokens, response, unusable(response)))
    return None if isinstance(decision.action, Proceed) else decision.action


def unusable(response: ModelResponse) -> str | None:
    """Why a summary response cannot stand for the history (None when it can): no text, or tool calls with
    text that has none of the required sections (the model went on working instead)."""
    count = len(response.tool_calls)
    calls = f" (it asked for {count} tool call{'s' if count > 1 else ''} instead)" if count else ""
    if not response.content.strip():
        return "the summary came back empty" + calls
    if response.tool_calls and len(missing_sections(response.content)) == len(REQUIRED_SECTIONS):
        return "the answer had none of the summary's sections" + calls
    return None


def _handoff_events(run: GoalRun, tokens: int, response: ModelResponse | None, why: str | None) -> list[Event]:
    """The `compacted` event (after a `compaction_failed` when there is no usable summary, `why`): the history
    is replaced either way, so a failed summary never leaves the context unbounded."""
    conversation, facts = run.conversation, run.facts
    written = response if why is None else None
    summary = written.content if written is not None else fallback_summary(facts.handoff, why or "")
    max_chars = int(run.compact_limit * HANDOFF_SHARE * conversation.counter.chars_per_token)
    handoff = handoff_message(summary, conversation.prefix[1].content, facts.handoff, evidence_lines(facts.evidence),
                              conversation.responses, facts.turn.number, max_chars)
    compacted = CompactedEvent(summary=summary, handoff=handoff, responses=conversation.responses,
                               turn=facts.turn.number, request_tokens=tokens,
                               missing_sections=missing_sections(summary),
                               evidence_shown=evidence_digest(facts.evidence),
                               usage=Usage.of(response.usage if response is not None else ModelUsage()),
                               model=written.model if written is not None else "harness")
    return [compacted] if why is None else [CompactionFailedEvent(why=why, request_tokens=tokens), compacted]
