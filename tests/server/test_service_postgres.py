"""The service on PostgreSQL: a refund approved over HTTP, events, tenant scoping and metrics."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from .conftest import Service, read_events, start_service, stop_service

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="module")
def pg_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    name = f"keel_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    svc = start_service(Path(tmp_path_factory.mktemp("pg")), "--anomaly-window", "0", db=url)
    try:
        yield svc
    finally:
        stop_service(svc)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_refund_approved_over_http_on_postgresql(pg_service: Service) -> None:
    key, other = pg_service.key("acme"), pg_service.key("globex")
    with pg_service.client(key) as client, pg_service.client(other) as stranger:
        run_id = client.post("/v1/runs", json={"agent": "support", "task": "refund P-1 120.00"}).json()["run_id"]
        read_events(client, run_id, until="waiting")
        [approval] = client.get("/v1/approvals").json()
        assert stranger.get("/v1/approvals").json() == []
        assert stranger.post(f"/v1/approvals/{approval['id']}/approve", json={}).status_code == 404
        assert client.post(f"/v1/approvals/{approval['id']}/approve", json={"note": "ok"}).status_code == 200
        events = read_events(client, run_id, until="end", last_id="1")
        assert [e["event"] for e in events if "id" in e] == [
            "approval_requested",
            "approval_decided",
            "tool_result",
            "model_response",
        ]
        assert client.get(f"/v1/runs/{run_id}").json()["output"] == "Refunded 120.00 on P-1."
        assert 'keel_runs{agent="support",status="done"} 1.0' in client.get("/metrics").text
        assert 'agent="support"' not in stranger.get("/metrics").text
