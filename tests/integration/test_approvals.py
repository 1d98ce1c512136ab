"""Durable approvals across process restarts, on real SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from keel import Runtime, UsageError
from keel.policies.approvals import arguments_hash

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
