"""What every router of the service shares: its settings and state, errors, and the per-request dependencies.

The app keeps one `Service` on ``app.state.keel``; routes take it (`Svc`) and the caller's API key (`Caller`,
in `_auth`) through FastAPI's dependency injection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from ..exceptions import UsageError
from ._keys import ApiKey, KeyRing
from ._limits import RateLimiter
from ._schemas import ErrorOut

if TYPE_CHECKING:
    from .._runtime import Runtime
    from ..agent import Agent
    from ..durable import Approval, DurableEngine, RunRecord
    from ..observe.anomaly import AlertBoard
    from ._events import RunWatch

__all__ = ["ERRORS", "ApiError", "Service", "ServiceConfig", "Svc", "conflict", "error_response", "service"]

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


def error_response(status: int, code: str, message: str, fields: list[dict[str, str]] | None = None) -> JSONResponse:
    """The JSON body of an error: its code, a message naming the problem and the fix, and the fields at fault."""
    return JSONResponse({"error": code, "message": message, "fields": fields or []}, status_code=status)


def conflict(exc: UsageError) -> ApiError:
    """A 409 for an operation refused because the object is in another state."""
    return ApiError(409, "conflict", str(exc))


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


class Service:
    """The service's state: its settings, the agents it serves, and the runtime, engine and keys it opens lazily."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.agents = {agent.name: agent for agent in config.agents}
        self.limiter = RateLimiter(config.rate_per_second, config.burst)
        self._runtime: Runtime | None = None
        self._keys: KeyRing | None = None
        self._watch: RunWatch | None = None

    def runtime(self) -> Runtime:
        """The runtime on the service's database."""
        if self._runtime is None:
            from .._runtime import Runtime

            self._runtime = Runtime(self.config.database_url)
        return self._runtime

    def engine(self) -> DurableEngine:
        """The durable engine on the service's database (opened on first use)."""
        from ..durable import DurableEngine

        return DurableEngine.for_url(self.config.database_url)

    def keyring(self) -> KeyRing:
        """The API keys, looked up in the database and remembered for a while."""
        if self._keys is None:
            self._keys = KeyRing(self.engine().engine, ttl=self.config.key_cache_seconds)
        return self._keys

    def watch(self) -> RunWatch:
        """What tells the event streams that the runs they follow changed."""
        if self._watch is None:
            from ._events import RunWatch

            self._watch = RunWatch(self.engine().store)
        return self._watch

    def own_run(self, run_id: str, key: ApiKey) -> RunRecord:
        """The run, if it belongs to the key's tenant.

        Raises:
            ApiError: 404 when there is no such run for this tenant.
        """
        record = self.engine().store.get_run(run_id)
        if record is None or record.tenant != key.tenant:  # another tenant's run does not exist for this key
            raise ApiError(404, "not_found", f"run {run_id!r} does not exist; list runs with GET /v1/runs")
        return record

    def own_approval(self, approval_id: str, key: ApiKey) -> Approval:
        """The request for a decision, if its run belongs to the key's tenant.

        Raises:
            ApiError: 404 when there is no such request for this tenant.
        """
        store = self.engine().store
        approval = store.get_approval(approval_id)
        record = None if approval is None else store.get_run(approval.run_id)
        if approval is None or record is None or record.tenant != key.tenant:
            raise ApiError(
                404, "not_found", f"approval {approval_id!r} does not exist; list them with GET /v1/approvals"
            )
        return approval


def service(request: Request) -> Service:
    """The app's `Service`."""
    found: Service = request.app.state.keel
    return found


Svc = Annotated[Service, Depends(service)]
