"""Helpers for the MCP tests: the Python test server over stdio and streamable HTTP, ports, polling."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent
SERVER = HERE / "mcp_test_server.py"
DEADLINE = 30.0


def closed_port() -> socket.socket:
    """A socket bound to a port the system picked and not listening: connecting to it is refused.

    Keep it open while the port must stay closed; no other process can take the port meanwhile.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def listening_port(pid: int) -> int | None:
    """The TCP port process `pid` listens on, read from /proc (for servers that do not say which)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    return int(fields[1].rsplit(":", 1)[1], 16)
    return None


def announced_port(log: Path, proc: subprocess.Popen[bytes], what: str) -> int:
    """The port a server started on port 0 says it listens on (``... on PORT`` or ``...:PORT/...``)."""
    found: list[int] = []

    def said() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        match = re.search(r"listening on (\d+)|http://127\.0\.0\.1:(\d+)/", log.read_text(errors="replace"))
        if match:
            found.append(int(match.group(1) or match.group(2)))
        return bool(found)

    wait_for(said, f"{what} to say its port")
    return found[0]


def wait_for(condition: object, what: str, deadline: float = DEADLINE) -> None:
    """Poll a real condition until it holds, failing after `deadline` seconds."""
    end = time.monotonic() + deadline
    while not condition():  # type: ignore[operator]
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


@dataclass
class ServerFiles:
    ledger: Path
    hang: Path
    env: dict[str, str] = field(default_factory=dict)

    def charges(self) -> list[str]:
        return self.ledger.read_text().splitlines() if self.ledger.exists() else []


def stdio_command() -> list[str]:
    return [sys.executable, str(SERVER), "stdio"]


@dataclass
class HttpServer:
    """The test server over streamable HTTP: first on a port the system picks, restarted on the same one."""

    log: Path
    env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        self.log.write_bytes(b"")
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, str(SERVER), "http", str(self.port)],
                env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        # A restart binds the port it had (what a restarted server does); the first start takes a free one.
        self.port = announced_port(self.log, self.proc, "the HTTP MCP server")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
