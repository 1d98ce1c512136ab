"""Durable approvals across process restarts, on real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from keel import Agent, Runtime, ToolCall, UsageError, tool
from keel.models import ScriptedModel
from keel.policies.approvals import arguments_hash
from keel.storage._tables import approvals

CHILD = Path(__file__).with_name("approval_child.py")


def child(mode: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, str(CHILD), mode], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DB_URL": database_url,
        "LEDGER": str(tmp_path / "ledger"),
        "RUN_ID": f"run_apv_{tmp_path.name[-24:]}",
    }


def test_approval_given_while_no_worker_runs_then_a_worker_completes_the_run(env: dict[str, str]) -> None:
    ledger = Path(env["LEDGER"])
    assert "RESULT waiting" in child("start", env)  # the run paused; its process has exited
    assert not ledger.exists()  # the refund has not run

    runtime = Runtime(env["DB_URL"])
    [approval] = runtime.approvals(run_id=env["RUN_ID"])
    assert (approval.tool, approval.arguments) == ("refund_order", {"order_id": "A-1004", "amount": "249.00"})
    assert approval.arguments_hash == arguments_hash("refund_order", approval.arguments)
    assert approval.expires_at is not None and approval.expires_at > approval.requested_at

    # an approval for altered arguments is refused, and changes nothing
    altered = arguments_hash("refund_order", {"order_id": "A-1004", "amount": "2490.00"})
    with pytest.raises(UsageError, match="other arguments"):
        runtime.approve(approval.id, by="ops@example.com", arguments_hash=altered)
    assert runtime.approvals(run_id=env["RUN_ID"])[0].status == "pending"

    runtime.approve(
        approval.id, by="ops@example.com", note="customer is gold tier", arguments_hash=approval.arguments_hash
    )
    assert runtime.get(env["RUN_ID"]).status == "queued"  # no worker runs: the run waits in the queue
    with pytest.raises(UsageError, match="already approved"):
        runtime.approve(approval.id, by="someone else")

    assert "RESULT done Refunded 249.00." in child("worker", env)
    lines = ledger.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("refund A-1004 249.00 ")  # the refund happened once
    decided = runtime.approvals(status=None, run_id=env["RUN_ID"])[0]
    assert (decided.status, decided.decided_by, decided.note) == (
        "approved",
        "ops@example.com",
        "customer is gold tier",
    )


def test_a_rejection_reaches_the_model_and_nothing_runs(env: dict[str, str]) -> None:
    assert "RESULT waiting" in child("start", env)
    runtime = Runtime(env["DB_URL"])
    [approval] = runtime.approvals(run_id=env["RUN_ID"])
    runtime.reject(approval.id, by="ops", reason="refunds above 100 need a receipt")
    out = child("worker", env)
    assert "RESULT done" in out
    assert not Path(env["LEDGER"]).exists()
    record = runtime.get(env["RUN_ID"])
    tool_messages = [m for m in record.result["messages"] if m["role"] == "tool"]  # type: ignore[index]
    assert tool_messages[0]["content"] == "rejected by ops: refunds above 100 need a receipt"


def test_an_edited_approval_runs_the_edited_arguments(env: dict[str, str]) -> None:
    assert "RESULT waiting" in child("start", env)
    runtime = Runtime(env["DB_URL"])
    [approval] = runtime.approvals(run_id=env["RUN_ID"])
    edited = runtime.edit(approval.id, {"order_id": "A-1004", "amount": "100.00"}, by="ops", note="partial")
    assert edited.arguments_hash != edited.edited_hash  # both versions kept for audit
    assert edited.arguments == {"order_id": "A-1004", "amount": "249.00"}
    child("worker", env)
    assert Path(env["LEDGER"]).read_text().startswith("refund A-1004 100.00 ")


def test_bad_decisions_are_refused_with_nothing_changed(env: dict[str, str]) -> None:
    runtime = Runtime(env["DB_URL"])
    with pytest.raises(UsageError, match="does not exist"):
        runtime.approve("apv_nope", by="x")
    assert "RESULT waiting" in child("start", env)
    [approval] = runtime.approvals(run_id=env["RUN_ID"])
    with pytest.raises(UsageError, match="does not fit"):
        runtime.resolve(approval.id, "retry", by="x")
    assert runtime.approvals(run_id=env["RUN_ID"])[0].status == "pending"
    assert runtime.get(env["RUN_ID"]).status == "waiting"


def rewrite_approval(database_url: str, approval_id: str, **values: str) -> None:
    """Change an approval row behind keel's back, as someone with write access to the database could."""
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            conn.execute(sa.update(approvals).where(approvals.c.id == approval_id).values(**values))
    finally:
        engine.dispose()


def refund_agent(ledger: list[tuple[str, int]], reply: str = "done") -> Agent:
    @tool(side_effects=True, requires_approval=True)
    def refund(order_id: str, amount: int) -> str:
        """Refund an order."""
        ledger.append((order_id, amount))
        return f"refunded {amount} on {order_id}"

    script = [ToolCall("refund", {"order_id": "A-1", "amount": "2"}), reply]
    return Agent("refunds", ScriptedModel(script), tools=[refund])


async def test_the_person_approves_the_validated_arguments_the_tool_receives(database_url: str) -> None:
    ledger: list[tuple[str, int]] = []
    runtime = Runtime(database_url)
    paused = await refund_agent(ledger).run("refund 2 on A-1", runtime=runtime)
    [approval] = runtime.approvals(run_id=paused.run_id)
    assert approval.arguments == {"order_id": "A-1", "amount": 2}  # the integer the tool gets, not the string "2"
    assert approval.arguments_hash == arguments_hash("refund", {"order_id": "A-1", "amount": 2})
    runtime.approve(approval.id, by="ops", arguments_hash=approval.arguments_hash, dispatch=False)
    done = await runtime.resume(refund_agent(ledger), paused.run_id)
    assert (done.status, ledger) == ("done", [("A-1", 2)])


async def test_an_approval_row_rewritten_after_the_decision_is_refused(database_url: str) -> None:
    ledger: list[tuple[str, int]] = []
    runtime = Runtime(database_url)
    paused = await refund_agent(ledger).run("refund 2 on A-1", runtime=runtime)
    [approval] = runtime.approvals(run_id=paused.run_id)
    runtime.approve(approval.id, by="ops", dispatch=False)
    tampered = {"order_id": "A-1", "amount": 5000}
    rewrite_approval(
        database_url, approval.id, arguments=json.dumps(tampered), arguments_hash=arguments_hash("refund", tampered)
    )
    done = await runtime.resume(refund_agent(ledger, "could not refund"), paused.run_id)
    assert ledger == []  # neither the tampered nor the original arguments ran on a decision that no longer matches
    [answer] = [m for m in done.messages if m.role == "tool"]
    assert answer.is_error and "do not match the ones approved" in answer.content


async def test_an_edit_runs_only_the_arguments_its_hash_was_made_of(database_url: str) -> None:
    ledger: list[tuple[str, int]] = []
    runtime = Runtime(database_url)
    paused = await refund_agent(ledger).run("refund 2 on A-1", runtime=runtime)
    [approval] = runtime.approvals(run_id=paused.run_id)
    runtime.edit(approval.id, {"order_id": "A-1", "amount": 1}, by="ops", dispatch=False)
    rewrite_approval(database_url, approval.id, edited_arguments=json.dumps({"order_id": "A-1", "amount": 900}))
    done = await runtime.resume(refund_agent(ledger, "could not refund"), paused.run_id)
    assert ledger == []
    assert "do not match the ones approved" in [m for m in done.messages if m.role == "tool"][0].content


async def test_an_interrupted_call_is_shown_with_the_arguments_it_ran_with(database_url: str) -> None:
    from keel.exceptions import CallInterrupted

    @tool(side_effects=True)
    def transfer(amount: int) -> str:
        """Send money through a remote service."""
        raise CallInterrupted("the payment service went away mid-call")

    agent = Agent("pay", ScriptedModel([ToolCall("transfer", {"amount": "2"}), "sent"]), tools=[transfer])
    runtime = Runtime(database_url)
    paused = await agent.run("send 2", runtime=runtime)
    assert paused.status == "needs_attention"
    [request] = runtime.approvals(run_id=paused.run_id)
    assert (request.kind, request.arguments) == ("interrupted", {"amount": 2})
    assert request.arguments_hash == arguments_hash("transfer", {"amount": 2})
