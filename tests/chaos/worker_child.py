"""A keel worker process for the chaos suite: a support-like agent whose tools write to a side-effect ledger.

Usage: python worker_child.py  (environment: DB_URL, LEDGER_URL, WORKER_ID, CONCURRENCY, CRASH_AFTER_EMAIL)

The worker serves the run queue on DB_URL until SIGTERM, printing ``READY <pid>`` once it listens. The test
kills it with SIGKILL at random points and starts it again.

Every run follows a plan named in its task (``plan=refund,email`` or ``plan=refund,address,email``):
look the order up, refund it (with an address change in the same turn when planned), email the customer,
then answer. The side effects go to the ``ledger`` table of a separate database (LEDGER_URL), standing in
for the outside services a real support agent calls:

* ``refund_order`` and ``update_shipping_address`` are idempotent services: they insert with the call's
  idempotency key, and a repeated key has no second effect (``ON CONFLICT DO NOTHING``). A repeat under
  another key would show as a second row.
* ``email_customer`` is not idempotent: each call inserts a row, so a repeated call shows as a duplicate.
  For the runs named in CRASH_AFTER_EMAIL, the worker kills itself right after a run's first email lands.

`approving_agent` is the same agent with each refund waiting for a person's approval.

Each tool sleeps a few random milliseconds before and after its effect (simulated service latency), so
the test's kills land at varied points: before, inside and after a call.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import threading
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from keel import Agent, ToolCall, ToolContext, tool
from keel.durable import make_engine, run_worker
from keel.messages import AssistantMessage, Message, UserMessage
from keel.models import ScriptedModel
from keel.policies.approvals import RequireApproval

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS ledger (
    id {serial} PRIMARY KEY,
    run_id VARCHAR(64) NOT NULL,
    effect VARCHAR(20) NOT NULL,
    idem_key VARCHAR(200) UNIQUE,
    detail TEXT NOT NULL,
    worker VARCHAR(64) NOT NULL,
    pid INTEGER NOT NULL
)
"""

_ledger: sa.Engine | None = None


def ledger_engine(url: str) -> sa.Engine:
    """The ledger database (SQLite in WAL mode or PostgreSQL), with its table created."""
    engine = make_engine(url)
    serial = "INTEGER" if url.startswith("sqlite") else "BIGSERIAL"
    with engine.begin() as conn:
        conn.execute(sa.text(LEDGER_DDL.format(serial=serial)))
    return engine


def _write(run_id: str, effect: str, detail: str, idem_key: str | None) -> None:
    global _ledger
    if _ledger is None:
        _ledger = ledger_engine(os.environ["LEDGER_URL"])
    row = {
        "r": run_id,
        "e": effect,
        "k": idem_key,
        "d": detail,
        "w": os.environ.get("WORKER_ID", "?"),
        "p": os.getpid(),
    }
    conflict = " ON CONFLICT (idem_key) DO NOTHING" if idem_key is not None else ""
    with _ledger.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ledger (run_id, effect, idem_key, detail, worker, pid) "
                f"VALUES (:r, :e, :k, :d, :w, :p){conflict}"
            ),
            row,
        )


async def effect(run_id: str, name: str, detail: str, idem_key: str | None) -> None:
    """Perform one side effect with simulated service latency on both sides of it."""
    await asyncio.sleep(random.uniform(0.0, 0.012))
    await asyncio.to_thread(_write, run_id, name, detail, idem_key)
    await asyncio.sleep(random.uniform(0.0, 0.012))


@tool
async def lookup_order(order_id: str) -> dict[str, Any]:
    """Get an order: status, total and whether it can be refunded.

    Args:
        order_id: the order id, like A-1234.
    """
    await asyncio.sleep(random.uniform(0.0, 0.008))
    return {"order_id": order_id, "status": "delivered", "refundable": True}


@tool(side_effects=True, idempotent=True)
async def refund_order(order_id: str, amount: Decimal, reason: str, ctx: ToolContext) -> str:
    """Refund an order to the original payment method.

    Args:
        order_id: the order id.
        amount: euros to refund.
        reason: why, in a few words.
        ctx: injected by keel.
    """
    await effect(ctx.run_id, "refund", f"{order_id} {amount} {reason}", ctx.idempotency_key)
    return f"refunded {amount} on {order_id}"


@tool(side_effects=True, idempotent=True)
async def update_shipping_address(order_id: str, address: str, ctx: ToolContext) -> str:
    """Change the shipping address of an order.

    Args:
        order_id: the order id.
        address: the new address.
        ctx: injected by keel.
    """
    await effect(ctx.run_id, "address", f"{order_id} {address}", ctx.idempotency_key)
    return f"address of {order_id} is now {address}"


@tool(side_effects=True)
async def email_customer(order_id: str, text: str, ctx: ToolContext) -> str:
    """Email the customer about an order (not idempotent: every call sends a message).

    Args:
        order_id: the order id.
        text: the message.
        ctx: injected by keel.
    """
    await effect(ctx.run_id, "email", f"{order_id}: {text}", None)
    if ctx.run_id in os.environ.get("CRASH_AFTER_EMAIL", "").split(",") and _emails(ctx.run_id) == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # the email went out; its step is journaled started, never done
    return f"emailed the customer about {order_id}"


def _emails(run_id: str) -> int:
    assert _ledger is not None
    with _ledger.connect() as conn:
        query = "SELECT count(*) FROM ledger WHERE run_id = :r AND effect = 'email'"
        return int(conn.execute(sa.text(query), {"r": run_id}).scalar_one())


TASK = re.compile(r"order (?P<order>A-\d+) .*amount=(?P<amount>[\d.]+) plan=(?P<plan>[a-z,]+)")


def script(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> str | ToolCall | list[ToolCall]:
    """The scripted support model: the next answer follows from the task and how many answers came before."""
    task = next(m.content for m in messages if isinstance(m, UserMessage))
    found = TASK.search(task or "")
    assert found is not None, task
    order, amount, plan = found["order"], found["amount"], found["plan"].split(",")
    turn = sum(isinstance(m, AssistantMessage) for m in messages)
    if turn == 0:
        return ToolCall("lookup_order", {"order_id": order})
    if turn == 1:
        calls = [ToolCall("refund_order", {"order_id": order, "amount": amount, "reason": "arrived broken"})]
        if "address" in plan:
            calls.append(ToolCall("update_shipping_address", {"order_id": order, "address": "Rua Nova 1, Lisboa"}))
        return calls
    if turn == 2:
        return ToolCall("email_customer", {"order_id": order, "text": f"We refunded {amount} EUR."})
    return f"Refunded {amount} EUR on {order} and emailed the customer."


agent = Agent(
    "support",
    ScriptedModel(script),
    instructions="You are the shop's support agent.",
    tools=[lookup_order, refund_order, update_shipping_address, email_customer],
    max_steps=6,
)


approving_agent = Agent(
    "support-approvals",
    ScriptedModel(script),
    instructions="You are the shop's support agent; a person approves each refund.",
    tools=[lookup_order, refund_order, update_shipping_address, email_customer],
    policies=[RequireApproval(["refund_order"], expires_in=3600)],
    max_steps=6,
)
"""The same agent, whose refunds wait for a person's approval (the fork and decision chaos test)."""


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run_worker(
        os.environ["DB_URL"],
        [agent, approving_agent],
        worker_id=os.environ["WORKER_ID"],
        concurrency=int(os.environ.get("CONCURRENCY", "8")),
        stop=stop,
        ready=lambda engine: print("READY", os.getpid(), flush=True),
    )


if __name__ == "__main__":
    main()
