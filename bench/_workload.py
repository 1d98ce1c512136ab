"""The peers' benchmark workload, on keel.

One run is N model calls: for turns 0..N-2 the scripted model answers a tool call
``add(a=turn, b=1)`` with id ``call_<turn>``, then the final answer ``"done"``. The turn number comes
from the length of the history the model is given (O(1)); the tool is ``async def add(a, b)`` and
counts its calls so every run can be checked. This is the contract of the peer scripts
(LangGraph, PydanticAI, OpenAI Agents SDK), so per-step figures compare directly.

Variants (``<runtime>`` or ``<runtime>_response``):
  * runtime ``async`` / ``sync``: ``Runtime.in_memory()``, ``await agent.run`` / ``agent.run_sync``;
    ``sqlite``: the durable runtime on ``sqlite:///<workdir>/keel.db``.
  * answers: ``ScriptedModel`` returning ``ToolCall`` / ``str`` (ScriptedModel builds the message
    and estimates the request's usage from the prompt), or with ``_response`` returning a full
    ``ModelResponse`` that carries its usage, as a real provider does.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from keel import Agent, RunError, Runtime
from keel.messages import AssistantMessage, Message, ModelResponse, ToolCall, Usage
from keel.models import ScriptedModel

COUNTERS: dict[str, int] = {"tool": 0, "model": 0}

RUNTIMES = ("async", "sync", "sqlite")
HISTORY_OFFSET = 2  # the system prompt and the task precede the (assistant, tool) pairs


def turn_of(messages: Sequence[Message]) -> int:
    """The model call's turn, from the history's length: [system, user, (assistant, tool)*]."""
    return (len(messages) - HISTORY_OFFSET) // 2


def make_script(steps: int, full_response: bool):
    """The scripted model's function ``(messages, tools) -> answer``."""
    if full_response:
        usage = Usage(input_tokens=0, output_tokens=0, requests=1)

        def respond(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> ModelResponse:
            turn = turn_of(messages)
            if turn < steps - 1:
                call = ToolCall("add", {"a": turn, "b": 1}, f"call_{turn}")
                return ModelResponse(AssistantMessage(tool_calls=[call]), usage, "scripted", "tool_calls")
            return ModelResponse(AssistantMessage(content="done"), usage, "scripted", "stop")

        return respond

    def answer(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> ToolCall | str:
        turn = turn_of(messages)
        if turn < steps - 1:
            return ToolCall("add", {"a": turn, "b": 1}, f"call_{turn}")
        return "done"

    return answer


class PacedModel:
    """Wraps a model: awaits ``asyncio.sleep(latency)`` and the harness's pause before answering.

    Used only for the concurrency and idle-memory phases; the per-step phases call the
    `ScriptedModel` directly.
    """

    def __init__(self, inner: ScriptedModel, latency: float, pause: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.profile = inner.profile
        self.latency = latency
        self.pause = pause

    async def request(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]], *, max_tokens: int | None = None
    ) -> ModelResponse:
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.pause is not None:
            await self.pause.hit(turn_of(messages))
        return await self.inner.request(messages, tools, max_tokens=max_tokens)

    async def count_tokens(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> int:
        return await self.inner.count_tokens(messages, tools)


def make_agent(
    steps: int,
    *,
    full_response: bool = False,
    latency: float = 0.0,
    pause: Any = None,
    counters: dict[str, int] | None = None,
) -> Agent:
    """The benchmark agent: one tool, ``add``, and a model scripted for ``steps`` calls."""
    counts = COUNTERS if counters is None else counters

    async def add(a: int, b: int) -> int:
        """Add two integers."""
        counts["tool"] += 1
        return a + b

    model: Any = ScriptedModel(make_script(steps, full_response))
    if latency or pause is not None:
        model = PacedModel(model, latency, pause)
    return Agent("bench", model, instructions="Use the add tool.", tools=[add], max_steps=steps + 5)


def parse_variant(variant: str) -> tuple[str, bool]:
    """``sqlite_response`` -> (``sqlite``, True); raises SystemExit on an unknown variant."""
    runtime, _, answers = variant.partition("_")
    if runtime not in RUNTIMES or answers not in ("", "response"):
        raise SystemExit(f"unknown variant {variant!r}: use one of {', '.join(RUNTIMES)}, optionally with '_response'")
    return runtime, answers == "response"


def setup(variant, steps, latency, workdir, pause, counters=None):
    """Build one variant; returns ``(run_one, close)`` as the peers' harness expects."""
    runtime, full_response = parse_variant(variant)
    agent = make_agent(steps, full_response=full_response, latency=latency, pause=pause, counters=counters)

    def output(result) -> str:
        if result.status != "done" or result.steps != steps:
            raise RuntimeError(f"run {result.run_id} ended {result.status} after {result.steps} steps: {result.error}")
        return str(result.output)

    if runtime == "sync":
        rt = Runtime.in_memory()
        return (lambda i: output(agent.run_sync("go", runtime=rt))), None

    close = None
    if runtime == "sqlite":
        if workdir is None:
            raise SystemExit("the sqlite variant needs a working directory for its database")
        rt = Runtime(f"sqlite:///{os.path.join(workdir, 'keel.db')}")

        def close() -> None:
            # Stops DBOS's threads and releases the database; the engine API is internal, so a
            # renamed one only skips this (the benchmark process ends right after).
            try:
                from keel.durable import DurableEngine

                DurableEngine.current().shutdown()
            except (ImportError, AttributeError, RunError):
                pass
    else:
        rt = Runtime.in_memory()

    async def run_one(i: int) -> str:
        return output(await agent.run("go", runtime=rt))

    return run_one, close
