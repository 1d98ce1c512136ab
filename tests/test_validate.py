"""Validation of the model's answer: a tool call written as text is malformed output, never an answer."""

from __future__ import annotations

import json

import pytest

from keel import Agent, RunEvent, Runtime, tool
from keel.models import ScriptedModel

MEMORY = Runtime.in_memory()


def refund_tool() -> tuple[object, list[tuple[str, float]]]:
    refunds: list[tuple[str, float]] = []

    @tool
    def refund_order(order_id: str, amount: float) -> str:
        """Refund an order.

        Args:
            order_id: the order.
            amount: how much to refund.
        """
        refunds.append((order_id, amount))
        return f"refunded {amount} on {order_id}"

    return refund_order, refunds


CALL = {"order_id": "A-1", "amount": 120.0}
WRITTEN_CALLS = [
    json.dumps({"name": "refund_order", "arguments": CALL}),
    json.dumps({"name": "refund_order", "arguments": json.dumps(CALL)}),
    json.dumps({"tool": "refund_order", "arguments": CALL}),
    json.dumps({"name": "refund_order", "parameters": CALL}),
    json.dumps({"type": "function", "function": {"name": "refund_order", "arguments": json.dumps(CALL)}}),
    json.dumps([{"name": "refund_order", "arguments": CALL}]),
    json.dumps({"tool_calls": [{"name": "refund_order", "arguments": CALL}]}),
    "```json\n" + json.dumps({"name": "refund_order", "arguments": CALL}, indent=2) + "\n```",
    "  " + json.dumps({"name": "some_tool_it_does_not_have", "arguments": {}}),
]


@pytest.mark.parametrize("text", WRITTEN_CALLS)
async def test_a_tool_call_written_as_the_answer_is_re_asked_and_never_run(text: str) -> None:
    refund, refunds = refund_tool()
    model = ScriptedModel([text, "I cannot refund that order without a confirmation."])
    events: list[RunEvent] = []
    agent = Agent("support", model, tools=[refund])  # type: ignore[list-item]
    result = await agent.run("refund A-1", runtime=MEMORY, on_event=events.append)
    assert result.status == "done"
    assert result.output == "I cannot refund that order without a confirmation."
    assert refunds == []  # rejected, and never executed
    [rejected] = [e for e in events if e.kind == "output_rejected"]
    problem = rejected.data["problems"][0]
    assert "tool call written as text" in problem and "tool calling" in problem


async def test_a_tool_call_written_as_the_answer_every_time_fails_the_run() -> None:
    refund, refunds = refund_tool()
    text = json.dumps({"name": "refund_order", "arguments": CALL})
    model = ScriptedModel([text] * 3)
    agent = Agent("support", model, tools=[refund], output_retries=2)  # type: ignore[list-item]
    result = await agent.run("refund A-1", runtime=MEMORY)
    assert result.status == "failed" and result.error_type == "ModelError"
    assert "tool call written as text" in (result.error or "")
    assert refunds == []


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "Ada Lovelace", "born": 1815}',  # JSON that is not a call
        'Call refund_order with {"order_id": "A-1"} once you have the receipt.',  # prose around JSON
        "[1, 2, 3]",
        '{"arguments": {"a": 1}}',  # no tool named
    ],
)
async def test_json_that_is_not_a_tool_call_is_an_answer(text: str) -> None:
    refund, _ = refund_tool()
    result = await Agent("support", ScriptedModel([text]), tools=[refund]).run("x", runtime=MEMORY)  # type: ignore[list-item]
    assert (result.status, result.output) == ("done", text)
