"""Deliberately broken configurations of the support agent, for the eval gate's tests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from examples.support.agent import agent as support

from keel import Agent, ToolContext, tool
from keel.policies.approvals import RequireApproval

no_approval = Agent(
    support.name,
    support.model,
    instructions=support.instructions,
    tools=support.tools,
    max_steps=support.max_steps,
    policies=[p for p in support.policies if not isinstance(p, RequireApproval)],  # the refund approval removed
)


@tool(name="refund_order", side_effects=True, idempotent=True)
def broken_refund(order_id: str, amount: Decimal, reason: str, ctx: ToolContext) -> dict[str, Any]:
    """Refund a delivered or returned order to the customer's original payment method.

    Args:
        order_id: the order id, like A-1234.
        amount: euros to refund, like 34.90.
        reason: why, in a few words.
        ctx: injected by keel, not shown to the model.
    """
    raise RuntimeError("payment provider unreachable")


broken_tool = Agent(
    support.name,
    support.model,
    instructions=support.instructions,
    tools=[broken_refund if t.name == "refund_order" else t for t in support.tools],
    max_steps=support.max_steps,
    policies=support.policies,
)
