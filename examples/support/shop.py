"""The shop's rules: find customers and orders, track parcels, refund, change addresses, escalate.

Plain functions over a `sqlite3` connection, free of keel, so the policy is testable on its own.
The tools in `tools.py` call them and turn `ShopError` into the `ToolError` the model sees.
Money arrives as `Decimal` euros, is stored as integer cents, and leaves as strings like "34.90".
Results are small dicts: the embedded model reads every token of them.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ADDRESS_CHANGEABLE",
    "MAX_LISTED",
    "REFUNDABLE_STATUSES",
    "REFUND_WINDOW_DAYS",
    "Address",
    "ShopError",
    "change_address",
    "escalate",
    "find_customer",
    "get_order",
    "list_orders",
    "lookup_order",
    "money",
    "order_id",
    "refund_order",
    "refund_status",
    "track_shipment",
]

REFUND_WINDOW_DAYS = 30
REFUNDABLE_STATUSES = ("delivered", "returned")
ADDRESS_CHANGEABLE = ("placed", "paid")
MAX_LISTED = 10
_ORDER_ID = re.compile(r"^#?\s*(?:A\s*-?\s*)?(\d{4})$", re.IGNORECASE)
_CUSTOMER_ID = re.compile(r"^(?:C\s*-?\s*)?(\d{4})$", re.IGNORECASE)


class ShopError(Exception):
    """An expected failure; the message says what is wrong and what to do, for the agent to read."""


class Address(BaseModel):
    """A shipping address."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    street: str = Field(min_length=1, description="street and house number")
    city: str = Field(min_length=1)
    postal_code: str = Field(min_length=1)
    country: str = Field(min_length=2, description="country name or 2-letter code")

    def one_line(self) -> str:
        """The address as one line: street, postal code and city, country."""
        return f"{self.street}, {self.postal_code} {self.city}, {self.country}"


def money(cents: int) -> str:
    """Cents as a euro amount with two decimals: 3490 -> "34.90"."""
    return str(Decimal(cents).scaleb(-2))


def _cents(amount: Decimal | int | str) -> int:
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise ShopError(f"amount {amount!r} is not a number; give euros like 34.90") from None
    if not value.is_finite() or value <= 0:
        raise ShopError(f"amount must be a positive number of euros like 34.90, got {amount}")
    cents = value * 100
    if cents != cents.to_integral_value():
        raise ShopError(f"amount {amount} has more than 2 decimals; give euros and cents like 34.90")
    return int(cents)


def order_id(value: str) -> str:
    """Normalise an order id ("a1001", "#A-1001", "1001" -> "A-1001") or raise ShopError."""
    match = _ORDER_ID.match(value.strip())
    if not match:
        raise ShopError(f"{value!r} is not an order id; order ids look like A-1234")
    return f"A-{match.group(1)}"


def _customer_id(value: str) -> str:
    match = _CUSTOMER_ID.match(value.strip())
    if not match:
        raise ShopError(f"{value!r} is not a customer id; customer ids look like C-1001 (use find_customer)")
    return f"C-{match.group(1)}"


def _begin(conn: sqlite3.Connection) -> None:
    """Take the write lock now, so a check and the write after it see the same rows."""
    if not conn.in_transaction:
        conn.execute("BEGIN IMMEDIATE")


def get_order(conn: sqlite3.Connection, value: str) -> sqlite3.Row:
    """An order with its delivery time, carrier and refunded cents, or ShopError naming the bad id."""
    oid = order_id(value)
    row: sqlite3.Row | None = conn.execute(
        "SELECT o.*, s.delivered_at, s.carrier, s.tracking_number,"
        " (SELECT coalesce(sum(amount_cents), 0) FROM refunds r WHERE r.order_id = o.id) AS refunded_cents"
        " FROM orders o LEFT JOIN shipments s ON s.order_id = o.id WHERE o.id = ?",
        (oid,),
    ).fetchone()
    if row is None:
        raise ShopError(f"order {oid!r} does not exist; order ids look like A-1234, ask the customer to check it")
    return row


def _ship_to(order: sqlite3.Row) -> str:
    return f"{order['street']}, {order['postal_code']} {order['city']}, {order['country']}"


def refund_status(order: sqlite3.Row, today: date) -> tuple[int, str]:
    """How much of `order` may still be refunded, in cents, and a one-line explanation.

    The policy: only delivered or returned orders, within `REFUND_WINDOW_DAYS` of delivery, and never
    more than the total minus earlier refunds. A result of 0 cents means no refund is possible.
    """
    oid, status = order["id"], order["status"]
    if status not in REFUNDABLE_STATUSES:
        return 0, f"order {oid} is {status}; refunds are only for delivered or returned orders"
    delivered = date.fromisoformat(order["delivered_at"][:10])
    deadline = delivered + timedelta(days=REFUND_WINDOW_DAYS)
    if today > deadline:
        return 0, (
            f"order {oid} was delivered on {delivered}, {(today - delivered).days} days ago; refunds are only "
            f"possible within {REFUND_WINDOW_DAYS} days of delivery"
        )
    left = order["total_cents"] - order["refunded_cents"]
    if left <= 0:
        return 0, f"order {oid} has already been refunded in full ({money(order['refunded_cents'])})"
    return left, f"up to {money(left)} until {deadline}"


def find_customer(conn: sqlite3.Connection, query: str) -> dict[str, Any]:
    """One customer by exact email, or up to 5 by name (emails masked: a name proves nothing)."""
    text = query.strip()
    if _ORDER_ID.match(text) and not text.isdigit():
        raise ShopError(f"{text!r} is an order id, not a customer; use lookup_order or track_shipment with it")
    if "@" in text:
        row = conn.execute("SELECT * FROM customers WHERE lower(email) = lower(?)", (text,)).fetchone()
        if row is None:
            raise ShopError(f"no customer has the email {text!r}; ask for the email used for the order")
        return {k: row[k] for k in ("id", "name", "email", "phone", "tier")}
    words = text.lower().split()
    if not words or len(text) < 2:
        raise ShopError("give the customer's email address or name")
    where = " AND ".join("lower(name) LIKE ?" for _ in words)
    rows = conn.execute(
        f"SELECT id, name, email, tier FROM customers WHERE {where} ORDER BY id LIMIT 5",
        [f"%{w}%" for w in words],
    ).fetchall()
    if not rows:
        raise ShopError(f"no customer is named {text!r}; ask for the email used for the order")
    return {"matches": [{"id": r["id"], "name": r["name"], "email": _mask(r["email"])} for r in rows]}


def _mask(email: str) -> str:
    user, _, domain = email.partition("@")
    return f"{user[0]}***@{domain}"


def lookup_order(conn: sqlite3.Connection, value: str, today: date) -> dict[str, Any]:
    """An order's status, items, total, refunds so far, delivery date and refund eligibility."""
    order = get_order(conn, value)
    items = conn.execute(
        "SELECT product, qty, price_cents FROM order_items WHERE order_id = ? ORDER BY line", (order["id"],)
    ).fetchall()
    refundable, why = refund_status(order, today)
    result: dict[str, Any] = {
        "order_id": order["id"],
        "customer_id": order["customer_id"],
        "status": order["status"],
        "placed": order["placed_at"][:10],
        "items": [f"{i['qty']} x {i['product']} at {money(i['price_cents'])}" for i in items],
        "total": money(order["total_cents"]),
        "refunded": money(order["refunded_cents"]),
        "ship_to": _ship_to(order),
    }
    if order["delivered_at"]:
        result["delivered"] = order["delivered_at"][:10]
    result["refund"] = f"possible {why}" if refundable else f"not possible: {why}"
    return result


def list_orders(conn: sqlite3.Connection, customer: str, status: str | None = None) -> dict[str, Any]:
    """A customer's most recent orders (at most `MAX_LISTED`), optionally only those with `status`."""
    cid = _customer_id(customer)
    if conn.execute("SELECT 1 FROM customers WHERE id = ?", (cid,)).fetchone() is None:
        raise ShopError(f"customer {cid!r} does not exist; use find_customer with the email to get the id")
    where, params = "customer_id = ?", [cid]
    if status:
        where, params = where + " AND status = ?", [cid, status]
    count = conn.execute(f"SELECT count(*) FROM orders WHERE {where}", params).fetchone()[0]
    rows = conn.execute(
        f"SELECT id, status, total_cents, placed_at FROM orders WHERE {where} ORDER BY placed_at DESC LIMIT ?",
        [*params, MAX_LISTED],
    ).fetchall()
    result: dict[str, Any] = {
        "customer_id": cid,
        "orders": [
            {"id": r["id"], "status": r["status"], "total": money(r["total_cents"]), "placed": r["placed_at"][:10]}
            for r in rows
        ],
    }
    if count > len(rows):
        result["note"] = f"the {len(rows)} most recent of {count} orders"
    return result


def track_shipment(conn: sqlite3.Connection, value: str) -> dict[str, Any]:
    """Carrier, tracking number, delivery estimate and the last three events of an order's parcel."""
    order = get_order(conn, value)
    oid, status = order["id"], order["status"]
    shipment = conn.execute("SELECT * FROM shipments WHERE order_id = ?", (oid,)).fetchone()
    if shipment is None:
        note = (
            "the order was cancelled; nothing was shipped"
            if status == "cancelled"
            else "not shipped yet; orders ship the working day after payment"
        )
        return {"order_id": oid, "status": status, "shipment": note}
    events = conn.execute(
        "SELECT at, status, location FROM shipment_events WHERE order_id = ? ORDER BY seq DESC LIMIT 3", (oid,)
    ).fetchall()
    result: dict[str, Any] = {
        "order_id": oid,
        "status": status,
        "carrier": shipment["carrier"],
        "tracking_number": shipment["tracking_number"],
    }
    if shipment["delivered_at"]:
        result["delivered"] = shipment["delivered_at"][:10]
    else:
        result["estimated_delivery"] = shipment["estimated_delivery"]
    result["latest_events"] = [f"{e['at'][:16].replace('T', ' ')} {e['status']}, {e['location']}" for e in events]
    return result


def refund_order(
    conn: sqlite3.Connection, value: str, amount: Decimal | int | str, reason: str, key: str, today: date
) -> dict[str, Any]:
    """Refund `amount` euros of an order if the policy allows it; a repeated `key` refunds nothing more.

    Raises:
        ShopError: the order does not exist, or the refund breaks a rule of the policy (the message
            names the rule).
    """
    _begin(conn)  # the policy check and the insert see the same refunds
    previous = conn.execute("SELECT * FROM refunds WHERE idempotency_key = ?", (key,)).fetchone()
    if previous is not None:
        if previous["order_id"] != order_id(value):
            raise ShopError(f"idempotency key {key!r} was already used for a refund of {previous['order_id']}")
        return _refund_result(conn, previous)
    order = get_order(conn, value)
    cents = _cents(amount)
    reason = reason.strip()
    if not reason:
        raise ShopError("give a reason for the refund, in a few words")
    refundable, why = refund_status(order, today)
    if refundable == 0:
        raise ShopError(f"refund refused: {why}")
    if cents > refundable:
        raise ShopError(
            f"refund refused: {money(cents)} is more than the {money(refundable)} left to refund on order "
            f"{order['id']} (paid {money(order['total_cents'])}, already refunded "
            f"{money(order['refunded_cents'])}); refunds never exceed what was paid"
        )
    cursor = conn.execute(
        "INSERT INTO refunds (order_id, amount_cents, reason, idempotency_key, created_at) VALUES (?, ?, ?, ?, ?)",
        (order["id"], cents, reason[:200], key, today.isoformat()),
    )
    row = conn.execute("SELECT * FROM refunds WHERE id = ?", (cursor.lastrowid,)).fetchone()
    return _refund_result(conn, row)


def _refund_result(conn: sqlite3.Connection, refund: sqlite3.Row) -> dict[str, Any]:
    total = conn.execute(
        "SELECT coalesce(sum(amount_cents), 0) FROM refunds WHERE order_id = ?", (refund["order_id"],)
    ).fetchone()[0]
    return {
        "refund_id": f"R-{refund['id']}",
        "order_id": refund["order_id"],
        "amount": money(refund["amount_cents"]),
        "refunded_in_total": money(total),
        "note": "the money reaches the original payment method within 5 business days",
    }


def change_address(conn: sqlite3.Connection, value: str, address: Address, key: str, today: date) -> dict[str, Any]:
    """Change the shipping address of an order that has not shipped; a repeated `key` changes nothing.

    Raises:
        ShopError: the order does not exist, or has already shipped, been delivered or been cancelled.
    """
    _begin(conn)
    previous = conn.execute("SELECT * FROM address_changes WHERE idempotency_key = ?", (key,)).fetchone()
    if previous is not None:
        return {"order_id": previous["order_id"], "ship_to": previous["new_address"]}
    order = get_order(conn, value)
    oid, status = order["id"], order["status"]
    if status not in ADDRESS_CHANGEABLE:
        if status == "cancelled":
            raise ShopError(f"order {oid} was cancelled; there is nothing to ship")
        if status == "shipped":
            raise ShopError(
                f"order {oid} has already shipped with {order['carrier']} (tracking {order['tracking_number']}); "
                "the address can only change before shipping. The customer can ask the carrier to redirect it."
            )
        raise ShopError(f"order {oid} was already {status}; the address can only change before shipping")
    old = _ship_to(order)
    conn.execute(
        "UPDATE orders SET street = ?, city = ?, postal_code = ?, country = ? WHERE id = ?",
        (address.street, address.city, address.postal_code, address.country, oid),
    )
    conn.execute(
        "INSERT INTO address_changes (order_id, old_address, new_address, idempotency_key, changed_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (oid, old, address.one_line(), key, today.isoformat()),
    )
    return {"order_id": oid, "ship_to": address.one_line()}


def escalate(
    conn: sqlite3.Connection, reason: str, summary: str, key: str, run_id: str | None, today: date
) -> dict[str, Any]:
    """Open a ticket for a person to pick up; a repeated `key` returns the same ticket."""
    reason, summary = reason.strip(), summary.strip()
    if not reason or not summary:
        raise ShopError("give both a reason and a short summary of the conversation so far")
    _begin(conn)
    row = conn.execute("SELECT id FROM escalations WHERE idempotency_key = ?", (key,)).fetchone()
    if row is None:
        cursor = conn.execute(
            "INSERT INTO escalations (reason, summary, run_id, idempotency_key, created_at) VALUES (?, ?, ?, ?, ?)",
            (reason[:200], summary[:2000], run_id, key, today.isoformat()),
        )
        row = {"id": cursor.lastrowid}
    ticket = f"T-{1000 + row['id']}"
    # A sentence the model can pass on as it is: small models copy it rather than compose one.
    message = f"Your ticket is {ticket}; a person will reply by email within one business day."
    return {"ticket_id": ticket, "tell_customer": message}
