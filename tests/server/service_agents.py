"""Agents served by `keel serve` in the service tests, driven by ScriptedModel (no real model)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keel import Agent, ToolError, tool
from keel.messages import Message, ToolCall, ToolMessage, UserMessage
from keel.models import ScriptedModel
from keel.policies.approvals import RequireApproval
from keel.policies.filters import ContentFilter

REFUNDS: list[tuple[str, str]] = []


@tool
def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: the first number.
        b: the second number.
    """
    return a + b


@tool
def divide(a: int, b: int) -> float:
    """Divide a by b.

    Args:
        a: the dividend.
        b: the divisor.
    """
    if b == 0:
        raise ToolError("cannot divide by zero; ask for another divisor")
    return a / b


@tool(side_effects=True)
def refund_order(order_id: str, amount: str) -> str:
    """Refund an order.

    Args:
        order_id: the order.
        amount: the amount to refund.
    """
    REFUNDS.append((order_id, amount))
    return f"Refunded {amount} on {order_id}."


def _task(messages: Sequence[Message]) -> str:
    return next((m.content for m in messages if isinstance(m, UserMessage)), "")


def _results(messages: Sequence[Message]) -> list[ToolMessage]:
    return [m for m in messages if isinstance(m, ToolMessage)]


def calc_script(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> Any:
    """Add the two numbers in the task ('add 2 and 3'), or give up when the task says 'fail'."""
    task = _task(messages)
    done = _results(messages)
    if "fail" in task:
        return ToolCall("give_up", {"reason": "asked to fail"})
    numbers = [int(w) for w in task.replace(",", " ").split() if w.lstrip("-").isdigit()] or [1, 1]
    operation = "divide" if task.startswith("divide") else "add"
    if not done:
        return ToolCall(operation, {"a": numbers[0], "b": numbers[-1]})
    if done[-1].is_error:
        return f"That did not work: {done[-1].content}"
    return f"The {'quotient' if operation == 'divide' else 'sum'} is {done[-1].content}."


def refund_script(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> Any:
    """Refund the order named in the task ('refund A-1 249.00'), then report what the tool said."""
    words = _task(messages).split()
    done = _results(messages)
    if not done:
        return ToolCall("refund_order", {"order_id": words[1], "amount": words[2]})
    return done[-1].content


def planned_script(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> Any:
    """Plan to add the two numbers in the task, add them, mark the step done, answer."""
    if any(t["name"] == "submit_plan" for t in tools):
        step = {"action": "add the two numbers", "tool": "add", "depends_on": []}
        return ToolCall("submit_plan", {"goal": "the sum", "steps": [step], "success_criteria": ["a sum is given"]})
    done = _results(messages)
    if not done:
        numbers = [int(w) for w in _task(messages).split() if w.isdigit()]
        return ToolCall("add", {"a": numbers[0], "b": numbers[-1]})
    if done[-1].name == "add":
        return ToolCall("update_plan", {"step": 1, "status": "done", "note": f"the sum is {done[-1].content}"})
    return f"The sum is {next(m.content for m in done if m.name == 'add')}."


calc = Agent(name="calc", model=ScriptedModel(calc_script), tools=[add, divide], max_steps=5)
support = Agent(
    name="support",
    model=ScriptedModel(refund_script),
    tools=[refund_order],
    policies=[RequireApproval(["refund_order"], reason="refunds need a person's approval")],
    max_steps=5,
)
planner = Agent(
    name="planner", model=ScriptedModel(planned_script), tools=[add], planning="explicit", max_steps=8, policies=[]
)


GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
CARD = "4111 1111 1111 1111"


@tool
def read_config() -> str:
    """Read the deployment config."""
    return f"GITHUB_TOKEN={GITHUB_TOKEN} region=eu"


def vault_script(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> Any:
    """Read the config, then answer with a card number."""
    return ToolCall("read_config", {}) if not _results(messages) else f"Charged card {CARD}."


vault = Agent(name="vault", model=ScriptedModel(vault_script), tools=[read_config], policies=[ContentFilter()])


@tool(side_effects=True)
def ship_order(order_id: str, gate: str) -> str:
    """Ship an order once the file `gate` exists (the test opens it while the call is in flight).

    Args:
        order_id: the order.
        gate: a file path.
    """
    deadline = time.monotonic() + 60
    while not Path(gate).exists():  # a bounded wait on a condition the test sets
        if time.monotonic() > deadline:
            raise ToolError(f"{gate} never appeared")
        time.sleep(0.02)
    return f"shipped {order_id}"


def ship_script(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> Any:
    """Ship the order named in the task ('ship A-1 /path/to/gate'), then report what the tool said."""
    words = _task(messages).split()
    done = _results(messages)
    if not done:
        return ToolCall("ship_order", {"order_id": words[1], "gate": words[2]})
    return done[-1].content


shipping = Agent(name="shipping", model=ScriptedModel(ship_script), tools=[ship_order], max_steps=3)
