"""`keel serve --no-worker`: the API only; runs wait in the queue until a `keel worker` takes them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, TARGETS, read_events, start_service, stop_service


def test_an_api_only_service_queues_runs_for_a_separate_worker(tmp_path: Path) -> None:
    service = start_service(tmp_path, "--anomaly-window", "0", "--no-worker")
    worker = None
    try:
        key = service.key("acme")
        with service.client(key) as client:
            run_id = client.post("/v1/runs", json={"agent": "calc", "task": "add 5 and 6"}).json()["run_id"]
            first = read_events(client, run_id, until="queued")  # no worker here: the run waits in the queue
            assert [e["event"] for e in first] == ["status"]
            worker = subprocess.Popen(
                [sys.executable, "-m", "keel.cli", "worker", *TARGETS, "--db", service.db, "--id", "worker-x"],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            events = read_events(client, run_id, until="end")
            assert "tool_result" in [e["event"] for e in events]
            assert client.get(f"/v1/runs/{run_id}").json()["output"] == "The sum is 11."
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        stop_service(service)
