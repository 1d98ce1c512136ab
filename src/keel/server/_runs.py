"""Runs: start, list, show, follow (server-sent events), cancel and resume, scoped to the caller's tenant."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from ..exceptions import UsageError
from ._auth import Caller
from ._deps import ERRORS, ApiError, Svc, conflict
from ._events import sse
from ._schemas import FeedbackOut, RunCreate, RunCreated, RunDetail, RunList, RunOut
from ._shapes import approval_out, run_out

__all__ = ["router"]

router = APIRouter(tags=["runs"])


@router.post("/v1/runs", status_code=202, response_model=RunCreated, responses=ERRORS)
def start_run(body: RunCreate, key: Caller, svc: Svc) -> RunCreated:
    """Queue a run for a worker and return its id at once."""
    agent = svc.agents.get(body.agent)
    if agent is None:
        served = ", ".join(sorted(svc.agents)) or "none"
        raise ApiError(
            422,
            "invalid_request",
            f"agent: {body.agent!r} is not served here; served agents: {served}",
            [{"field": "agent", "message": f"unknown agent; use one of: {served}"}],
        )
    if not body.task.strip():
        raise ApiError(
            422,
            "invalid_request",
            "task: must say what the agent should do (it is blank)",
            [{"field": "task", "message": "blank"}],
        )
    metadata = {**body.metadata, "tenant": key.tenant, "api_key": key.key_id}
    run_id = svc.runtime().start(agent, body.task, metadata=metadata)
    return RunCreated(run_id=run_id, status="queued", events=f"/v1/runs/{run_id}/events")


@router.get("/v1/runs", response_model=RunList, responses=ERRORS)
def list_runs(
    key: Caller,
    svc: Svc,
    status: Annotated[str | None, Query(max_length=20, description="only runs in this status")] = None,
    agent: Annotated[str | None, Query(max_length=64, description="only runs of this agent")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="at most this many")] = 50,
) -> RunList:
    """Runs of your tenant, newest first."""
    records = svc.engine().store.list_runs(status=status, agent=agent, limit=limit, tenant=key.tenant)
    return RunList(runs=[run_out(r) for r in records])


@router.get("/v1/runs/{run_id}", response_model=RunDetail, responses=ERRORS)
def get_run(run_id: str, key: Caller, svc: Svc) -> RunDetail:
    """One run with its conversation, requests for people and feedback."""
    from ..observe.feedback import list_feedback

    record = svc.own_run(run_id, key)
    store = svc.engine().store
    return RunDetail(
        **run_out(record).model_dump(),
        messages=list((record.result or {}).get("messages") or []),
        plan=(record.result or {}).get("plan"),
        approvals=[approval_out(a, record.agent) for a in store.list_approvals(status=None, run_id=run_id)],
        feedback=[FeedbackOut(**f.to_dict()) for f in list_feedback(store, run_id=run_id)],
    )


@router.get(
    "/v1/runs/{run_id}/events",
    responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
    response_class=StreamingResponse,
)
async def run_events(
    run_id: str,
    key: Caller,
    svc: Svc,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", description="resume after this event id")
    ] = None,
) -> StreamingResponse:
    """The run's events as server-sent events, from its durable journal; resumable with Last-Event-ID.

    Each journal event has the id of its journal step; ``status`` events (no id) report the run's
    status on connecting and on each change; ``end`` closes the stream once the run has finished.
    """
    after = 0
    if last_event_id:
        try:
            after = int(last_event_id)
        except ValueError:
            raise ApiError(
                400,
                "invalid_request",
                f"Last-Event-ID: {last_event_id[:40]!r} is not an event id (a whole number)",
                [{"field": "Last-Event-ID", "message": "not a whole number"}],
            ) from None
        if after < 0:
            raise ApiError(400, "invalid_request", "Last-Event-ID: must not be negative")
    await anyio.to_thread.run_sync(svc.own_run, run_id, key)
    store = svc.engine().store
    return StreamingResponse(
        sse(svc.watch(), store, run_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/v1/runs/{run_id}/cancel", response_model=RunOut, responses=ERRORS)
def cancel_run(run_id: str, key: Caller, svc: Svc) -> RunOut:
    """Cancel a run that has not finished; its pending approvals are rejected."""
    svc.own_run(run_id, key)
    try:
        return run_out(svc.runtime().cancel(run_id))
    except UsageError as exc:
        raise conflict(exc) from None


@router.post("/v1/runs/{run_id}/resume", response_model=RunOut, responses=ERRORS)
def resume_run(run_id: str, key: Caller, svc: Svc) -> RunOut:
    """Queue a run that has not finished (or failed, once the cause is fixed) for a worker."""
    svc.own_run(run_id, key)
    try:
        return run_out(svc.runtime().requeue(run_id))
    except UsageError as exc:
        raise conflict(exc) from None
