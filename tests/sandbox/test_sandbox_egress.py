"""Allow-listed egress: two real HTTP servers on host loopback, one allowed and one not.

All traffic stays on 127.0.0.1: the sandbox reaches the servers only through keel's proxy outside it,
which decides each connection and records it in the result.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from keel.sandbox import BubblewrapBackend, ExecutionRequest, ExecutionResult, UnsafeLocalBackend, UnsafeSandboxWarning

from .test_sandbox_escapes import assert_host_untouched


class Server:
    """A loopback HTTP server that answers ``hello from NAME`` and remembers the paths it was asked for."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                body = f"hello from {outer.name}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    allowed, other = Server("allowed"), Server("other")
    yield allowed, other
    allowed.close()
    other.close()


def egress_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("keel-egress")]


def run(backend: BubblewrapBackend, code: str, network: list[str], language: str = "python") -> ExecutionResult:
    return backend.run(ExecutionRequest(language=language, code=code, network=network))  # type: ignore[arg-type]


def test_the_allowed_host_is_reached_the_other_refused_and_both_decisions_recorded(
    bubblewrap: BubblewrapBackend, servers: tuple[Server, Server], workspace_base: str
) -> None:
    allowed, other = servers
    code = f"""
import json, socket, urllib.error, urllib.request
out = {{}}
for name, port in (("allowed", {allowed.port}), ("other", {other.port})):
    try:
        out[name] = urllib.request.urlopen(f"http://127.0.0.1:{{port}}/hello", timeout=10).read().decode()
    except urllib.error.HTTPError as e:
        out[name] = f"refused {{e.code}}"
try:  # around the proxy: the sandbox's network namespace has only its own loopback
    socket.create_connection(("127.0.0.1", {allowed.port}), timeout=2).close()
    out["direct"] = "connected"
except OSError as e:
    out["direct"] = "denied"
print(json.dumps(out))
"""
    result = run(bubblewrap, code, [f"127.0.0.1:{allowed.port}"])
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"allowed": "hello from allowed", "other": "refused 403", "direct": "denied"}, result
    assert allowed.paths == ["/hello"] and other.paths == [], "the refused server was reached"
    decisions = [(e.host, e.port, e.allowed) for e in result.network]
    assert decisions == [("127.0.0.1", allowed.port, True), ("127.0.0.1", other.port, False)], result.network
    assert result.network[0].address == "127.0.0.1" and result.network[1].address is None
    assert "not in the allow-list" in result.network[1].reason
    assert_host_untouched(workspace_base)
    assert egress_threads() == [], "the proxy outlived the run"


def test_connect_tunnels_follow_the_same_allow_list(
    bubblewrap: BubblewrapBackend, servers: tuple[Server, Server], workspace_base: str
) -> None:
    allowed, other = servers
    code = f"""
import http.client, json, os, urllib.parse
proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
out = {{}}
for name, port in (("allowed", {allowed.port}), ("other", {other.port})):
    conn = http.client.HTTPConnection(proxy.hostname, proxy.port, timeout=10)
    conn.set_tunnel("127.0.0.1", port)  # CONNECT, as for https://
    try:
        conn.request("GET", "/tunnel")
        out[name] = conn.getresponse().read().decode()
    except OSError as e:
        out[name] = "refused: " + str(e)
print(json.dumps(out))
"""
    result = run(bubblewrap, code, [f"127.0.0.1:{allowed.port}"])
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["allowed"] == "hello from allowed" and "403" in out["other"], result
    assert allowed.paths == ["/tunnel"] and other.paths == []
    assert [(e.method, e.port, e.allowed) for e in result.network] == [
        ("CONNECT", allowed.port, True),
        ("CONNECT", other.port, False),
    ]
    assert_host_untouched(workspace_base)


def test_names_resolve_outside_and_only_when_allowed(
    bubblewrap: BubblewrapBackend, servers: tuple[Server, Server], workspace_base: str
) -> None:
    if shutil.which("curl", path="/usr/bin:/bin") is None:
        pytest.skip("curl is not installed (the sandbox sees the host's /usr)")
    allowed, _ = servers
    script = f"""
curl -sS --max-time 10 http://localhost:{allowed.port}/by-name; echo
curl -sS --max-time 10 -o /dev/null -w '%{{http_code}}' http://no-such-host.invalid/; echo
"""
    result = run(bubblewrap, script, [f"LOCALHOST:{allowed.port}"], language="shell")
    assert result.stdout.splitlines() == ["hello from allowed", "403"], result
    assert allowed.paths == ["/by-name"]
    by_name, unknown = result.network
    assert (by_name.host, by_name.allowed, by_name.address) == ("localhost", True, "127.0.0.1")
    assert (unknown.host, unknown.port, unknown.allowed, unknown.address) == ("no-such-host.invalid", 80, False, None)
    assert_host_untouched(workspace_base)


def test_without_an_allow_list_there_is_no_network_and_no_proxy(bubblewrap: BubblewrapBackend) -> None:
    code = """
import json, os, socket
out = {"proxy": sorted(k for k in os.environ if k.lower().endswith("_proxy"))}
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    out["inet"] = "open"
except OSError:
    out["inet"] = "denied"
print(json.dumps(out))
"""
    result = bubblewrap.run(ExecutionRequest(language="python", code=code))
    assert json.loads(result.stdout) == {"proxy": [], "inet": "denied"}, result
    assert result.network == []


@pytest.mark.parametrize(
    ("entry", "problem"),
    [("api.example.com", "host:port"), ("api.example.com:0", "port"), ("api.example.com:99999", "port"),
     ("http://api.example.com:443", "host:port"), (":443", "host"), ("a b:443", "host")],
)  # fmt: skip
def test_bad_allow_list_entries_are_refused_naming_the_fix(entry: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        ExecutionRequest(language="python", code="", network=[entry])
    assert "api.example.com:443" in str(caught.value)


def test_a_backend_that_cannot_restrict_egress_refuses_an_allow_list(workspace_base: str) -> None:
    with pytest.warns(UnsafeSandboxWarning):
        backend = UnsafeLocalBackend(acknowledge_unsafe=True, workspace_dir=workspace_base)
    result = backend.run(ExecutionRequest(language="python", code="print(1)", network=["127.0.0.1:9"]))
    assert result.stop_reason == "error" and result.exit_code is None
    assert "bubblewrap" in (result.error or "") and "network" in (result.error or "")
    assert os.listdir(workspace_base) == []
    from keel.sandbox import WasmBackend

    refused = WasmBackend(workspace_dir=workspace_base).run(
        ExecutionRequest(language="python", code="print(1)", network=["127.0.0.1:9"])
    )
    assert refused.stop_reason == "error" and "no sockets" in (refused.error or ""), refused


def test_a_tool_with_an_allow_list_reaches_the_host_and_is_not_idempotent(
    bubblewrap: BubblewrapBackend, servers: tuple[Server, Server]
) -> None:
    from keel.sandbox import python_tool

    from .test_sandbox_tools import run_tool

    allowed, other = servers
    tool = python_tool(bubblewrap, network=[f"127.0.0.1:{allowed.port}"])
    assert tool.idempotent is False and f"127.0.0.1:{allowed.port}" in tool.description
    code = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{allowed.port}/t').read().decode())"
    status, out = run_tool(tool, {"code": code})
    assert status == "done" and out["stdout"] == "hello from allowed\n", out
    assert out["network"] == [
        {"to": f"127.0.0.1:{allowed.port}", "allowed": True, "reason": out["network"][0]["reason"]}
    ]
    assert other.paths == []
    with pytest.raises(ValueError, match="host:port"):
        python_tool(bubblewrap, network=["api.example.com"])
