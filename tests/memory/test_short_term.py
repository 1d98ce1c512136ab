"""Short-term memory keeps every request inside the model's prompt budget."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from keel import Agent, Runtime, ToolCall, tool
from keel.exceptions import ModelError
from keel.memory import ShortTermMemory
from keel.messages import AssistantMessage, Message, SystemMessage, ToolMessage, UserMessage
from keel.models import ModelProfile, ScriptedModel

PROFILE = ModelProfile(context_window=4_000, max_output_tokens=500)


@tool
def fetch_page(n: int) -> str:
    """Return a large page of text.

    Args:
        n: the page number.
    """
    return f"page {n}: " + ("lorem ipsum dolor sit amet " * 400)  # about 10,800 characters


def test_200_turns_with_large_tool_outputs_never_exceed_the_budget() -> None:
    seen: list[Sequence[Message]] = []
    model: ScriptedModel

    def script(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> Any:
        seen.append(list(messages))
        turn = len(seen) - 1
        return ToolCall("fetch_page", {"n": turn}) if turn < 200 else "read them all"

    model = ScriptedModel(script, profile=PROFILE)
    agent = Agent("reader", model, tools=[fetch_page], max_steps=250)
    events: list[Any] = []
    result = agent.run_sync("read 200 pages", runtime=Runtime.in_memory(), on_event=events.append)

    assert result.status == "done" and result.steps == 201
    budget = PROFILE.context_window - PROFILE.max_output_tokens
    windows = [e.data["window"] for e in events if e.kind == "model_response"]
    assert len(windows) == 201
    assert max(w["tokens"] for w in windows) <= budget
    assert all(w["budget"] == budget for w in windows)
    # the system prompt and the task stay pinned in every request
    for msgs in seen:
        assert isinstance(msgs[0], SystemMessage) and msgs[1] == UserMessage("read 200 pages")
    # recount each window independently: the memory's bookkeeping agrees with a fresh count
    for msgs in seen[::20]:
        tools = agent.tool_specs
        assert asyncio.run(model.count_tokens(msgs, tools)) <= budget
    # the newest tool result is kept whole when it fits; older ones are shortened with a marker
    last = seen[-1]
    shortened = [m for m in last if isinstance(m, ToolMessage) and m.truncated]
    assert any("shortened by keel" in m.content for m in shortened)
    # the full history is intact
    full_results = [m for m in result.messages if isinstance(m, ToolMessage)]
    assert len(full_results) == 200 and not any(m.truncated for m in full_results)


async def test_oldest_tool_results_are_shortened_first() -> None:
    model = ScriptedModel(["x"], profile=ModelProfile(context_window=2_000, max_output_tokens=200))
    big = "y" * 3000
    messages: list[Message] = [
        SystemMessage("sys"),
        UserMessage("task"),
        AssistantMessage(tool_calls=[ToolCall("t", {}, "c1")]),
        ToolMessage("c1", "t", big),
        AssistantMessage(tool_calls=[ToolCall("t", {}, "c2")]),
        ToolMessage("c2", "t", big),
    ]
    window = await ShortTermMemory().fit(messages, model, [])
    assert window.tokens <= 1_800
    first, second = window.messages[3], window.messages[5]
    assert isinstance(first, ToolMessage) and isinstance(second, ToolMessage)
    assert first.truncated and len(first.content) < len(big)
    assert len(second.content) >= len(first.content)
    assert messages[3] == ToolMessage("c1", "t", big)  # the history itself is untouched


async def test_turns_are_left_out_when_shortening_is_not_enough() -> None:
    model = ScriptedModel(["x"], profile=ModelProfile(context_window=700, max_output_tokens=100))
    messages: list[Message] = [SystemMessage("sys"), UserMessage("task")]
    for i in range(40):
        messages.append(AssistantMessage(content=f"thinking about step {i} " * 5))
        messages.append(UserMessage(f"more {i}"))
    window = await ShortTermMemory().fit(messages, model, [])
    assert window.tokens <= 600 and window.omitted > 0
    assert window.messages[:2] == messages[:2]
    assert isinstance(window.messages[2], UserMessage) and "left out" in window.messages[2].content
    assert window.messages[-1] == messages[-1]


async def test_pinned_messages_too_large_is_a_clear_error() -> None:
    model = ScriptedModel(["x"], profile=ModelProfile(context_window=300, max_output_tokens=100))
    with pytest.raises(ModelError, match="shorten the instructions or the task"):
        await ShortTermMemory().fit([SystemMessage("s" * 3000), UserMessage("task")], model, [])


async def test_explicit_budget_is_honoured() -> None:
    model = ScriptedModel(["x"])
    memory = ShortTermMemory(budget=1_000)
    assert memory.prompt_budget(model) == 1_000
    msgs: list[Message] = [
        SystemMessage("s"),
        UserMessage("t"),
        AssistantMessage(tool_calls=[ToolCall("t", {}, "c")]),
        ToolMessage("c", "t", "z" * 20_000),
    ]
    window = await memory.fit(msgs, model, [])
    assert window.tokens <= 1_000 and window.shortened == 1
