"""Explicit planning on durable runs, on real SQLite and PostgreSQL: a paused run resumes with its plan."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pydantic
from typer.testing import CliRunner

from keel import Agent, RunEvent, Runtime, Tool, ToolCall, tool
from keel.cli import app
from keel.durable import DurableEngine
from keel.messages import Message, ToolMessage
from keel.models import ScriptedModel
from keel.planning import PLAN_TOOL, PROGRESS_TOOL


def order_tools() -> tuple[list[Tool], list[str]]:
    """`lookup_order` and `refund_order` (which waits for a person's approval); the log of runs."""
    ran: list[str] = []

    @tool
    def lookup_order(order_id: str) -> str:
        """Look up an order.

        Args:
            order_id: the order's id.
        """
        ran.append(f"lookup {order_id}")
        return f"order {order_id}: shipped, 40.00"

    @tool(requires_approval=True)
    def refund_order(order_id: str, amount: str) -> str:
        """Refund an order.

        Args:
            order_id: the order's id.
            amount: the amount.
        """
        ran.append(f"refund {order_id} {amount}")
        return f"refunded {amount}"

    return [lookup_order, refund_order], ran


def progress(step: int, note: str = "") -> ToolCall:
    return ToolCall(PROGRESS_TOOL, {"step": step, "status": "done", "note": note})


def test_a_durable_run_paused_mid_plan_resumes_with_the_same_plan(database_url: str) -> None:
    tools, ran = order_tools()
    refund_plan = {
        "goal": "refund order A-1",
        "steps": [
            {"action": "look up order A-1", "tool": "lookup_order"},
            {"action": "refund it", "tool": "refund_order", "depends_on": [1]},
        ],
        "blockers": ["a refund needs a person's approval"],
        "success_criteria": ["the order is refunded"],
    }
    planning_requests: list[int] = []

    def answer(messages: Sequence[Message], offered: Sequence[dict[str, Any]]) -> Any:
        if [t["name"] for t in offered] == [PLAN_TOOL]:
            planning_requests.append(len(messages))
            return ToolCall(PLAN_TOOL, refund_plan)
        results = [m for m in messages if isinstance(m, ToolMessage) and m.name != PROGRESS_TOOL]
        if not results:
            return ToolCall("lookup_order", {"order_id": "A-1"})
        if len(results) == 1:
            return [progress(1), ToolCall("refund_order", {"order_id": "A-1", "amount": "40.00"})]
        return [progress(2, note="refunded"), ToolCall("final_result", {"status": "refunded"})]

    class Answer(pydantic.BaseModel):
        status: str

    agent = Agent("refunds", ScriptedModel(answer), tools=tools, planning="explicit", output_type=Answer)
    runtime = Runtime(database_url)
    try:
        first = agent.run_sync("Refund order A-1", runtime=runtime)
        assert first.status == "waiting"
        assert planning_requests == [3] and ran == ["lookup A-1"]
        assert first.plan is not None and [s["status"] for s in first.plan["steps"]] == ["done", "pending"]
        stored = runtime.get(first.run_id).result
        assert stored is not None and stored["plan"] == first.plan  # the plan is stored with the run

        [approval] = runtime.approvals(run_id=first.run_id)
        runtime.approve(approval.id, by="ops", dispatch=False)
        events: list[RunEvent] = []
        on_event = events.append
        resumed = asyncio.run(runtime.resume(agent, first.run_id, on_event=on_event))

        shown = CliRunner().invoke(app, ["runs", "show", first.run_id, "--db", runtime.database_url])
        assert shown.exit_code == 0, shown.stderr
    finally:
        DurableEngine.close()
    assert "plan (version 1)" in shown.stdout and "goal refund order A-1" in shown.stdout
    assert "   done 1. look up order A-1 (lookup_order)\n" in shown.stdout
    assert "   done 2. refund it (refund_order) - refunded\n" in shown.stdout

    assert (resumed.status, resumed.output) == ("done", Answer(status="refunded"))
    assert planning_requests == [3]  # the plan was replayed from the journal, not asked for again
    assert ran == ["lookup A-1", "refund A-1 40.00"]  # and nothing ran twice
    created = [e for e in events if e.kind == "plan_created"]
    assert len(created) == 1 and created[0].data["plan"]["goal"] == "refund order A-1"
    assert resumed.plan is not None and [s["status"] for s in resumed.plan["steps"]] == ["done", "done"]
    assert resumed.plan["steps"][1]["note"] == "refunded"
