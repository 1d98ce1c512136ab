"""The remote-sandbox interface: any backend served over HTTP, and the client that uses one.

Production runs untrusted code away from the workers: in its own pods under gVisor with no network
(``deploy/k8s/sandbox``). The interface is small and is the same for every backend:

- ``POST /v1/executions`` with an `ExecutionRequest` as JSON answers ``200`` with an `ExecutionResult`
  as JSON. Every execution, including one stopped by a limit, is a ``200``; ``400`` means the request
  did not validate (the body's ``error`` names the field), ``401`` a missing or wrong bearer token,
  ``411`` a body without a valid Content-Length, ``413`` a body over 4 MiB, ``503`` a server at its
  concurrency limit (retry later).
- ``GET /v1/health`` answers ``{"backend": name, "available": bool, "reason": str | null}``.
- With a token configured, executions need ``Authorization: Bearer <token>``; health is open (it
  tells only whether the backend can run), so a Kubernetes probe can call it.

`serve` exposes a local backend (``python -m keel.sandbox serve``); `RemoteBackend` implements
`SandboxBackend` by calling such a server, so a remote sandbox is a drop-in for a local one. Another
implementation (a container per execution, a hosted sandbox service) needs only the two endpoints.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pydantic

from ._types import ExecutionRequest, ExecutionResult, SandboxBackend

__all__ = ["MAX_BODY_BYTES", "RemoteBackend", "SandboxServer", "serve"]

log = logging.getLogger("keel.sandbox")

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Largest request body a sandbox server accepts."""


class RemoteBackend:
    """A sandbox reached over HTTP: sends each request to a server speaking the interface above.

    Args:
        url: the server's base address, e.g. ``http://keel-sandbox.keel.svc:8750``.
        token: bearer token the server expects, if any.
        margin_s: seconds added to a request's own time limit before the client gives up waiting.
        transport: an httpx transport (tests and custom networking); default a plain connection pool.
    """

    name = "remote"

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        margin_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.margin_s = margin_s
        self._client = httpx.Client(base_url=self.url, headers=headers, transport=transport, timeout=10.0)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def unavailable_reason(self) -> str | None:
        """Why the server cannot run code now (naming the fix), or None when it can."""
        try:
            response = self._client.get("/v1/health")
        except httpx.HTTPError as exc:
            return f"sandbox server {self.url} is unreachable ({exc}); check KEEL_SANDBOX_URL and the service"
        if response.status_code != 200:
            return f"sandbox server {self.url} answered {response.status_code} to /v1/health: {response.text[:200]}"
        body = response.json()
        return None if body.get("available") else f"sandbox server {self.url}: {body.get('reason')}"

    def run(self, request: ExecutionRequest) -> ExecutionResult:
        """Send one request to the server and return its result; transport failures become results."""
        try:
            response = self._client.post(
                "/v1/executions",
                content=request.model_dump_json(),
                headers={"Content-Type": "application/json"},
                timeout=request.limits.timeout_s + self.margin_s,
            )
        except httpx.HTTPError as exc:
            return ExecutionResult(
                backend=self.name,
                exit_code=None,
                stop_reason="unavailable",
                error=f"sandbox server {self.url} is unreachable ({type(exc).__name__}: {exc}); "
                "check KEEL_SANDBOX_URL and that the service runs",
            )
        if response.status_code != 200:
            reason = "unavailable" if response.status_code in (401, 503) else "error"
            return ExecutionResult(
                backend=self.name,
                exit_code=None,
                stop_reason=reason,  # type: ignore[arg-type]
                error=f"sandbox server {self.url} answered {response.status_code}: {response.text[:500]}",
            )
        try:
            return ExecutionResult.model_validate_json(response.content)
        except pydantic.ValidationError as exc:
            return ExecutionResult(
                backend=self.name,
                exit_code=None,
                stop_reason="error",
                error=f"sandbox server {self.url} sent a result that does not validate: {exc}",
            )


class SandboxServer(ThreadingHTTPServer):
    """An HTTP server running requests on one backend, at most `max_concurrent` at a time."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], backend: SandboxBackend, *, token: str | None, max_concurrent: int
    ) -> None:
        super().__init__(address, _Handler)
        self.backend = backend
        self.token = token
        self.slots = threading.BoundedSemaphore(max_concurrent)

    @property
    def url(self) -> str:
        """The address clients use (``http://host:port``)."""
        host, port = self.server_address[:2]
        return f"http://{host if isinstance(host, str) else host.decode()}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: SandboxServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class names it
        log.debug("sandbox server: " + format, *args)

    def _send(self, status: int, body: dict[str, Any] | str) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        if status != 200:
            # An unread request body must not be parsed as the next request: this connection ends here,
            # and the client is told so, or it would send its next request on a socket being closed.
            self.close_connection = True
            self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if not self.server.token:
            return True
        given = self.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {self.server.token}".encode()):
            return True
        self._send(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong bearer token; send Authorization: Bearer"})
        return False

    def do_GET(self) -> None:  # noqa: N802 - the base class's naming
        if self.path != "/v1/health":
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {self.path!r}; use /v1/health"})
            return
        reason = self.server.backend.unavailable_reason()
        self._send(200, {"backend": self.server.backend.name, "available": reason is None, "reason": reason})

    def do_POST(self) -> None:  # noqa: N802 - the base class's naming
        if not self._authorized():
            return
        if self.path != "/v1/executions":
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {self.path!r}; use /v1/executions"})
            return
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            length = -1
        if length < 0:
            self._send(HTTPStatus.LENGTH_REQUIRED, {"error": "send the request body with a Content-Length"})
            return
        if length > MAX_BODY_BYTES:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"body over {MAX_BODY_BYTES} bytes"})
            return
        try:
            request = ExecutionRequest.model_validate_json(self.rfile.read(length))
        except pydantic.ValidationError as exc:
            self._send(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        if not self.server.slots.acquire(blocking=False):
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "the sandbox server is at its concurrency limit"})
            return
        try:
            result = self.server.backend.run(request)
        finally:
            self.server.slots.release()
        self._send(200, result.model_dump_json())


def serve(
    backend: SandboxBackend,
    *,
    host: str = "127.0.0.1",
    port: int = 8750,
    token: str | None = None,
    max_concurrent: int = 4,
) -> SandboxServer:
    """Create a server exposing `backend` over the remote-sandbox interface (call ``serve_forever``).

    Args:
        backend: the backend that runs each request.
        host: the interface to listen on.
        port: the port (0 picks a free one; read it from ``server.url``).
        token: bearer token clients must send; None accepts any client (use a NetworkPolicy then).
        max_concurrent: executions at once; more are answered ``503``.
    """
    return SandboxServer((host, port), backend, token=token, max_concurrent=max_concurrent)
