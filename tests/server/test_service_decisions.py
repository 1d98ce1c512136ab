"""An approval over HTTP whose `keel serve` is killed while handling it strands no run.

The service sends itself SIGKILL at the instant named by ``KEEL_KILL_POINT`` (see `keel.durable._killpoints`):
inside the decision's transaction, or after it commits and before the run's next segment is queued. A second
service on the same database (its in-process worker sweeps) then carries the run to its end, once the person
repeats a decision that did not commit.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from .conftest import read_events, start_service, stop_service

WAIT_SECONDS = 90.0


@pytest.mark.parametrize("point", ["decide:recorded", "decide:claimed"])
def test_a_service_killed_while_it_approves_strands_no_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    monkeypatch.setenv("KEEL_KILL_POINT", point)
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    doomed = start_service(tmp_path / "first", "--anomaly-window", "0")
    monkeypatch.delenv("KEEL_KILL_POINT")
    key = doomed.key("acme")
    with doomed.client(key) as client:
        run_id = client.post("/v1/runs", json={"agent": "support", "task": "refund A-1004 249.00"}).json()["run_id"]
        read_events(client, run_id, until="waiting")
        [approval] = client.get("/v1/approvals").json()
        with pytest.raises(httpx.TransportError):  # the service died while handling it
            client.post(f"/v1/approvals/{approval['id']}/approve", json={"note": "ok"})
    assert doomed.process.wait(30) < 0

    service = start_service(tmp_path / "second", "--anomaly-window", "0", db=doomed.db)
    try:
        with service.client(key) as client:
            deadline = time.monotonic() + WAIT_SECONDS
            while (run := client.get(f"/v1/runs/{run_id}").json())["status"] != "done":
                pending = client.get("/v1/approvals", params={"run_id": run_id}).json()
                if pending:  # the decision did not commit: the person sees the request again and decides again
                    assert point == "decide:recorded" and run["status"] == "waiting", (run, pending)
                    client.post(f"/v1/approvals/{pending[0]['id']}/approve", json={"note": "ok"}).raise_for_status()
                assert time.monotonic() < deadline, f"stranded: {run}\n{service.log.read_text()[-3000:]}"
                time.sleep(0.1)
            decided = client.get("/v1/approvals", params={"run_id": run_id, "status": "all"}).json()
            assert [a["status"] for a in decided] == ["approved"]
    finally:
        stop_service(service)
