"""The FastAPI application: runs, events (SSE), approvals, feedback, metrics, health, and the console."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._validate import NUL_PROBLEM, has_nul
from ..events import RunEvent
from ..exceptions import UsageError
from ..storage import event_dict, read_events, status_event
from ._events import FINAL, RunWatch
from ._keys import ApiKey, KeyRing
from ._limits import BodyLimit, RateLimiter
from ._schemas import (
    AlertOut,
    AlertsOut,
    ApprovalOut,
    ApproveIn,
    EditIn,
    ErrorOut,
    FeedbackIn,
    FeedbackOut,
    MeOut,
    RejectIn,
    ResolveIn,
    RunCreate,
    RunCreated,
    RunDetail,
    RunList,
    RunOut,
    StatsOut,
)

if TYPE_CHECKING:
    from .._runtime import Runtime
    from ..agent import Agent
    from ..durable import Approval, DurableEngine, RunRecord
    from ..observe.anomaly import AlertBoard

__all__ = ["ApiError", "ServiceConfig", "create_app"]

log = logging.getLogger("keel.server")
CONSOLE = Path(__file__).with_name("console")
KEEPALIVE_SECONDS = 15.0
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in {
        400: "malformed request",
        401: "missing or unknown API key",
        404: "no such object for this tenant",
        409: "the object is in another state",
        413: "body too large",
        422: "invalid field",
        429: "rate limited",
    }.items()
}


class ApiError(Exception):
    """An error answered with `status` and a JSON body naming the problem."""

    def __init__(self, status: int, code: str, message: str, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields or []


@dataclass
class ServiceConfig:
    """How the service runs.

    Attributes:
        database_url: the database shared with the workers.
        agents: the agents runs may be started for (by name).
        max_body_bytes: larger request bodies are refused with 413. Default 1 MiB.
        rate_per_second: requests a second allowed per API key, on average. Default 50.
        burst: requests allowed at once per API key. Default 100.
        key_cache_seconds: how long a key lookup is remembered (a revoked key works that long). Default 10.
        alerts: where anomaly alerts are shown to the console, if anomaly detection runs.
    """

    database_url: str
    agents: list[Agent] = field(default_factory=list)
    max_body_bytes: int = 1 << 20
    rate_per_second: float = 50.0
    burst: int = 100
    key_cache_seconds: float = 10.0
    alerts: AlertBoard | None = None


def _error(status: int, code: str, message: str, fields: list[dict[str, str]] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, "fields": fields or []}, status_code=status)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "body")


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (detail.get("ctx") or {}).get("error", "invalid JSON")
        return _error(400, "invalid_json", f"the request body is not valid JSON ({reason}); send a JSON object")
    fields = [{"field": _field_name(tuple(e.get("loc", ()))), "message": str(e.get("msg", ""))} for e in errors]
    where = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return _error(422, "invalid_request", f"invalid request: {where}", fields)


BEARER = HTTPBearer(auto_error=False, description="an API key from `keel keys create --tenant T`")


@dataclass
class _Auth:
    config: ServiceConfig
    keyring: Any
    limiter: RateLimiter


def caller(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> ApiKey:
    """The API key of the request, after its rate limit.

    Raises:
        ApiError: 401 without a valid key, 429 over the key's rate limit.
    """
    auth: _Auth = request.app.state.keel
    if credentials is None:
        raise ApiError(401, "unauthorized", "send an API key as 'Authorization: Bearer <key>'")
    key: ApiKey | None = auth.keyring().lookup(credentials.credentials)
    if key is None:
        raise ApiError(401, "unauthorized", "the API key is unknown or revoked; create one with `keel keys create`")
    wait = auth.limiter.take(key.key_id)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests with key {key.key_id}: the limit is {auth.config.rate_per_second:g} a second "
            f"(bursts of {auth.config.burst}); retry after {wait:.2f} s",
            [{"field": "retry_after", "message": "seconds", "retry_after": RateLimiter.retry_after(wait)}],
        )
    return key


Caller = Annotated[ApiKey, Depends(caller)]


def no_nul(request: Request) -> None:
    """Refuse a NUL character in a path or query parameter, as the bodies do (no database stores one).

    Raises:
        ApiError: 422 naming the parameter.
    """
    params = [*request.path_params.items(), *request.query_params.multi_items()]
    for name, value in params:
        if has_nul(name) or has_nul(value):
            field = name.replace("\x00", "\\x00")
            problem = [{"field": field, "message": NUL_PROBLEM}]
            raise ApiError(422, "invalid_request", f"{field}: {NUL_PROBLEM}", problem)


def create_app(config: ServiceConfig) -> FastAPI:
    """Build the service for `config` (the durable engine is opened on first use)."""
    from .._runtime import Runtime

    agents = {agent.name: agent for agent in config.agents}
    state: dict[str, Any] = {}

    def runtime() -> Runtime:
        if "runtime" not in state:
            state["runtime"] = Runtime(config.database_url)
        rt: Runtime = state["runtime"]
        return rt

    def engine() -> DurableEngine:
        from ..durable import DurableEngine

        return DurableEngine.for_url(config.database_url)

    def keyring() -> KeyRing:
        if "keys" not in state:
            state["keys"] = KeyRing(engine().engine, ttl=config.key_cache_seconds)
        ring: KeyRing = state["keys"]
        return ring

    limiter = RateLimiter(config.rate_per_second, config.burst)

    app = FastAPI(
        title="keel",
        version="1",
        description="Runs, their live events, approvals and feedback, scoped to the tenant of the API key.",
        docs_url="/docs",
        redoc_url=None,
        dependencies=[Depends(no_nul)],
    )
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.state.keel = _Auth(config, keyring, limiter)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        response = _error(exc.status, exc.code, exc.message, exc.fields)
        if exc.status == 429:
            response.headers["Retry-After"] = exc.fields[0]["retry_after"] if exc.fields else "1"
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs for the API"
        return _error(exc.status_code, codes.get(exc.status_code, "http_error"), message)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request %s %s failed", request.method, request.url.path)
        return _error(500, "internal_error", f"the service failed: {type(exc).__name__}; see its log")

    def own_run(run_id: str, key: ApiKey) -> RunRecord:
        record = engine().store.get_run(run_id)
        if record is None or record.tenant != key.tenant:  # another tenant's run does not exist for this key
            raise ApiError(404, "not_found", f"run {run_id!r} does not exist; list runs with GET /v1/runs")
        return record

    def own_approval(approval_id: str, key: ApiKey) -> Approval:
        store = engine().store
        approval = store.get_approval(approval_id)
        record = None if approval is None else store.get_run(approval.run_id)
        if approval is None or record is None or record.tenant != key.tenant:
            raise ApiError(
                404, "not_found", f"approval {approval_id!r} does not exist; list them with GET /v1/approvals"
            )
        return approval

    def conflict(exc: UsageError) -> ApiError:
        return ApiError(409, "conflict", str(exc))

    # -- health -------------------------------------------------------------------------------
    @app.get("/healthz", tags=["health"], response_class=PlainTextResponse)
    def healthz() -> str:
        """The process is up."""
        return "ok"

    @app.get("/readyz", tags=["health"], response_class=PlainTextResponse, responses={503: {"model": ErrorOut}})
    def readyz() -> Response:
        """The database answers and runs can be started."""
        try:
            engine().store.ping()
        except Exception as exc:
            return _error(503, "not_ready", f"the database does not answer: {type(exc).__name__}")
        return PlainTextResponse("ready")

    # -- runs ---------------------------------------------------------------------------------
    @app.post("/v1/runs", tags=["runs"], status_code=202, response_model=RunCreated, responses=ERRORS)
    def start_run(body: RunCreate, key: Caller) -> RunCreated:
        """Queue a run for a worker and return its id at once."""
        agent = agents.get(body.agent)
        if agent is None:
            served = ", ".join(sorted(agents)) or "none"
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
        run_id = runtime().start(agent, body.task, metadata=metadata)
        return RunCreated(run_id=run_id, status="queued", events=f"/v1/runs/{run_id}/events")

    @app.get("/v1/runs", tags=["runs"], response_model=RunList, responses=ERRORS)
    def list_runs(
        key: Caller,
        status: Annotated[str | None, Query(max_length=20, description="only runs in this status")] = None,
        agent: Annotated[str | None, Query(max_length=64, description="only runs of this agent")] = None,
        limit: Annotated[int, Query(ge=1, le=500, description="at most this many")] = 50,
    ) -> RunList:
        """Runs of your tenant, newest first."""
        records = engine().store.list_runs(status=status, agent=agent, limit=limit, tenant=key.tenant)
        return RunList(runs=[_run_out(r) for r in records])

    @app.get("/v1/runs/{run_id}", tags=["runs"], response_model=RunDetail, responses=ERRORS)
    def get_run(run_id: str, key: Caller) -> RunDetail:
        """One run with its conversation, requests for people and feedback."""
        from ..observe.feedback import list_feedback

        record = own_run(run_id, key)
        store = engine().store
        return RunDetail(
            **_run_out(record).model_dump(),
            messages=list((record.result or {}).get("messages") or []),
            plan=(record.result or {}).get("plan"),
            approvals=[_approval_out(a, record.agent) for a in store.list_approvals(status=None, run_id=run_id)],
            feedback=[FeedbackOut(**f.to_dict()) for f in list_feedback(store, run_id=run_id)],
        )

    @app.get(
        "/v1/runs/{run_id}/events",
        tags=["runs"],
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
        response_class=StreamingResponse,
    )
    async def run_events(
        run_id: str,
        key: Caller,
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
        await anyio.to_thread.run_sync(own_run, run_id, key)
        store = engine().store
        if "watch" not in state:
            state["watch"] = RunWatch(store)
        return StreamingResponse(
            _sse(state["watch"], store, run_id, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post("/v1/runs/{run_id}/cancel", tags=["runs"], response_model=RunOut, responses=ERRORS)
    def cancel_run(run_id: str, key: Caller) -> RunOut:
        """Cancel a run that has not finished; its pending approvals are rejected."""
        own_run(run_id, key)
        try:
            return _run_out(runtime().cancel(run_id))
        except UsageError as exc:
            raise conflict(exc) from None

    @app.post("/v1/runs/{run_id}/resume", tags=["runs"], response_model=RunOut, responses=ERRORS)
    def resume_run(run_id: str, key: Caller) -> RunOut:
        """Queue a run that has not finished (or failed, once the cause is fixed) for a worker."""
        own_run(run_id, key)
        try:
            return _run_out(runtime().requeue(run_id))
        except UsageError as exc:
            raise conflict(exc) from None

    @app.post(
        "/v1/runs/{run_id}/feedback", tags=["runs"], status_code=201, response_model=FeedbackOut, responses=ERRORS
    )
    def give_feedback(run_id: str, body: FeedbackIn, key: Caller) -> FeedbackOut:
        """Record a user's satisfaction with the run (thumbs, a 1-5 score, or both; and a comment)."""
        from ..observe.feedback import record_feedback

        own_run(run_id, key)
        if body.thumbs is None and body.score is None:
            raise ApiError(
                422,
                "invalid_request",
                "thumbs/score: give thumbs ('up' or 'down') or a score (1-5), or both",
                [{"field": "thumbs", "message": "missing"}, {"field": "score", "message": "missing"}],
            )
        item = record_feedback(
            engine().store,
            run_id,
            thumbs=body.thumbs,
            score=body.score,
            comment=body.comment,
            by=body.by or f"key:{key.key_id}",
        )
        return FeedbackOut(**item.to_dict())

    # -- approvals ----------------------------------------------------------------------------
    @app.get("/v1/approvals", tags=["approvals"], response_model=list[ApprovalOut], responses=ERRORS)
    def list_approvals(
        key: Caller,
        status: Annotated[
            str | None, Query(max_length=20, description="pending (default), approved, rejected, expired, decided, all")
        ] = "pending",
        run_id: Annotated[str | None, Query(max_length=64)] = None,
    ) -> list[ApprovalOut]:
        """Requests for a person's decision in your tenant, oldest first."""
        store = engine().store
        found = store.list_approvals(status=None if status == "all" else status, run_id=run_id, tenant=key.tenant)
        return [_approval_out(a, agent) for a, agent in zip(found, _agents_of(store, found), strict=True)]

    @app.get("/v1/approvals/{approval_id}", tags=["approvals"], response_model=ApprovalOut, responses=ERRORS)
    def get_approval(approval_id: str, key: Caller) -> ApprovalOut:
        """One request for a decision."""
        return _approval_out(own_approval(approval_id, key))

    def decided(approval_id: str, key: ApiKey, action: Any) -> ApprovalOut:
        own_approval(approval_id, key)
        try:
            return _approval_out(action())
        except UsageError as exc:
            raise conflict(exc) from None

    @app.post("/v1/approvals/{approval_id}/approve", tags=["approvals"], response_model=ApprovalOut, responses=ERRORS)
    def approve(approval_id: str, body: ApproveIn, key: Caller) -> ApprovalOut:
        """Approve the tool call exactly as requested; the run continues on a worker."""
        by = f"key:{key.key_id}"
        return decided(
            approval_id,
            key,
            lambda: runtime().approve(approval_id, by=by, note=body.note, arguments_hash=body.arguments_hash),
        )

    @app.post("/v1/approvals/{approval_id}/reject", tags=["approvals"], response_model=ApprovalOut, responses=ERRORS)
    def reject(approval_id: str, body: RejectIn, key: Caller) -> ApprovalOut:
        """Reject the tool call; the model is told the reason and carries on."""
        by = f"key:{key.key_id}"
        return decided(approval_id, key, lambda: runtime().reject(approval_id, by=by, reason=body.reason))

    @app.post("/v1/approvals/{approval_id}/edit", tags=["approvals"], response_model=ApprovalOut, responses=ERRORS)
    def edit(approval_id: str, body: EditIn, key: Caller) -> ApprovalOut:
        """Approve the tool call with changed arguments (validated against the tool's schema)."""
        approval = own_approval(approval_id, key)
        record = engine().store.get_run(approval.run_id)
        agent = agents.get(record.agent) if record is not None else None
        tool = agent.tools_by_name.get(approval.tool or "") if agent is not None else None
        if tool is not None:
            from ..tools import ToolArgumentsError

            try:
                tool.validate(body.arguments)
            except ToolArgumentsError as exc:
                raise ApiError(
                    422, "invalid_request", f"arguments: {exc}", [{"field": "arguments", "message": str(exc)}]
                ) from None
        by = f"key:{key.key_id}"
        return decided(approval_id, key, lambda: runtime().edit(approval_id, body.arguments, by=by, note=body.note))

    @app.post("/v1/approvals/{approval_id}/resolve", tags=["approvals"], response_model=ApprovalOut, responses=ERRORS)
    def resolve(approval_id: str, body: ResolveIn, key: Caller) -> ApprovalOut:
        """Decide a run that needs attention: retry, skip or fail an interrupted call; continue or fail a pause."""
        by = f"key:{key.key_id}"
        return decided(
            approval_id,
            key,
            lambda: runtime().resolve(approval_id, body.decision, by=by, note=body.note, result=body.result),
        )

    # -- monitoring ---------------------------------------------------------------------------
    @app.get(
        "/metrics",
        tags=["monitoring"],
        responses={**ERRORS, 200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
        response_class=PlainTextResponse,
    )
    def metrics(key: Caller) -> Response:
        """Prometheus metrics of your tenant's runs, computed from the database (so from every worker)."""
        from ..observe.metrics import CONTENT_TYPE, render

        return Response(render(engine().store, key.tenant), media_type=CONTENT_TYPE)

    @app.get("/v1/stats", tags=["monitoring"], response_model=StatsOut, responses=ERRORS, response_model_by_alias=True)
    def stats(
        key: Caller,
        hours: Annotated[float, Query(gt=0, le=24 * 90, description="how far back")] = 24.0,
        buckets: Annotated[int, Query(ge=1, le=500, description="how many time buckets")] = 24,
    ) -> StatsOut:
        """Completion rate, error rate, steps, cost and satisfaction over time, for charts."""
        from ..observe.metrics import timeseries

        return StatsOut.model_validate(timeseries(engine().store, key.tenant, hours=hours, buckets=buckets))

    @app.get("/v1/alerts", tags=["monitoring"], response_model=AlertsOut, responses=ERRORS)
    def alerts(key: Caller) -> AlertsOut:
        """Active anomaly alerts on your tenant's agents."""
        board = config.alerts
        found = [] if board is None else [AlertOut(**a.to_dict()) for a in board.active(key.tenant)]
        return AlertsOut(alerts=found)

    @app.get("/v1/me", tags=["monitoring"], response_model=MeOut, responses=ERRORS)
    def me(key: Caller) -> MeOut:
        """The caller's key and tenant, and the agents served."""
        return MeOut(key_id=key.key_id, tenant=key.tenant, name=key.name, agents=sorted(agents))

    # -- console ------------------------------------------------------------------------------
    if CONSOLE.is_dir():
        app.mount("/console/static", StaticFiles(directory=CONSOLE), name="console")

        @app.get("/", include_in_schema=False)
        def console() -> FileResponse:
            return FileResponse(CONSOLE / "index.html")

    return app


def _look(store: Any, run_id: str, after: int) -> tuple[RunRecord | None, list[RunEvent]]:
    """The run's entry and its events after `after`, read together on one worker thread."""
    return store.get_run(run_id), read_events(store, run_id, after)


def _frame(event: RunEvent, with_id: bool) -> bytes:
    head = f"id: {event.seq}\n" if with_id else ""
    return f"{head}event: {event.kind}\ndata: {json.dumps(event_dict(event), default=str)}\n\n".encode()


async def _sse(watch: RunWatch, store: Any, run_id: str, after: int) -> AsyncIterator[bytes]:
    """Send the run's new events each time the watch says it changed, until it finishes.

    A guarded call's start and its result are two events. The start (``tool_started``) goes out once
    and carries no id, so it is no point to resume from: a client that reconnects after the last id it
    got receives the call's result, journaled later under the call's own sequence number. The stream
    reads on from the first call still in flight, and sends no id twice.
    """
    changed = watch.subscribe(run_id)
    last_status: str | None = None
    started: set[int] = set()  # guarded calls whose start was sent
    sent: set[int] = set()  # ids sent above `after`
    try:
        while True:
            changed.clear()  # cleared before looking: a change during the look wakes the next wait
            record, events = await anyio.to_thread.run_sync(_look, store, run_id, after)
            if record is None:  # pruned while watched
                yield b"event: end\ndata: {}\n\n"
                return
            for event in events:
                if event.kind == "tool_started":
                    if event.seq not in started:
                        started.add(event.seq)
                        yield _frame(event, with_id=False)
                elif event.seq not in sent:
                    sent.add(event.seq)
                    yield _frame(event, with_id=True)
            if events:
                in_flight = [e.seq for e in events if e.kind == "tool_started"]
                after = min(in_flight) - 1 if in_flight else events[-1].seq
                sent = {seq for seq in sent if seq > after}
            if record.status != last_status:
                last_status = record.status
                yield f"event: status\ndata: {json.dumps(event_dict(status_event(record)), default=str)}\n\n".encode()
            if record.status in FINAL:
                yield b"event: end\ndata: {}\n\n"
                return
            try:
                await asyncio.wait_for(changed.wait(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield b": keep-alive\n\n"
    finally:
        watch.unsubscribe(run_id, changed)


def _agents_of(store: Any, found: list[Approval]) -> list[str | None]:
    """The agent of each approval's run, in one query."""
    names = store.agents_of([a.run_id for a in found])
    return [names.get(a.run_id) for a in found]


def _run_out(record: RunRecord) -> RunOut:
    result = record.result or {}
    return RunOut(
        run_id=record.run_id,
        agent=record.agent,
        task=record.task,
        status=record.status,
        steps=record.steps,
        usage=record.usage,
        output=result.get("output") if record.status == "done" else None,
        error=record.error,
        error_type=record.error_type,
        metadata={k: v for k, v in record.metadata.items() if k != "api_key"},
        parent_run=record.parent_run,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _approval_out(approval: Approval, agent: str | None = None) -> ApprovalOut:
    data = approval.to_dict()
    data.pop("decision", None)
    data.pop("edited_hash", None)
    data.pop("on_expiry", None)
    return ApprovalOut(agent=agent, **data)
