"""Monitoring: health and readiness, Prometheus metrics, stats for charts, anomaly alerts, and feedback on runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response

from ._auth import Caller
from ._deps import ERRORS, ApiError, Svc, error_response
from ._schemas import AlertOut, AlertsOut, ErrorOut, FeedbackIn, FeedbackOut, StatsOut

__all__ = ["router"]

router = APIRouter()


@router.get("/healthz", tags=["health"], response_class=PlainTextResponse)
def healthz() -> str:
    """The process is up."""
    return "ok"


@router.get("/readyz", tags=["health"], response_class=PlainTextResponse, responses={503: {"model": ErrorOut}})
def readyz(svc: Svc) -> Response:
    """The database answers and runs can be started."""
    try:
        svc.engine().store.ping()
    except Exception as exc:
        return error_response(503, "not_ready", f"the database does not answer: {type(exc).__name__}")
    return PlainTextResponse("ready")


@router.post("/v1/runs/{run_id}/feedback", tags=["runs"], status_code=201, response_model=FeedbackOut, responses=ERRORS)
def give_feedback(run_id: str, body: FeedbackIn, key: Caller, svc: Svc) -> FeedbackOut:
    """Record a user's satisfaction with the run (thumbs, a 1-5 score, or both; and a comment)."""
    from ..observe.feedback import record_feedback

    svc.own_run(run_id, key)
    if body.thumbs is None and body.score is None:
        raise ApiError(
            422,
            "invalid_request",
            "thumbs/score: give thumbs ('up' or 'down') or a score (1-5), or both",
            [{"field": "thumbs", "message": "missing"}, {"field": "score", "message": "missing"}],
        )
    item = record_feedback(
        svc.engine().store,
        run_id,
        thumbs=body.thumbs,
        score=body.score,
        comment=body.comment,
        by=body.by or f"key:{key.key_id}",
    )
    return FeedbackOut(**item.to_dict())


@router.get(
    "/metrics",
    tags=["monitoring"],
    responses={**ERRORS, 200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    response_class=PlainTextResponse,
)
def metrics(key: Caller, svc: Svc) -> Response:
    """Prometheus metrics of your tenant's runs, computed from the database (so from every worker)."""
    from ..observe.metrics import CONTENT_TYPE, render

    return Response(render(svc.engine().store, key.tenant), media_type=CONTENT_TYPE)


@router.get("/v1/stats", tags=["monitoring"], response_model=StatsOut, responses=ERRORS, response_model_by_alias=True)
def stats(
    key: Caller,
    svc: Svc,
    hours: Annotated[float, Query(gt=0, le=24 * 90, description="how far back")] = 24.0,
    buckets: Annotated[int, Query(ge=1, le=500, description="how many time buckets")] = 24,
) -> StatsOut:
    """Completion rate, error rate, steps, cost and satisfaction over time, for charts."""
    from ..observe.metrics import timeseries

    return StatsOut.model_validate(timeseries(svc.engine().store, key.tenant, hours=hours, buckets=buckets))


@router.get("/v1/alerts", tags=["monitoring"], response_model=AlertsOut, responses=ERRORS)
def alerts(key: Caller, svc: Svc) -> AlertsOut:
    """Active anomaly alerts on your tenant's agents."""
    board = svc.config.alerts
    found = [] if board is None else [AlertOut(**a.to_dict()) for a in board.active(key.tenant)]
    return AlertsOut(alerts=found)
