"""Request bodies grow by what is new (models/encoded.py): a provider that has sent the earlier requests of a
conversation sends every later one exactly as a fresh provider would, through appends, trims, a compaction
and tool lists that change, in each wire format, against its real local server."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

from goalkeeper.models.base import Message, ModelRequest, ToolCall, ToolSpec
from test_providers import SHELL, Wire, streaming, wires
from wire_server import WireServer

READ = ToolSpec("read_file", "Read a file.", {"type": "object", "properties": {"path": {"type": "string"}}})


def conversation() -> list[ModelRequest]:
    """The requests of one goal: turns with tool calls, a trimmed output, a summary request, a compaction,
    and a wrap-up with fewer tools. Messages are kept as the same objects, as the conversation keeps them."""
    system, contract = Message("system", "You are careful. Naïve café ✓"), Message("user", "Fix the tests.")
    history: list[Message] = []
    requests: list[ModelRequest] = []

    def send(*extra: Message, tools: tuple[ToolSpec, ...] = (SHELL, READ)) -> None:
        requests.append(ModelRequest((system, contract, *history, *extra), tools, max_output_tokens=512))

    for turn in range(4):
        history.append(Message("user", f"Continue (turn {turn})"))
        send()
        call = ToolCall(f"call_{turn}", "shell", json.dumps({"command": f"echo {turn} 東京"}))
        history += [Message("assistant", "" if turn % 2 else "Looking", tool_calls=(call,)),
                    Message("tool", f"output {turn}\n" * 40, tool_call_id=call.id, name="shell")]
        send()
        history.append(Message("assistant", "done"))
    history[2] = replace(history[2], content="[... cut ...]")  # a trim replaces an old tool output
    send()
    send(Message("user", "Write the hand-off summary."))
    history[:] = [Message("user", "# Context compacted")]
    send()
    history.append(Message("assistant", "on it"))
    send(tools=(READ,))
    send(tools=())
    return requests


async def _send_each_twice(wire: Wire, server: WireServer[object], stream: bool) -> None:
    """Each request through the long-lived provider, then through a fresh one."""
    kept = wire.model("test-model", server.base_url, "test-key", stream=stream)
    try:
        for request in conversation():
            await kept.complete(request)
            fresh = wire.model("test-model", server.base_url, "test-key", stream=stream)
            try:
                await fresh.complete(request)
            finally:
                await fresh.aclose()
    finally:
        await kept.aclose()


@wires
@streaming
def test_a_provider_that_reuses_earlier_encodings_sends_what_a_fresh_one_sends(wire: Wire, stream: bool) -> None:
    with wire.server([]) as server:
        asyncio.run(_send_each_twice(wire, server, stream))
        bodies, headers = list(server.requests), list(server.request_headers)
    assert len(bodies) == 2 * len(conversation())
    for kept, fresh in zip(bodies[0::2], bodies[1::2], strict=True):
        assert kept == fresh
    assert all(header["content-type"] == "application/json" for header in headers)
    # The compaction really replaced the history, and the last request went without tools.
    assert "# Context compacted" in json.dumps(bodies[-2]) and "Continue (turn 0)" not in json.dumps(bodies[-2])
    assert "tools" not in bodies[-1]
