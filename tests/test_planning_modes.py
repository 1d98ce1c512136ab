"""Explicit planning through both tool modes of a real provider client, on a loopback HTTP server.

The server plays an OpenAI-compatible endpoint (as llama.cpp, vLLM or Ollama do) answering from a script:
in ``native`` mode with tool calls, in ``envelope`` mode (the embedded model's) with one JSON object per
reply. The plan request is a structured-output request either way: the ``submit_plan`` tool natively, a
branch of the envelope's JSON Schema otherwise.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from keel import Agent, Runtime, tool
from keel.models import ModelProfile
from keel.models.openai import OpenAIModel
from keel.planning import PLAN_TOOL, PROGRESS_TOOL, Plan, plan_spec
from keel.testing import CompletionRequest, completions_server

PLAN = {
    "goal": "add 2 and 3",
    "steps": [{"action": "add the numbers", "tool": "add"}, {"action": "give the sum", "depends_on": [1]}],
    "blockers": [],
    "success_criteria": ["the sum is given"],
}


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first number.
        b: the second number.
    """
    return a + b


def native(*calls: tuple[str, dict[str, Any]], text: str | None = None) -> dict[str, Any]:
    tool_calls = [
        {"id": f"call_{name}_{k}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        for k, (name, args) in enumerate(calls)
    ]
    return {"content": text, **({"tool_calls": tool_calls} if tool_calls else {})}


def envelope(name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"content": json.dumps({"tool": name, "arguments": args})}


SCRIPTS = {
    "native": [
        native((PLAN_TOOL, PLAN)),
        native(("add", {"a": 2, "b": 3})),
        native((PROGRESS_TOOL, {"step": 1, "status": "done"}), (PROGRESS_TOOL, {"step": 2, "status": "done"})),
        native(text="The sum is 5."),
    ],
    "envelope": [
        envelope(PLAN_TOOL, PLAN),
        envelope("add", {"a": 2, "b": 3}),
        envelope(PROGRESS_TOOL, {"step": 1, "status": "done", "note": "5"}),
        envelope(PROGRESS_TOOL, {"step": 2, "status": "done", "note": ""}),
        envelope("final_answer", {"answer": "The sum is 5."}),
    ],
}


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]]:
    """A chat-completions endpoint on loopback: answers from the list it yields, records each body."""
    replies: list[dict[str, Any]] = []
    bodies: list[dict[str, Any]] = []

    def answer(request: CompletionRequest) -> dict[str, Any]:
        bodies.append(request.body)
        message = replies[len(bodies) - 1]
        return {
            "id": f"chatcmpl-{len(bodies)}",
            "object": "chat.completion",
            "created": 1,
            "model": "served",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", **message},
                    "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                }
            ],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
        }

    with completions_server(answer) as url:
        yield url, replies, bodies


def offered_tools(body: dict[str, Any]) -> list[str]:
    """The tools one request offered: native tool specs, or the envelope schema's branches."""
    if "tools" in body:
        return [t["function"]["name"] for t in body["tools"]]
    schema = body["response_format"]["json_schema"]["schema"]
    return [branch["properties"]["tool"]["const"] for branch in schema["anyOf"]]


@pytest.mark.parametrize("mode", ["native", "envelope"])
def test_explicit_planning_in_both_tool_modes(
    mode: str, server: tuple[str, list[dict[str, Any]], list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    url, replies, bodies = server
    replies.extend(SCRIPTS[mode])
    profile = ModelProfile(tool_mode="native" if mode == "native" else "envelope", context_window=16_000)

    async def run() -> Any:
        model = OpenAIModel("served", base_url=url, profile=profile, max_retries=0)
        try:
            agent = Agent("adder", model, tools=[add], planning="explicit")
            return await agent.run("What is 2 + 3?", runtime=Runtime.in_memory())
        finally:
            await model.aclose()

    result = asyncio.run(run())
    assert (result.status, result.output) == ("done", "The sum is 5."), result.error
    assert result.plan is not None and [s["status"] for s in result.plan["steps"]] == ["done", "done"]
    assert len(bodies) == len(SCRIPTS[mode])

    planning, acting = bodies[0], bodies[1]
    extra = ["final_answer"] if mode == "envelope" else []
    assert offered_tools(planning) == [PLAN_TOOL, *extra]
    assert offered_tools(acting) == ["add", "give_up", PROGRESS_TOOL, *extra]
    if mode == "envelope":
        # the plan's schema is the envelope branch's arguments: the server constrains the reply to it
        branch = planning["response_format"]["json_schema"]["schema"]["anyOf"][0]
        assert branch["properties"]["arguments"]["required"] == ["goal", "steps", "success_criteria"]
        assert "submit_plan(goal: string, steps: {action: string" in planning["messages"][0]["content"]
    # the plan is at the end of every action request's context
    last = acting["messages"][-1]
    assert last["role"] == "user" and "[pending] 1. add the numbers (tool: add)" in last["content"]


def test_the_plan_schema_compiles_to_a_llama_cpp_grammar() -> None:
    import xllamacpp

    from keel.models._envelope import envelope_schema

    grammar = xllamacpp.json_schema_to_grammar(envelope_schema([plan_spec()]))
    assert isinstance(grammar, str) and "goal" in grammar and "success_criteria" in grammar
    assert Plan.model_validate(PLAN).steps[1].depends_on == [1]
