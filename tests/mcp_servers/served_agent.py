"""An agent that `keel mcp serve` exposes in the tests; a scripted model adds the numbers in the task."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from keel import Agent, ToolCall, tool
from keel.messages import Message, ToolMessage, UserMessage
from keel.models import ScriptedModel


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first number.
        b: the second number.
    """
    return a + b


@tool(side_effects=True, requires_approval=True)
def refund(order: str) -> str:
    """Refund an order (needs a person's approval)."""
    return f"refunded {order}"


def script(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> Any:
    last = messages[-1]
    if isinstance(last, ToolMessage):
        return f"The sum is {last.content}."
    task = next(m.content for m in messages if isinstance(m, UserMessage))
    if "refund" in task:
        return ToolCall("refund", {"order": "A-1"})
    a, b = (int(n) for n in re.findall(r"-?\d+", task)[:2])
    return ToolCall("add", {"a": a, "b": b})


agent = Agent("adder", ScriptedModel(script), instructions="Add the two numbers in the task.", tools=[add, refund])
