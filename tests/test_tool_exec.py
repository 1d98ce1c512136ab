"""Tool calls through the real loop: validation before execution, errors, timeouts, threads, converted values."""

import asyncio
import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from keel import Agent, RunEvent, Runtime, ToolContext, ToolError, tool
from keel.messages import AssistantMessage, Message, SystemMessage, ToolMessage, UserMessage
from keel.models import ScriptedModel, ToolCall
from keel.models.scripted import ScriptItem


class Address(BaseModel):
    street: str
    city: str


class Customer(BaseModel):
    name: str
    address: Address


class LineItem(BaseModel):
    sku: str
    quantity: int


class Order(BaseModel):
    order_id: str
    total: Decimal


class Recorder:
    """A scripted model's answers, recording the conversation the model saw at each request."""

    def __init__(self, answers: list[ScriptItem]) -> None:
        self.answers = answers
        self.seen: list[list[Message]] = []

    def __call__(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> ScriptItem:
        self.seen.append(list(messages))
        return self.answers[len(self.seen) - 1]


def tool_messages(messages: Sequence[Message]) -> list[ToolMessage]:
    return [m for m in messages if isinstance(m, ToolMessage)]


def kinds(events: list[RunEvent], kind: str) -> list[RunEvent]:
    return [e for e in events if e.kind == kind]


async def test_invalid_arguments_are_rejected_named_and_never_executed() -> None:
    received: list[Decimal] = []

    @tool
    def refund_order(order_id: str, amount: Decimal) -> str:
        """Refund an order."""
        received.append(amount)
        return f"refunded {amount} on {order_id}"

    script = Recorder([
        ToolCall("refund_order", {"order_id": "A-1", "amount": "ten"}),
        ToolCall("refund_order", {"order_id": "A-1", "amount": "10.50"}),
        "Refunded 10.50 on A-1.",
    ])
    events: list[RunEvent] = []
    agent = Agent("support", ScriptedModel(script), tools=[refund_order])
    result = await agent.run("refund A-1", runtime=Runtime.in_memory(), on_event=events.append)

    assert result.status == "done"
    assert result.output == "Refunded 10.50 on A-1."
    assert received == [Decimal("10.50")]  # the bad call ran 0 times, the good one exactly once

    # The model saw the rejection as an error tool message before its second answer.
    rejection = script.seen[1][-1]
    assert isinstance(rejection, ToolMessage)
    assert rejection.is_error is True
    assert rejection.name == "refund_order"
    assert rejection.content.startswith("refund_order: argument 'amount' ")
    assert "'ten'" in rejection.content

    first, second = tool_messages(result.messages)
    assert first == rejection
    assert (second.is_error, second.content) == (False, "refunded 10.50 on A-1")

    assert [e.data["arguments"] for e in kinds(events, "tool_call")] == [{"order_id": "A-1", "amount": "10.50"}]
    (rejected,) = kinds(events, "output_rejected")
    assert "refund_order: argument 'amount'" in rejected.data["problems"][0]


async def test_tool_error_reaches_the_model_and_the_run_continues() -> None:
    calls: list[str] = []

    @tool
    async def lookup_order(order_id: str) -> str:
        """Look up an order."""
        calls.append(order_id)
        if order_id != "A-1":
            raise ToolError(f"order {order_id} does not exist; check the order id")
        return "A-1: shipped"

    script = Recorder([
        ToolCall("lookup_order", {"order_id": "A-9999"}),
        ToolCall("lookup_order", {"order_id": "A-1"}),
        "A-1 has shipped.",
    ])
    result = await Agent("support", ScriptedModel(script), tools=[lookup_order]).run(
        "where is my order", runtime=Runtime.in_memory()
    )

    assert result.status == "done"
    assert result.output == "A-1 has shipped."
    assert result.error is None
    assert calls == ["A-9999", "A-1"]
    error = script.seen[1][-1]
    assert isinstance(error, ToolMessage)
    assert (error.is_error, error.content) == (True, "order A-9999 does not exist; check the order id")
    assert [(m.is_error, m.content) for m in tool_messages(result.messages)] == [
        (True, "order A-9999 does not exist; check the order id"),
        (False, "A-1: shipped"),
    ]


async def test_unexpected_exception_fails_the_run_and_keeps_the_messages() -> None:
    calls: list[str] = []

    @tool
    def lookup_order(order_id: str) -> str:
        """Look up an order."""
        calls.append(f"lookup {order_id}")
        return "A-1: paid"

    @tool
    def ship_order(order_id: str) -> str:
        """Ship an order."""
        calls.append(f"ship {order_id}")
        warehouses: dict[str, str] = {}
        return warehouses["north"]  # KeyError: a bug in the tool, not a failure the model should handle

    model = ScriptedModel([
        ToolCall("lookup_order", {"order_id": "A-1"}),
        ToolCall("ship_order", {"order_id": "A-1"}),
        "never reached",
    ])
    events: list[RunEvent] = []
    result = await Agent("support", model, tools=[lookup_order, ship_order]).run(
        "ship A-1", runtime=Runtime.in_memory(), on_event=events.append
    )

    assert result.status == "failed"
    assert result.error_type == "ToolFailed"
    assert result.output is None
    assert result.error is not None
    assert "'ship_order'" in result.error
    assert "KeyError" in result.error
    assert "'north'" in result.error
    assert calls == ["lookup A-1", "ship A-1"]
    assert model.calls == 2  # the model was not asked again after the failure
    assert result.steps == 2

    system, user, ask_lookup, looked_up, ask_ship, failed = result.messages
    assert isinstance(system, SystemMessage)
    assert isinstance(user, UserMessage)
    assert user.content == "ship A-1"
    assert isinstance(ask_lookup, AssistantMessage)
    assert [c.name for c in ask_lookup.tool_calls] == ["lookup_order"]
    assert isinstance(looked_up, ToolMessage)
    assert (looked_up.is_error, looked_up.content) == (False, "A-1: paid")
    assert isinstance(ask_ship, AssistantMessage)
    assert [c.name for c in ask_ship.tool_calls] == ["ship_order"]
    assert isinstance(failed, ToolMessage)
    assert failed.is_error is True
    assert failed.call_id == ask_ship.tool_calls[0].id
    assert "ship_order" in failed.content

    (finished,) = kinds(events, "run_finished")
    assert finished.data["status"] == "failed"
    assert finished.data["error_type"] == "ToolFailed"


async def test_timeout_becomes_an_error_message_and_the_run_continues() -> None:
    never_set = asyncio.Event()
    cancelled: list[str] = []

    @tool(timeout=0.05)
    async def check_stock(sku: str) -> str:
        """Ask the warehouse for stock."""
        try:
            await never_set.wait()
        except asyncio.CancelledError:
            cancelled.append(sku)
            raise
        return "in stock"

    script = Recorder([ToolCall("check_stock", {"sku": "A"}), "The warehouse did not answer."])
    result = await Agent("support", ScriptedModel(script), tools=[check_stock]).run(
        "is A in stock", runtime=Runtime.in_memory()
    )

    assert result.status == "done"
    assert result.output == "The warehouse did not answer."
    assert cancelled == ["A"]  # the call was cancelled, not left running
    timed_out = script.seen[1][-1]
    assert isinstance(timed_out, ToolMessage)
    assert timed_out.is_error is True
    assert "check_stock" in timed_out.content
    assert "0.05 s timeout" in timed_out.content


async def test_unknown_tool_is_rejected_and_never_executed() -> None:
    calls: list[str] = []

    @tool
    def lookup_order(order_id: str) -> str:
        """Look up an order."""
        calls.append("lookup_order")
        return "ok"

    @tool
    def delete_everything() -> str:
        """Not given to the agent."""
        calls.append("delete_everything")
        return "deleted"

    script = Recorder([ToolCall("delete_everything", {}), "I cannot do that."])
    events: list[RunEvent] = []
    result = await Agent("support", ScriptedModel(script), tools=[lookup_order]).run(
        "delete everything", runtime=Runtime.in_memory(), on_event=events.append
    )

    assert result.status == "done"
    assert calls == []
    assert kinds(events, "tool_call") == []
    rejection = script.seen[1][-1]
    assert isinstance(rejection, ToolMessage)
    assert rejection.is_error is True
    assert rejection.name == "delete_everything"
    assert rejection.content == "unknown tool 'delete_everything'; available tools: lookup_order"


async def test_one_invalid_call_in_a_turn_stops_every_call_in_it() -> None:
    added: list[tuple[int, int]] = []

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        added.append((a, b))
        return a + b

    script = Recorder([
        [ToolCall("add", {"a": 1, "b": 2}), ToolCall("add", {"a": "one", "b": 2})],
        [ToolCall("add", {"a": 1, "b": 2}), ToolCall("add", {"a": 3, "b": 4})],
        "3 and 7.",
    ])
    result = await Agent("calc", ScriptedModel(script), tools=[add]).run("add", runtime=Runtime.in_memory())

    assert result.status == "done"
    assert added == [(1, 2), (3, 4)]  # nothing from the first turn ran
    valid, invalid = script.seen[1][-2:]
    assert isinstance(valid, ToolMessage)
    assert isinstance(invalid, ToolMessage)
    assert valid.is_error is True
    assert valid.content.startswith("not run: another call in this turn was invalid")
    assert invalid.is_error is True
    assert invalid.content.startswith("add: argument 'a' ")
    assert [(m.is_error, m.content) for m in tool_messages(result.messages)[2:]] == [(False, "3"), (False, "7")]


async def test_sync_tool_runs_in_a_thread() -> None:
    threads: list[int] = []

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        threads.append(threading.get_ident())
        return a + b

    model = ScriptedModel([ToolCall("add", {"a": 1, "b": 2}), "The sum is 3."])
    result = await Agent("calc", model, tools=[add]).run("add 1 and 2", runtime=Runtime.in_memory())

    assert result.status == "done"
    assert result.output == "The sum is 3."
    assert len(threads) == 1
    assert threads[0] != threading.get_ident()  # not on the event loop's thread
    (answer,) = tool_messages(result.messages)
    assert (answer.is_error, answer.content) == (False, "3")


async def test_tool_receives_validated_converted_values_and_its_context() -> None:
    received: dict[str, Any] = {}

    @tool
    async def place_order(
        ctx: ToolContext, customer: Customer, items: list[LineItem], total: Decimal, deliver_at: datetime
    ) -> Order:
        """Place an order."""
        received.update(ctx=ctx, customer=customer, items=items, total=total, deliver_at=deliver_at)
        return Order(order_id="A-1", total=total)

    arguments = {
        "customer": {"name": "Ada", "address": {"street": "1 Main St", "city": "Oslo"}},
        "items": [{"sku": "A", "quantity": "2"}],
        "total": "10.50",
        "deliver_at": "2024-05-01T12:30:00Z",
    }
    model = ScriptedModel([ToolCall("place_order", arguments, "call_7"), "Order A-1 placed."])
    result = await Agent("shop", model, tools=[place_order]).run("order", runtime=Runtime.in_memory())

    assert result.status == "done"
    customer = received["customer"]
    assert isinstance(customer, Customer)
    assert isinstance(customer.address, Address)
    assert customer.address.city == "Oslo"
    assert received["items"] == [LineItem(sku="A", quantity=2)]
    assert isinstance(received["items"][0], LineItem)
    total = received["total"]
    assert isinstance(total, Decimal)
    assert str(total) == "10.50"
    assert received["deliver_at"] == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)

    ctx = received["ctx"]
    assert isinstance(ctx, ToolContext)
    assert (ctx.run_id, ctx.call_id, ctx.step) == (result.run_id, "call_7", 1)
    assert ctx.idempotency_key == f"{result.run_id}/1/0"

    (answer,) = tool_messages(result.messages)
    assert answer.is_error is False
    assert json.loads(answer.content) == {"order_id": "A-1", "total": "10.50"}
