"""Bad input from Python on real SQLite and PostgreSQL: a NUL character is a UsageError, never a driver error."""

from __future__ import annotations

import pytest

from keel import Agent, Runtime, ToolCall, UsageError, tool
from keel.models import ScriptedModel


@tool(side_effects=True)
def refund_order(order_id: str, amount: float) -> str:
    """Refund an order.

    Args:
        order_id: the order.
        amount: how much.
    """
    return f"refunded {amount} on {order_id}"


def _agent() -> Agent:
    from keel.policies.approvals import RequireApproval

    model = ScriptedModel([ToolCall("refund_order", {"order_id": "A-1", "amount": 5.0}), "Refunded."])
    return Agent("nul_check", model, tools=[refund_order], policies=[RequireApproval(["refund_order"])])


async def test_a_nul_in_the_task_or_metadata_is_a_usage_error_and_stores_nothing(database_url: str) -> None:
    runtime = Runtime(database_url)
    agent = _agent()
    for call in (
        lambda: agent.run("refund A-1\x00", runtime=runtime),
        lambda: runtime.run(agent, "refund", metadata={"source\x00": "web"}),
        lambda: runtime.run(agent, "refund", metadata={"source": "we\x00b"}),
    ):
        with pytest.raises(UsageError, match=r"contains a NUL character .* remove it"):
            await call()
    with pytest.raises(UsageError, match=r"^task: contains a NUL character"):
        runtime.start(agent, "refund\x00 A-1")
    assert runtime.runs() == []


async def test_a_nul_in_an_id_note_or_reason_is_a_usage_error_and_the_request_stays_pending(
    database_url: str,
) -> None:
    runtime = Runtime(database_url)
    agent = _agent()
    waiting = await agent.run("refund A-1", runtime=runtime)
    assert waiting.status == "waiting"
    [approval] = runtime.approvals()
    nul_id = approval.id + "\x00"
    attempts = {
        "run_id": [
            lambda: runtime.get(waiting.run_id + "\x00"),
            lambda: runtime.cancel(waiting.run_id + "\x00"),
            lambda: runtime.requeue(waiting.run_id + "\x00"),
            lambda: runtime.fork(waiting.run_id + "\x00", 1),
            lambda: runtime.approvals(run_id=waiting.run_id + "\x00"),
        ],
        "approval_id": [
            lambda: runtime.approve(nul_id, by="ada"),
            lambda: runtime.reject(nul_id, by="ada", reason="no"),
            lambda: runtime.edit(nul_id, {"order_id": "A-1", "amount": 1.0}, by="ada"),
            lambda: runtime.resolve(nul_id, "retry", by="ada"),
        ],
        "note": [lambda: runtime.approve(approval.id, by="ada", note="ok\x00")],
        "by": [lambda: runtime.approve(approval.id, by="ada\x00")],
        "reason": [lambda: runtime.reject(approval.id, by="ada", reason="no\x00")],
        "arguments": [lambda: runtime.edit(approval.id, {"order_id": "A\x00", "amount": 1.0}, by="ada")],
        "status": [lambda: runtime.runs(status="done\x00"), lambda: runtime.approvals(status="pending\x00")],
        "agent": [lambda: runtime.runs(agent="nul_check\x00")],
    }
    for field, calls in attempts.items():
        for call in calls:
            with pytest.raises(UsageError, match=rf"^{field}: contains a NUL character"):
                call()
    [still] = runtime.approvals()
    assert (still.id, still.status) == (approval.id, "pending")
    assert runtime.get(waiting.run_id).status == "waiting"
    runtime.approve(approval.id, by="ada", dispatch=False)
    done = await runtime.resume(agent, waiting.run_id)
    assert (done.status, done.output) == ("done", "Refunded.")


async def test_a_nul_the_model_writes_is_stored_and_read_back(database_url: str) -> None:
    runtime = Runtime(database_url)
    model = ScriptedModel([ToolCall("give_up", {"reason": "the order id A-\x001 is garbled"})])
    result = await Agent("nul_model", model).run("refund", runtime=runtime)
    assert result.status == "failed"
    record = runtime.get(result.run_id)
    assert record.status == "failed" and "A-" in (record.error or "") and "garbled" in (record.error or "")
    answered = await Agent("nul_answer", ScriptedModel(["done\x00 now"])).run("x", runtime=runtime)
    assert (answered.status, runtime.get(answered.run_id).status) == ("done", "done")
    assert runtime.get(answered.run_id).result["output"] == "done\x00 now"  # type: ignore[index]
