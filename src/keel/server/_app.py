"""The FastAPI application, assembled from one router per resource.

Runs and their event stream (`_runs`), approvals (`_approvals`), health, metrics, stats, alerts and
feedback (`_monitoring`), the caller's key (`_auth`) and the console (`_console`). Routes take the
service's state (`_deps.Service`, on ``app.state.keel``) and the caller's API key by dependency injection.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ._approvals import router as approvals_router
from ._auth import no_nul
from ._auth import router as auth_router
from ._console import add_console
from ._deps import ApiError, Service, ServiceConfig, error_response
from ._limits import BodyLimit
from ._monitoring import router as monitoring_router
from ._runs import router as runs_router

__all__ = ["ApiError", "ServiceConfig", "create_app"]

log = logging.getLogger("keel.server")


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "body")


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (detail.get("ctx") or {}).get("error", "invalid JSON")
        return error_response(400, "invalid_json", f"the request body is not valid JSON ({reason}); send a JSON object")
    fields = [{"field": _field_name(tuple(e.get("loc", ()))), "message": str(e.get("msg", ""))} for e in errors]
    where = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return error_response(422, "invalid_request", f"invalid request: {where}", fields)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        response = error_response(exc.status, exc.code, exc.message, exc.fields)
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
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), message)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request %s %s failed", request.method, request.url.path)
        return error_response(500, "internal_error", f"the service failed: {type(exc).__name__}; see its log")


def create_app(config: ServiceConfig) -> FastAPI:
    """Build the service for `config` (the durable engine is opened on first use)."""
    app = FastAPI(
        title="keel",
        version="1",
        description="Runs, their live events, approvals and feedback, scoped to the tenant of the API key.",
        docs_url="/docs",
        redoc_url=None,
        dependencies=[Depends(no_nul)],
    )
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.state.keel = Service(config)
    _add_error_handlers(app)
    for router in (monitoring_router, runs_router, approvals_router, auth_router):
        app.include_router(router)
    add_console(app)
    return app
