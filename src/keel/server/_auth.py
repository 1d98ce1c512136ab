"""Who calls: the API key of each request and its rate limit, the NUL check on parameters, and ``/v1/me``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .._validate import NUL_PROBLEM, has_nul
from ._deps import ERRORS, ApiError, Service, Svc
from ._keys import ApiKey
from ._limits import RateLimiter
from ._schemas import MeOut

__all__ = ["BEARER", "Caller", "caller", "no_nul", "router"]

BEARER = HTTPBearer(auto_error=False, description="an API key from `keel keys create --tenant T`")


def caller(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> ApiKey:
    """The API key of the request, after its rate limit.

    Raises:
        ApiError: 401 without a valid key, 429 over the key's rate limit.
    """
    svc: Service = request.app.state.keel
    if credentials is None:
        raise ApiError(401, "unauthorized", "send an API key as 'Authorization: Bearer <key>'")
    key: ApiKey | None = svc.keyring().lookup(credentials.credentials)
    if key is None:
        raise ApiError(401, "unauthorized", "the API key is unknown or revoked; create one with `keel keys create`")
    wait = svc.limiter.take(key.key_id)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests with key {key.key_id}: the limit is {svc.config.rate_per_second:g} a second "
            f"(bursts of {svc.config.burst}); retry after {wait:.2f} s",
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


router = APIRouter()


@router.get("/v1/me", tags=["monitoring"], response_model=MeOut, responses=ERRORS)
def me(key: Caller, svc: Svc) -> MeOut:
    """The caller's key and tenant, and the agents served."""
    return MeOut(key_id=key.key_id, tenant=key.tenant, name=key.name, agents=sorted(svc.agents))
