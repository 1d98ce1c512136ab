"""A real `keel serve` on loopback: a subprocess on a port the system picks, on its own SQLite database."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENTS = Path(__file__).with_name("service_agents.py")
TARGETS = [f"{AGENTS}:calc", f"{AGENTS}:support", f"{AGENTS}:planner"]


LISTENING = re.compile(r"keel serve http://127\.0\.0\.1:(\d+) ")


@dataclass
class Service:
    url: str
    db: str
    process: subprocess.Popen[bytes]
    log: Path

    def key(self, tenant: str) -> str:
        """A new API key for `tenant` (made in this process; `keel keys create` is tested on its own)."""
        from keel.durable import Store, make_engine
        from keel.server import create_key

        engine = make_engine(self.db)
        try:
            Store(engine).migrate()
            return create_key(engine, tenant)[1]
        finally:
            engine.dispose()

    def keel(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a `keel` command on the service's database."""
        return subprocess.run(
            [sys.executable, "-m", "keel.cli", *args, "--db", self.db],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )

    def client(self, key: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def start_service(tmp: Path, *extra: str, db: str | None = None, targets: list[str] = TARGETS) -> Service:
    """Start `keel serve` on a port the system picks (``--port 0``: no other process can take it first)."""
    db = db or f"sqlite:///{tmp / 'keel.db'}"
    log = tmp / "serve.log"
    command = [sys.executable, "-m", "keel.cli", "serve", "--db", db, "--port", "0", *extra, *targets]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    service: Service | None = None
    with httpx.Client(timeout=2) as client:
        while True:  # wait for the port it says it listens on, then its own readiness answer, bounded
            if process.poll() is not None:
                raise AssertionError(f"keel serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            if service is None and (found := LISTENING.search(log.read_text(errors="replace"))):
                service = Service(f"http://127.0.0.1:{found.group(1)}", db, process, log)
            if service is not None:
                try:
                    if client.get(f"{service.url}/readyz").status_code == 200:
                        return service
                except httpx.TransportError:
                    pass
            if time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"keel serve did not become ready:\n{log.read_text()[-3000:]}")
            process_wait(process, 0.1)


def process_wait(process: subprocess.Popen[bytes], seconds: float) -> None:
    """Wait for the process to exit, at most `seconds` (the readiness poll's pace)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(seconds)


def stop_service(service: Service) -> None:
    service.process.terminate()
    try:
        service.process.wait(30)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait(10)


@pytest.fixture(scope="package")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_service(tmp_path_factory.mktemp("serve"), "--anomaly-window", "0", "--rate", "1000", "--burst", "1000")
    yield svc
    stop_service(svc)


def read_events(client: httpx.Client, run_id: str, *, until: str, last_id: str | None = None) -> list[dict[str, Any]]:
    """Read the run's event stream until an event of kind `until` (or a status `until`), then hang up."""
    headers = {"Last-Event-ID": last_id} if last_id else {}
    events: list[dict[str, Any]] = []
    with client.stream("GET", f"/v1/runs/{run_id}/events", headers=headers, timeout=60) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        for line in response.iter_lines():
            if line.startswith("id: "):
                event["id"] = line[4:]
            elif line.startswith("event: "):
                event["event"] = line[7:]
            elif line.startswith("data: "):
                event["data"] = json.loads(line[6:])
            elif line == "" and event:
                events.append(event)
                status = (event.get("data") or {}).get("data", {}).get("status") if event["event"] == "status" else None
                if event["event"] == until or status == until:
                    return events
                event = {}
    return events
