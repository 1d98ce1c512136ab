"""Approvals: list and show the requests for a person's decision, and approve, reject, edit or resolve them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query

from ..exceptions import UsageError
from ._auth import Caller
from ._deps import ERRORS, ApiError, Service, Svc, conflict
from ._keys import ApiKey
from ._schemas import ApprovalOut, ApproveIn, EditIn, RejectIn, ResolveIn
from ._shapes import agents_of, approval_out

if TYPE_CHECKING:
    from ..durable import Approval

__all__ = ["router"]

router = APIRouter(tags=["approvals"])


@router.get("/v1/approvals", response_model=list[ApprovalOut], responses=ERRORS)
def list_approvals(
    key: Caller,
    svc: Svc,
    status: Annotated[
        str | None, Query(max_length=20, description="pending (default), approved, rejected, expired, decided, all")
    ] = "pending",
    run_id: Annotated[str | None, Query(max_length=64)] = None,
) -> list[ApprovalOut]:
    """Requests for a person's decision in your tenant, oldest first."""
    store = svc.engine().store
    found = store.list_approvals(status=None if status == "all" else status, run_id=run_id, tenant=key.tenant)
    return [approval_out(a, agent) for a, agent in zip(found, agents_of(store, found), strict=True)]


@router.get("/v1/approvals/{approval_id}", response_model=ApprovalOut, responses=ERRORS)
def get_approval(approval_id: str, key: Caller, svc: Svc) -> ApprovalOut:
    """One request for a decision."""
    return approval_out(svc.own_approval(approval_id, key))


def _decided(svc: Service, approval_id: str, key: ApiKey, action: Callable[[], Approval]) -> ApprovalOut:
    svc.own_approval(approval_id, key)
    try:
        return approval_out(action())
    except UsageError as exc:
        raise conflict(exc) from None


@router.post("/v1/approvals/{approval_id}/approve", response_model=ApprovalOut, responses=ERRORS)
def approve(approval_id: str, body: ApproveIn, key: Caller, svc: Svc) -> ApprovalOut:
    """Approve the tool call exactly as requested; the run continues on a worker."""
    by = f"key:{key.key_id}"
    return _decided(
        svc,
        approval_id,
        key,
        lambda: svc.runtime().approve(approval_id, by=by, note=body.note, arguments_hash=body.arguments_hash),
    )


@router.post("/v1/approvals/{approval_id}/reject", response_model=ApprovalOut, responses=ERRORS)
def reject(approval_id: str, body: RejectIn, key: Caller, svc: Svc) -> ApprovalOut:
    """Reject the tool call; the model is told the reason and carries on."""
    by = f"key:{key.key_id}"
    return _decided(svc, approval_id, key, lambda: svc.runtime().reject(approval_id, by=by, reason=body.reason))


@router.post("/v1/approvals/{approval_id}/edit", response_model=ApprovalOut, responses=ERRORS)
def edit(approval_id: str, body: EditIn, key: Caller, svc: Svc) -> ApprovalOut:
    """Approve the tool call with changed arguments (validated against the tool's schema)."""
    approval = svc.own_approval(approval_id, key)
    record = svc.engine().store.get_run(approval.run_id)
    agent = svc.agents.get(record.agent) if record is not None else None
    tool = agent.tools_by_name.get(approval.tool or "") if agent is not None else None
    if tool is not None:
        from ..approvals import check_edited
        from ..tools import ToolArgumentsError

        try:
            check_edited(body.arguments, tool)
        except ToolArgumentsError as exc:
            raise ApiError(
                422, "invalid_request", f"arguments: {exc}", [{"field": "arguments", "message": str(exc)}]
            ) from None
    by = f"key:{key.key_id}"
    return _decided(
        svc, approval_id, key, lambda: svc.runtime().edit(approval_id, body.arguments, by=by, note=body.note)
    )


@router.post("/v1/approvals/{approval_id}/resolve", response_model=ApprovalOut, responses=ERRORS)
def resolve(approval_id: str, body: ResolveIn, key: Caller, svc: Svc) -> ApprovalOut:
    """Decide a run that needs attention: retry, skip or fail an interrupted call; continue or fail a pause."""
    by = f"key:{key.key_id}"
    return _decided(
        svc,
        approval_id,
        key,
        lambda: svc.runtime().resolve(approval_id, body.decision, by=by, note=body.note, result=body.result),
    )
