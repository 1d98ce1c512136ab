"""The agent `bench/service_load.py` serves: one tool call then an answer, from ScriptedModel."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from keel import Agent, tool
from keel.messages import Message, ToolCall, ToolMessage
from keel.models import ScriptedModel

TOOL_SECONDS = float(os.environ.get("BENCH_TOOL_SECONDS", "1.0"))


@tool
async def add(a: int, b: int) -> int:
    """Add two numbers, taking as long as a real tool's call would (BENCH_TOOL_SECONDS, default 1 s).

    Args:
        a: the first number.
        b: the second number.
    """
    await asyncio.sleep(TOOL_SECONDS)
    return a + b


def script(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> Any:
    results = [m for m in messages if isinstance(m, ToolMessage)]
    return f"The sum is {results[-1].content}." if results else ToolCall("add", {"a": 2, "b": 3})


calc = Agent(name="calc", model=ScriptedModel(script), tools=[add], max_steps=4)
