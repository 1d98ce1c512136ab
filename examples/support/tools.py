"""The support agent's tools: thin keel wrappers over the rules in `shop.py` and the knowledge base.

`search_kb` searches the articles by meaning in long-term memory (`memory.py`), or by keywords
(`kb.py`) when the memory extra is not installed.

Each call opens the database named by `$SUPPORT_DB` (default `.keel/support.db`, created from the
seed on first use), read when the call runs so tests can point it elsewhere. Expected failures
become `ToolError`s the model reads; the docstrings are what the model sees, so they stay short.
The example ids in argument descriptions (A-1234, C-1234) match no record: small models sometimes
copy them, and then get "does not exist" instead of acting on a real order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Literal

from keel import Tool, ToolContext, ToolError, tool
from keel.sandbox import Limits, python_tool

from . import data, kb, memory, shop
from .shop import Address

__all__ = [
    "TOOLS",
    "Address",
    "escalate_to_human",
    "find_customer",
    "list_orders",
    "lookup_order",
    "refund_order",
    "run_python",
    "search_kb",
    "track_shipment",
    "update_shipping_address",
]

OrderStatus = Literal["placed", "paid", "shipped", "delivered", "cancelled", "returned"]


@contextmanager
def _shop() -> Iterator[sqlite3.Connection]:
    """A connection to the shop's database that reports `ShopError`s to the model as `ToolError`s."""
    try:
        with data.open_database() as conn:
            yield conn
    except shop.ShopError as exc:
        raise ToolError(str(exc)) from None


@tool
def find_customer(query: str) -> dict[str, Any]:
    """Find a customer by email (exact) or by name, to get the customer id.

    Args:
        query: the customer's email address or name.
    """
    with _shop() as conn:
        return shop.find_customer(conn, query)


@tool
def lookup_order(order_id: str) -> dict[str, Any]:
    """Get an order: status, items, total, delivery date and whether a refund is possible.

    Args:
        order_id: the order id, like A-1234.
    """
    with _shop() as conn:
        return shop.lookup_order(conn, order_id, data.today())


@tool
def list_orders(customer_id: str, status: OrderStatus | None = None) -> dict[str, Any]:
    """List a customer's 10 most recent orders with id, status and total.

    Args:
        customer_id: the customer id, like C-1234 (from find_customer).
        status: only orders with this status; default all.
    """
    with _shop() as conn:
        return shop.list_orders(conn, customer_id, status)


@tool
def track_shipment(order_id: str) -> dict[str, Any]:
    """Track an order's parcel: carrier, tracking number, expected delivery and latest events.

    Args:
        order_id: the order id, like A-1234.
    """
    with _shop() as conn:
        return shop.track_shipment(conn, order_id)


@tool(side_effects=True, idempotent=True)
def update_shipping_address(order_id: str, address: Address, ctx: ToolContext) -> dict[str, Any]:
    """Change the shipping address of an order that has not shipped yet.

    Args:
        order_id: the order id, like A-1234.
        address: the new address.
        ctx: injected by keel, not shown to the model.
    """
    with _shop() as conn:
        return shop.change_address(conn, order_id, address, ctx.idempotency_key, data.today())


@tool(side_effects=True, idempotent=True)
def refund_order(order_id: str, amount: Decimal, reason: str, ctx: ToolContext) -> dict[str, Any]:
    """Refund a delivered or returned order to the customer's original payment method.

    Args:
        order_id: the order id, like A-1234.
        amount: euros to refund, like 34.90; at most what was paid minus earlier refunds.
        reason: why, in a few words.
        ctx: injected by keel, not shown to the model.
    """
    with _shop() as conn:
        return shop.refund_order(conn, order_id, amount, reason, ctx.idempotency_key, data.today())


@tool(untrusted=True)
def search_kb(query: str) -> dict[str, Any]:
    """Search the help articles (shipping, returns, refunds, payment, warranty, account, contact).

    Args:
        query: keywords from the customer's question.
    """
    hits = memory.search(query)  # by meaning, from long-term memory
    if hits is None:  # the memory extra is not installed: keyword search
        hits = kb.search(query)
    elif planted := kb.EXTRA_ARTICLES.get():  # articles an eval fixture put beside the knowledge base
        hits = (kb.search(query, articles=planted) + hits)[:3]
    if not hits:
        return {"results": [], "note": "no article matches; try other keywords"}
    return {"results": hits}


@tool(side_effects=True, idempotent=True)
def escalate_to_human(reason: str, summary: str, ctx: ToolContext) -> dict[str, Any]:
    """Hand the conversation to a person on the support team; returns a ticket id for the customer.

    Args:
        reason: why a person is needed, in a few words.
        summary: the customer's request and what was done so far, in one or two sentences.
        ctx: injected by keel, not shown to the model.
    """
    with _shop() as conn:
        return shop.escalate(conn, reason, summary, ctx.idempotency_key, ctx.run_id, data.today())


# Small models lean towards the tools listed first: the knowledge base goes first, since questions
# that name no order are the common case and an order id in the question pulls towards the order tools
# anyway (bench/local_tool_choice.py: 11-13 of 16 right first tools with search_kb first, 8 without).
run_python = python_tool(limits=Limits(timeout_s=5, cpu_s=5, memory_mb=256), with_files=False)
"""Arithmetic (totals, discounts) as a short program in the code sandbox (bubblewrap unless
``KEEL_SANDBOX_BACKEND`` says otherwise); without one it returns an error result, never a crash."""

TOOLS: list[Tool] = [
    search_kb,
    lookup_order,
    track_shipment,
    find_customer,
    list_orders,
    refund_order,
    update_shipping_address,
    escalate_to_human,
    run_python,
]
