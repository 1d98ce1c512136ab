"""`keel.approvals`: the argument digest, requests and their expiry, and the checks of a decision."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keel import Agent, Runtime, ToolCall, UsageError, approvals, tool
from keel.models import ScriptedModel
from keel.storage import Approval
from keel.tools import ToolArgumentsError


@tool(side_effects=True, requires_approval=True)
def refund(order_id: str, amount: int) -> str:
    """Refund an order.

    Args:
        order_id: the order.
        amount: how much.
    """
    return f"refunded {amount}"


def pending(**fields: Any) -> Approval:
    values: dict[str, Any] = {
        "id": "apv_1",
        "run_id": "run_1",
        "kind": "approval",
        "tool": "refund",
        "arguments": {"order_id": "A-1", "amount": 2},
        "arguments_hash": approvals.arguments_hash("refund", {"order_id": "A-1", "amount": 2}),
        "reason": "RequireApproval: refunds need a person",
        "status": "pending",
        "requested_at": 1000.0,
        "expires_at": 1060.0,
        "on_expiry": "reject",
    }
    return Approval(**{**values, **fields})


# -- the digest --------------------------------------------------------------------------------------
def test_the_digest_is_sha256_of_the_canonical_call() -> None:
    canonical = json.dumps({"arguments": {"a": 1, "b": "x"}, "tool": "t"}, separators=(",", ":"), sort_keys=True)
    assert approvals.arguments_hash("t", {"b": "x", "a": 1}) == hashlib.sha256(canonical.encode()).hexdigest()
    assert approvals.arguments_hash("t", {"a": 1, "b": "x"}) == approvals.arguments_hash("t", {"b": "x", "a": 1})


def test_the_digest_tells_tools_and_arguments_apart() -> None:
    digest = approvals.arguments_hash("refund", {"amount": 2})
    assert digest != approvals.arguments_hash("refund", {"amount": 20})
    assert digest != approvals.arguments_hash("charge", {"amount": 2})
    assert digest != approvals.arguments_hash("refund", {"amount": "2"})  # the validated JSON form counts


def test_the_policy_module_reexports_the_same_digest() -> None:
    from keel.policies.approvals import arguments_hash

    assert arguments_hash is approvals.arguments_hash


# -- requests and expiry -----------------------------------------------------------------------------
def test_an_approval_request_is_bound_to_the_calls_digest_and_carries_the_policys_terms() -> None:
    call = ToolCall("refund", {"order_id": "A-1", "amount": 2}, "c1")
    request = approvals.approval_request(call, "RequireApproval: big", {"expires_in": 60.0, "on_expiry": "escalate"})
    assert request == {
        "tool": "refund",
        "arguments": {"order_id": "A-1", "amount": 2},
        "arguments_hash": approvals.arguments_hash("refund", {"order_id": "A-1", "amount": 2}),
        "reason": "RequireApproval: big",
        "expires_in": 60.0,
        "on_expiry": "escalate",
    }
    again = approvals.escalated(request)
    assert again["expires_in"] is None and again["reason"] == "approval expired: RequireApproval: big"
    assert again["arguments_hash"] == request["arguments_hash"]


def test_the_stored_request_expires_only_when_it_is_an_approval_with_an_expiry() -> None:
    call = ToolCall("refund", {"order_id": "A-1", "amount": 2})
    request = approvals.approval_request(call, "why", {"expires_in": 60, "on_expiry": "reject"})
    stored = approvals.new_request("apv_1", "run_1", "approval", request, 1000.0)
    assert (stored.status, stored.expires_at, stored.on_expiry) == ("pending", 1060.0, "reject")
    assert stored.arguments_hash == request["arguments_hash"]
    forever = approvals.new_request("apv_2", "run_1", "approval", {**request, "expires_in": None}, 1000.0)
    assert forever.expires_at is None
    cut = approvals.new_request("apv_3", "run_1", "interrupted", {**request, "reason": ""}, 1000.0)
    assert (cut.expires_at, cut.on_expiry, cut.reason) == (None, None, "interrupted")


def test_a_request_is_due_only_while_pending_and_past_its_expiry() -> None:
    assert not approvals.is_due(pending(), 1059.9)
    assert approvals.is_due(pending(), 1060.0)
    assert not approvals.is_due(pending(expires_at=None), 10**12)
    assert not approvals.is_due(pending(status="approved"), 2000.0)


def test_a_forked_request_gets_the_time_the_original_had_to_wait() -> None:
    assert approvals.forked_expiry(1000.0, 1060.0, 5000.0) == 5060.0
    assert approvals.forked_expiry(1000.0, None, 5000.0) is None


def test_the_request_id_is_the_same_for_the_same_run_and_step() -> None:
    assert approvals.request_id("run_1", 3) == approvals.request_id("run_1", 3)
    assert approvals.request_id("run_1", 3) != approvals.request_id("run_1", 4)
    assert approvals.request_id("run_1", 3).startswith("apv_")


def test_an_interrupted_request_names_the_call_and_the_choices() -> None:
    request = approvals.interrupted_request("refund", {"amount": 2}, "refund was cut off")
    assert request["arguments_hash"] == approvals.arguments_hash("refund", {"amount": 2})
    assert request["reason"] == "refund was cut off; retry it, skip it (giving the result it had), or fail the run"


# -- decisions ---------------------------------------------------------------------------------------
def test_a_decision_is_refused_when_unknown_decided_or_expired() -> None:
    assert approvals.check_decidable(pending(), "apv_1", 1059.0).id == "apv_1"
    with pytest.raises(UsageError, match="does not exist"):
        approvals.check_decidable(None, "apv_x", 0.0)
    with pytest.raises(UsageError, match="already approved by ops"):
        approvals.check_decidable(pending(status="approved", decided_by="ops"), "apv_1", 0.0)
    with pytest.raises(UsageError, match=r"expired at 1970-01-01 00:17:40 UTC; its default \(reject\) applies"):
        approvals.check_decidable(pending(), "apv_1", 1060.0)


def test_a_request_of_another_kind_is_refused_as_an_approval() -> None:
    with pytest.raises(UsageError, match="is a pause request, not an approval; decide it with `keel runs resolve`"):
        approvals.check_pending(pending(kind="pause"), "apv_1", "approval")
    assert approvals.check_pending(pending(kind="pause"), "apv_1", None).kind == "pause"


def test_edited_arguments_must_be_an_object_that_fits_the_tool() -> None:
    assert approvals.check_edited({"order_id": "A-1", "amount": 1}, refund) == {"order_id": "A-1", "amount": 1}
    with pytest.raises(UsageError, match="edited arguments must be a JSON object, got list"):
        approvals.check_edited([1, 2])
    with pytest.raises(ToolArgumentsError, match="amount"):
        approvals.check_edited({"order_id": "A-1", "amount": "lots"}, refund)
    assert approvals.check_edited({"anything": True}) == {"anything": True}  # no tool known: an object is enough


def test_what_a_decision_returns_carries_the_arguments_to_run() -> None:
    approved = pending(status="approved", decided_by="ops", note="ok", decision={"decision": "approved"})
    record = approvals.decision_record(approved)
    assert record == {
        "decision": "approved",
        "id": "apv_1",
        "by": "ops",
        "note": "ok",
        "arguments": approved.arguments,
        "arguments_hash": approved.arguments_hash,
    }
    edited = {"order_id": "A-1", "amount": 1}
    changed = pending(
        status="approved",
        decision={"decision": "approved", "edited": True},
        edited_arguments=edited,
        edited_hash=approvals.arguments_hash("refund", edited),
    )
    record = approvals.decision_record(changed)
    assert (record["arguments"], record["arguments_hash"]) == (edited, approvals.arguments_hash("refund", edited))
    rejected = approvals.decision_record(pending(status="rejected", decision={"decision": "rejected"}, note="no"))
    assert "arguments" not in rejected and rejected["note"] == "no"


CALL = ToolCall("refund", {"order_id": "A-1", "amount": 2}, "c1")
REQUEST = approvals.approval_request(CALL, "RequireApproval: big")


def test_an_approval_runs_exactly_the_call_the_run_asked_about() -> None:
    choice = {"decision": "approved", "arguments": CALL.arguments, "arguments_hash": REQUEST["arguments_hash"]}
    assert approvals.approved_call(CALL, REQUEST, choice) == CALL


def test_an_approval_whose_row_was_rewritten_is_refused() -> None:
    tampered = {"order_id": "A-1", "amount": 2000}
    # arguments and hash rewritten together: consistent with each other, not with the run's own digest
    choice = {
        "decision": "approved",
        "arguments": tampered,
        "arguments_hash": approvals.arguments_hash("refund", tampered),
    }
    assert approvals.approved_call(CALL, REQUEST, choice) == approvals.REFUSED
    stale = {"decision": "approved", "arguments": CALL.arguments, "arguments_hash": "0" * 64}
    assert approvals.approved_call(CALL, REQUEST, stale) == approvals.REFUSED
    not_object = {"decision": "approved", "arguments": [1], "arguments_hash": REQUEST["arguments_hash"]}
    assert approvals.approved_call(CALL, REQUEST, not_object) == approvals.REFUSED


def test_an_edit_runs_only_the_arguments_its_own_hash_was_made_of() -> None:
    edited = {"order_id": "A-1", "amount": 1}
    choice = {
        "decision": "approved",
        "edited": True,
        "arguments": edited,
        "arguments_hash": approvals.arguments_hash("refund", edited),
    }
    assert approvals.approved_call(CALL, REQUEST, choice) == ToolCall("refund", edited, "c1")
    swapped = {**choice, "arguments": {"order_id": "A-1", "amount": 1000}}
    assert approvals.approved_call(CALL, REQUEST, swapped) == approvals.REFUSED


def test_a_rejection_or_an_expiry_tells_the_model_why() -> None:
    rejected = {"decision": "rejected", "by": "ops", "note": "needs a receipt"}
    assert approvals.approved_call(CALL, REQUEST, rejected) == "rejected by ops: needs a receipt"
    assert approvals.approved_call(CALL, REQUEST, {"decision": "rejected"}) == "rejected by a person: no reason given"
    expired = {"decision": "expired", "on_expiry": "reject"}
    assert approvals.approved_call(CALL, REQUEST, expired) == (
        "rejected: the approval expired unanswered (RequireApproval: big)"
    )
    assert approvals.expired_decision("reject") == expired


def test_each_kind_waits_in_its_status_and_takes_its_decisions() -> None:
    assert approvals.WAITING == {"approval": "waiting", "interrupted": "needs_attention", "pause": "needs_attention"}
    assert set(approvals.WAITING.values()) == set(approvals.WAITING_STATUSES)
    assert approvals.DECISIONS == {"interrupted": ("retry", "skip", "fail"), "pause": ("continue", "fail")}


def test_the_module_exports_documented_names_in_order() -> None:
    assert approvals.__all__ == sorted(approvals.__all__)
    for name in approvals.__all__:
        assert getattr(approvals, name) is not None
        if callable(getattr(approvals, name)):
            assert (getattr(approvals, name).__doc__ or "").strip(), name


# -- the Runtime's operations, over the durable engine ------------------------------------------------
@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    from keel.durable import DurableEngine

    yield f"sqlite:///{tmp_path / 'keel.db'}"
    DurableEngine.close()


async def test_an_edit_checked_against_the_tool_changes_nothing_when_refused(sqlite_url: str) -> None:
    from keel.durable import DurableEngine

    ledger: list[tuple[str, int]] = []

    @tool(side_effects=True, requires_approval=True)
    def pay(order_id: str, amount: int) -> str:
        """Pay back an order."""
        ledger.append((order_id, amount))
        return f"paid {amount}"

    def agent() -> Agent:
        return Agent("payer", ScriptedModel([ToolCall("pay", {"order_id": "A-1", "amount": 5}), "done"]), tools=[pay])

    runtime = Runtime(sqlite_url)
    paused = await agent().run("pay 5 on A-1", runtime=runtime)
    [request] = runtime.approvals(run_id=paused.run_id)
    engine = DurableEngine.for_url(sqlite_url)
    with pytest.raises(ToolArgumentsError, match="amount"):
        approvals.edit(engine, request.id, {"order_id": "A-1", "amount": "five"}, by="ops", tool=pay, dispatch=False)
    assert runtime.approvals(run_id=paused.run_id)[0].status == "pending"
    assert runtime.get(paused.run_id).status == "waiting"

    edited = approvals.edit(engine, request.id, {"order_id": "A-1", "amount": 3}, by="ops", tool=pay, dispatch=False)
    assert edited.edited_hash == approvals.arguments_hash("pay", {"order_id": "A-1", "amount": 3})
    done = await runtime.resume(agent(), paused.run_id)
    assert (done.status, ledger) == ("done", [("A-1", 3)])
