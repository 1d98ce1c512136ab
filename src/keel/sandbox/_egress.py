"""Allow-listed egress for the bubblewrap sandbox: a proxy outside the sandbox decides every connection.

The sandbox keeps its own network namespace (only its loopback). Its pid 1 listens on
``127.0.0.1:3128`` there, and the program finds that address in ``HTTP_PROXY``, ``HTTPS_PROXY`` and
``ALL_PROXY``. Each connection accepted there is handed, as a file descriptor over a unix socket
pair, to `EgressProxy` in keel's process, outside the sandbox. The proxy reads one HTTP proxy
request (``CONNECT host:port`` for a tunnel, or ``GET http://host:port/...``), checks ``host:port``
against the allow-list, and only then resolves the name and connects; every decision is an
`EgressEvent` in the result. Nothing else leaves the sandbox: there is no route, no DNS server and
no other socket to the outside.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
from collections.abc import Sequence
from urllib.parse import urlsplit

from ._types import EgressEvent, split_host_port

__all__ = ["PROXY_PORT", "EgressProxy"]

PROXY_PORT = 3128
MAX_HEAD = 16 * 1024
MAX_CONNECTIONS = 32  # open at once, per execution
CONNECT_SECONDS = 10.0
IDLE_SECONDS = 60.0
log = logging.getLogger("keel.sandbox")


def proxy_env() -> list[str]:
    """The ``--setenv`` arguments that point common clients (curl, urllib, requests, httpx) at the proxy."""
    url = f"http://127.0.0.1:{PROXY_PORT}"
    env: list[str] = []
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env += ["--setenv", name, url, "--setenv", name.lower(), url]
    return env


class _Refused(Exception):
    """A request the proxy answers with an error status and closes."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class EgressProxy:
    """The proxy of one execution: receives its connections, decides, relays; closed when the run ends.

    Args:
        allow: normalised ``host:port`` entries (see `keel.sandbox.ExecutionRequest.network`).
    """

    def __init__(self, allow: Sequence[str]) -> None:
        self.allow = {split_host_port(entry): entry for entry in allow}
        self.events: list[EgressEvent] = []
        self.outside, self.inside = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._receiver = threading.Thread(target=self._receive, name="keel-egress", daemon=True)
        self._receiver.start()

    def close(self) -> list[EgressEvent]:
        """Stop relaying (the sandbox is gone), wait for the connection threads, and return the events."""
        for sock in (self.outside, self.inside):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._receiver.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        with self._lock:
            return list(self.events)

    def _receive(self) -> None:
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.outside, 16, 16)
            except OSError:
                return
            if not data and not fds:
                return  # the sandbox's end is closed
            for fd in fds:
                try:
                    client = socket.socket(fileno=fd)
                except OSError:  # not a socket: only the sandbox's pid 1 can send here, but never trust it
                    os.close(fd)
                    continue
                with self._lock:
                    self._threads = [t for t in self._threads if t.is_alive()]
                    crowded = len(self._threads) >= MAX_CONNECTIONS
                if crowded:
                    self._answer(client, "503 Service Unavailable", f"more than {MAX_CONNECTIONS} open connections")
                    client.close()
                    continue
                thread = threading.Thread(target=self._serve, args=(client,), name="keel-egress-conn", daemon=True)
                with self._lock:
                    self._threads.append(thread)
                thread.start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        self._track(client)
        try:
            client.settimeout(IDLE_SECONDS)
            head, rest = _read_head(client)
            method, host, port, forward = _parse(head)
            entry = self.allow.get((host, port))
            if entry is None:
                self._record(host, port, method, False, f"{_show(host, port)} is not in the allow-list")
                raise _Refused("403 Forbidden", f"{_show(host, port)} is not in the sandbox's network allow-list")
            try:
                upstream = socket.create_connection((host, port), timeout=CONNECT_SECONDS)
            except OSError as exc:
                self._record(host, port, method, True, f"allowed by {entry!r}, but connecting failed: {exc}")
                raise _Refused("502 Bad Gateway", f"cannot connect to {_show(host, port)}: {exc}") from None
            self._track(upstream)
            self._record(host, port, method, True, f"allowed by {entry!r}", str(upstream.getpeername()[0]))
            if forward is None:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                upstream.sendall(forward)
            if rest:
                upstream.sendall(rest)
            _relay(client, upstream)
        except _Refused as refused:
            self._answer(client, refused.status, refused.reason)
        except OSError:
            pass  # a connection reset or timed out: nothing to answer
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    self._untrack(sock)
                    sock.close()

    def _record(
        self, host: str, port: int, method: str, allowed: bool, reason: str, address: str | None = None
    ) -> None:
        event = EgressEvent(host=host, port=port, method=method, allowed=allowed, reason=reason, address=address)
        log.info("keel sandbox egress: %s %s -> %s (%s)", method, _show(host, port), allowed, reason)
        with self._lock:
            self.events.append(event)

    @staticmethod
    def _answer(client: socket.socket, status: str, reason: str) -> None:
        body = f"keel sandbox proxy: {reason}\n".encode()
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            client.sendall(head.encode() + body)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _read_head(client: socket.socket) -> tuple[bytes, bytes]:
    """Read up to the end of the request's header block; return it and whatever followed it."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            raise _Refused("431 Request Header Fields Too Large", f"request head over {MAX_HEAD} bytes")
        chunk = client.recv(4096)
        if not chunk:
            raise OSError("the client closed before sending a request")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def _parse(head: bytes) -> tuple[str, str, int, bytes | None]:
    """The method, host and port of a proxy request, and the head to send upstream (None for CONNECT)."""
    first, _, headers = head.partition(b"\r\n")
    parts = first.decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise _Refused("400 Bad Request", "not an HTTP proxy request")
    method, target, version = parts
    try:
        if method == "CONNECT":
            host, port = split_host_port(target)
            return method, host, port, None
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"{target!r} is not an absolute http:// URL (use CONNECT for https)")
        netloc = url.netloc.rpartition("@")[2]
        host, port = split_host_port(netloc if url.port is not None else f"{netloc}:80")
    except ValueError as exc:
        raise _Refused("400 Bad Request", str(exc)) from None
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    return method, host, port, f"{method} {path} {version}\r\n".encode("latin-1") + headers


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until both sides have finished sending (or the proxy is closed)."""
    peer = {a: b, b: a}
    with selectors.DefaultSelector() as sel:
        for each in (a, b):
            each.setblocking(False)
            sel.register(each, selectors.EVENT_READ, each)
        while sel.get_map():
            events = sel.select(timeout=IDLE_SECONDS)
            if not events:
                return  # idle for too long
            for key, _ in events:
                sock: socket.socket = key.data
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(sock)
                    with contextlib.suppress(OSError):
                        peer[sock].shutdown(socket.SHUT_WR)
                    continue
                peer[sock].setblocking(True)
                peer[sock].sendall(data)
                peer[sock].setblocking(False)
