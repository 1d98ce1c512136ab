"""The remote-sandbox interface over a real HTTP server, with the bubblewrap backend behind it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from keel.sandbox import BubblewrapBackend, ExecutionRequest, Limits
from keel.sandbox.remote import RemoteBackend, SandboxServer, serve

TOKEN = "test-token-7f3a"


@pytest.fixture
def server(bubblewrap: BubblewrapBackend) -> Iterator[SandboxServer]:
    srv = serve(bubblewrap, port=0, token=TOKEN, max_concurrent=2)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


def test_a_remote_backend_runs_code_like_the_local_one(server: SandboxServer) -> None:
    remote = RemoteBackend(server.url, token=TOKEN)
    try:
        assert remote.unavailable_reason() is None
        request = ExecutionRequest(
            language="python", code="print(open('in.txt').read().upper())", files={"in.txt": "hi"}
        )
        result = remote.run(request)
        assert (result.backend, result.stdout, result.exit_code) == ("bubblewrap", "HI\n", 0)
        stopped = remote.run(ExecutionRequest(language="shell", code="sleep 60", limits=Limits(timeout_s=1)))
        assert stopped.stop_reason == "timeout"
    finally:
        remote.close()


def test_a_wrong_token_is_refused(server: SandboxServer) -> None:
    remote = RemoteBackend(server.url, token="wrong")
    try:
        result = remote.run(ExecutionRequest(language="python", code="print(1)"))
        assert result.stop_reason == "unavailable" and "401" in (result.error or "")
        assert remote.unavailable_reason() is None  # health is open to probes; it runs nothing
    finally:
        remote.close()


def test_a_refused_request_says_its_connection_closes_so_the_next_request_is_not_lost(server: SandboxServer) -> None:
    # The server stops reading a refused request's connection; a client told nothing would send its next
    # request on the socket being closed and read "Server disconnected without sending a response".
    with httpx.Client(base_url=server.url) as client:
        for _ in range(20):
            refused = client.post("/v1/executions", content=b"{}", headers={"Authorization": "Bearer wrong"})
            assert refused.status_code == 401
            assert refused.headers.get("connection") == "close"
            assert client.get("/v1/health").status_code == 200


def test_an_invalid_request_is_a_400_naming_the_field(server: SandboxServer) -> None:
    response = httpx.post(
        f"{server.url}/v1/executions",
        json={"language": "cobol", "code": "x"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 400 and "language" in response.json()["error"]


def test_an_unreachable_server_is_a_structured_result() -> None:
    with socket.socket() as closed:  # bound and not listening: every connection to it is refused
        closed.bind(("127.0.0.1", 0))
        remote = RemoteBackend(f"http://127.0.0.1:{closed.getsockname()[1]}", margin_s=1)
        try:
            result = remote.run(ExecutionRequest(language="python", code="print(1)"))
            assert result.stop_reason == "unavailable" and "unreachable" in (result.error or "")
        finally:
            remote.close()
