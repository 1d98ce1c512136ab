"""A child process for the approval tests: one refund agent, driven by a scripted model.

Usage: python approval_child.py start|worker|resume  (environment: DB_URL, LEDGER, RUN_ID)
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from decimal import Decimal
from pathlib import Path

from keel import Agent, Runtime, ToolCall, ToolContext, tool
from keel.durable import run_worker
from keel.models import ScriptedModel
from keel.policies.approvals import RequireApproval

LEDGER = Path(os.environ["LEDGER"])


@tool(side_effects=True)
def refund_order(order_id: str, amount: Decimal, ctx: ToolContext) -> str:
    """Refund an order."""
    with LEDGER.open("a") as f:
        f.write(f"refund {order_id} {amount} {ctx.idempotency_key}\n")
    return f"refunded {amount} on {order_id}"


script = [ToolCall("refund_order", {"order_id": "A-1004", "amount": "249.00"}), "Refunded 249.00."]
agent = Agent(
    "refunds",
    ScriptedModel(script),
    tools=[refund_order],
    policies=[RequireApproval(["refund_order"], when=lambda name, args: Decimal(str(args["amount"])) > 100)],
)


def main(mode: str) -> None:
    url, run_id = os.environ["DB_URL"], os.environ["RUN_ID"]
    runtime = Runtime(url)
    if mode == "start":
        result = agent.run_sync("refund A-1004 in full", runtime=runtime, run_id=run_id)
        print("RESULT", result.status, flush=True)
    elif mode == "worker":
        stop, ready = threading.Event(), threading.Event()
        thread = threading.Thread(
            target=run_worker,
            args=(url, [agent]),
            kwargs={"worker_id": "worker-1", "stop": stop, "ready": lambda engine: ready.set()},
            daemon=True,
        )
        thread.start()
        if not ready.wait(60):
            raise SystemExit("the worker did not start")
        result = asyncio.run(runtime.wait(run_id, agent))
        print("RESULT", result.status, result.output, flush=True)
        stop.set()
        thread.join(timeout=30)


if __name__ == "__main__":
    main(sys.argv[1])
