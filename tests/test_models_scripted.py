"""The scripted model: steps chosen by the conversation, errors inserted before steps, usage estimates."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from goalkeeper.errors import ConfigError, ContextLengthError, ProviderError, TransientProviderError
from goalkeeper.models.base import Message, ModelRequest, ModelResponse, ToolCall, Usage
from goalkeeper.models.scripted import ErrorKind, ScriptedError, ScriptedModel, ScriptedToolCall, ScriptStep

SCRIPT = {
    "name": "scripted",
    "steps": [
        {"text": "Looking", "tool_calls": [{"name": "shell", "arguments": {"command": "pytest -q"}}],
         "usage": {"input_tokens": 1000, "cached_input_tokens": 200, "output_tokens": 50}, "delay_s": 0.01},
        {"error": {"kind": "transient", "status_code": 503, "message": "overloaded", "retry_after_s": 0.01},
         "times": 2},
        {"text": "done"},
    ],
    "after_last": "repeat",
}


def conversation(assistant_turns: int) -> ModelRequest:
    """A request whose history holds `assistant_turns` assistant messages."""
    messages = [Message("system", "You are careful."), Message("user", "Fix the tests.")]
    for turn in range(assistant_turns):
        messages.append(Message("assistant", f"turn {turn}"))
        messages.append(Message("user", "go on"))
    return ModelRequest(messages=tuple(messages))


def complete(model: ScriptedModel, request: ModelRequest) -> ModelResponse:
    return asyncio.run(model.complete(request))


def write_script(tmp_path: Path, script: object) -> Path:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(script))
    return path


def test_step_is_chosen_by_the_number_of_assistant_messages(tmp_path: Path) -> None:
    model = ScriptedModel.from_file(write_script(tmp_path, SCRIPT))

    first = complete(model, conversation(0))

    assert first.content == "Looking"
    assert first.tool_calls == (ToolCall("call_0_0", "shell", '{"command": "pytest -q"}'),)
    assert first.usage == Usage(1000, 200, 50)
    assert first.finish_reason == "tool_calls"
    assert complete(model, conversation(0)).content == "Looking"  # asking again gives the same step


def test_a_restarted_model_gives_the_same_next_step_for_the_same_conversation() -> None:
    steps = [ScriptStep(text="one"), ScriptStep(text="two"), ScriptStep(text="three")]
    before_crash = ScriptedModel(steps)
    complete(before_crash, conversation(0))
    complete(before_crash, conversation(1))

    after_restart = ScriptedModel(steps)

    assert complete(after_restart, conversation(2)).content == "three"
    assert complete(after_restart, conversation(1)).content == "two"


def test_error_steps_are_inserted_before_the_next_step_and_take_no_index(tmp_path: Path) -> None:
    model = ScriptedModel.from_file(write_script(tmp_path, SCRIPT))
    request = conversation(1)

    errors = []
    for _ in range(2):
        with pytest.raises(TransientProviderError) as raised:
            complete(model, request)
        errors.append(raised.value)

    assert [(e.message, e.status_code, e.retry_after_s) for e in errors] == [("overloaded", 503, 0.01)] * 2
    assert complete(model, request).content == "done"
    assert complete(model, request).content == "done"


def test_consecutive_error_steps_fire_in_order() -> None:
    model = ScriptedModel([
        ScriptStep(error=ScriptedError("transient", "slow down", status_code=429)),
        ScriptStep(error=ScriptedError("context_length", "too long")),
        ScriptStep(text="fits now"),
    ])

    with pytest.raises(TransientProviderError):
        complete(model, conversation(0))
    with pytest.raises(ContextLengthError):
        complete(model, conversation(0))
    assert complete(model, conversation(0)).content == "fits now"


@pytest.mark.parametrize("kind", ["auth", "bad_request"])
def test_auth_and_bad_request_errors_are_not_transient(kind: ErrorKind) -> None:
    model = ScriptedModel([ScriptStep(error=ScriptedError(kind, "refused", status_code=401))])

    with pytest.raises(ProviderError) as raised:
        complete(model, conversation(0))

    assert not raised.value.transient
    assert raised.value.status_code == 401


def test_after_last_repeat_keeps_answering_with_the_last_response_step() -> None:
    model = ScriptedModel([ScriptStep(text="first"), ScriptStep(text="again", tool_calls=(
        ScriptedToolCall("shell", {"command": "ls"}),))])

    response = complete(model, conversation(5))

    assert response.content == "again"
    assert response.tool_calls[0].id == "call_5_0"  # ids stay unique across repeated turns


def test_after_last_error_raises_script_exhausted(tmp_path: Path) -> None:
    model = ScriptedModel.from_file(write_script(tmp_path, {**SCRIPT, "after_last": "error"}))

    with pytest.raises(ProviderError, match="script exhausted at step 2") as raised:
        complete(model, conversation(2))

    assert not raised.value.transient


def test_trailing_error_steps_fire_once_past_the_end_then_after_last_applies() -> None:
    model = ScriptedModel([ScriptStep(text="only"), ScriptStep(error=ScriptedError("transient"))])

    with pytest.raises(TransientProviderError):
        complete(model, conversation(1))
    assert complete(model, conversation(1)).content == "only"
    assert complete(model, conversation(2)).content == "only"


def test_usage_is_estimated_from_characters_when_the_step_gives_none() -> None:
    model = ScriptedModel([ScriptStep(text="12345678", tool_calls=(ScriptedToolCall("shell", {"a": 1}),))])
    history = (Message("user", "x" * 40),
               Message("assistant", "y" * 8, tool_calls=(ToolCall("c", "shell", "z" * 12),)))
    request = ModelRequest(messages=history)

    usage = complete(model, request).usage

    assert usage.input_tokens == (40 + 8 + 12) // 4
    assert usage.output_tokens == (8 + len('{"a": 1}')) // 4 + 1
    assert usage.cached_input_tokens == 0


def test_output_tokens_are_clamped_to_max_output_tokens() -> None:
    model = ScriptedModel([ScriptStep(text="long", usage=Usage(input_tokens=10, output_tokens=500))])
    request = ModelRequest(messages=conversation(0).messages, max_output_tokens=64)

    response = complete(model, request)

    assert response.usage.output_tokens == 64
    assert response.finish_reason == "length"


def test_on_text_receives_the_text_in_pieces() -> None:
    model = ScriptedModel([ScriptStep(text="Looking at the failing test")])
    pieces: list[str] = []
    request = ModelRequest(messages=conversation(0).messages, on_text=pieces.append)

    response = complete(model, request)

    assert 2 <= len(pieces) <= 3
    assert "".join(pieces) == response.content


def test_arguments_are_serialised_with_sorted_keys_and_raw_strings_pass_through() -> None:
    model = ScriptedModel([ScriptStep(tool_calls=(ScriptedToolCall("edit", {"path": "a", "content": "b"}),
                                                  ScriptedToolCall("shell", "{not json")))])

    calls = complete(model, conversation(0)).tool_calls

    assert [call.arguments for call in calls] == ['{"content": "b", "path": "a"}', "{not json"]
    assert [call.id for call in calls] == ["call_0_0", "call_0_1"]


def test_requests_are_recorded_in_order() -> None:
    model = ScriptedModel([ScriptStep(text="a")])

    complete(model, conversation(0))
    complete(model, conversation(1))

    assert [len(request.messages) for request in model.requests] == [2, 4]


def test_delay_makes_the_answer_cancellable() -> None:
    model = ScriptedModel([ScriptStep(text="slow", delay_s=30)])

    async def cancel_while_waiting() -> None:
        task = asyncio.create_task(model.complete(conversation(0)))
        while not model.requests:
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_while_waiting())


def test_a_script_with_an_unknown_key_is_a_config_error(tmp_path: Path) -> None:
    path = write_script(tmp_path, {"steps": [{"txt": "typo"}]})

    with pytest.raises(ConfigError, match="is invalid"):
        ScriptedModel.from_file(path)


def test_a_missing_script_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        ScriptedModel.from_file(tmp_path / "absent.json")
