"""The loop on the real embedded model, over HTTP through the openai client: mechanics, not accuracy."""

from __future__ import annotations

import pytest

from keel import Agent, RunEvent, Runtime, tool
from keel.messages import AssistantMessage, ToolMessage

pytestmark = pytest.mark.model


def test_a_tool_round_trip_ends_the_loop() -> None:
    received: list[tuple[int, int]] = []

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers and return the sum.

        Args:
            a: the first number.
            b: the second number.
        """
        received.append((a, b))
        return a + b

    events: list[RunEvent] = []
    agent = Agent("calc", "local", instructions="You do arithmetic with the add tool.", tools=[add], max_steps=4)
    result = agent.run_sync("What is 17 plus 25?", runtime=Runtime.in_memory(), on_event=events.append)

    assert result.status in ("done", "failed")  # the loop ended by itself
    assert 1 <= result.steps <= 4
    assert result.usage.requests == result.steps and result.usage.input_tokens > 0
    # every executed call had arguments of the declared types; nothing malformed ran
    assert all(isinstance(a, int) and isinstance(b, int) for a, b in received)
    executed = [m for m in result.messages if isinstance(m, ToolMessage) and not m.rejected]
    assert len(executed) == len(received)
    assert not [e for e in events if e.kind == "output_rejected"]  # the envelope grammar kept output valid
    # each model turn was either a tool call or a final answer
    for message in result.messages:
        if isinstance(message, AssistantMessage):
            assert message.tool_calls or message.content
    windows = [e.data["window"] for e in events if e.kind == "model_response"]
    assert all(w["tokens"] <= w["budget"] for w in windows)
