"""Bad input against a real `keel serve`, on SQLite and on PostgreSQL: NUL characters and oversized bodies.

Every NUL case must be a 422 naming the field, never a 500, and must leave everything as it was.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from .conftest import Service, read_events, start_service, stop_service

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MAX_BODY = 4096


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = Path(tmp_path_factory.mktemp(f"bad-{request.param}"))
    flags = ("--anomaly-window", "0", "--rate", "1000", "--burst", "1000", "--max-body", str(MAX_BODY))
    if request.param == "sqlite":
        svc = start_service(tmp, *flags)
        yield svc
        stop_service(svc)
        return
    name = f"keel_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    svc = start_service(tmp, *flags, db=f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        yield svc
    finally:
        stop_service(svc)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def waiting(served: Service) -> dict[str, str]:
    """A key, and a refund run waiting for its approval."""
    key = served.key("acme")
    with served.client(key) as client:
        run_id = client.post("/v1/runs", json={"agent": "support", "task": "refund P-7 30.00"}).json()["run_id"]
        read_events(client, run_id, until="waiting")
        [approval] = client.get("/v1/approvals", params={"run_id": run_id}).json()
    return {"key": key, "run_id": run_id, "approval_id": approval["id"]}


def _nul_requests(run_id: str, approval_id: str) -> list[tuple[str, str, dict[str, Any], str]]:
    """(method, path, request options, the field the error must name) for every string the API accepts."""
    nul_run, nul_approval = f"{run_id}%00", f"{approval_id}%00x"
    refund = {"order_id": "P-7", "amount": "1"}
    return [
        ("POST", "/v1/runs", {"json": {"agent": "calc", "task": "add 1\x00 and 2"}}, "task"),
        ("POST", "/v1/runs", {"json": {"agent": "calc\x00", "task": "add 1 and 2"}}, "agent"),
        ("POST", "/v1/runs", {"json": {"agent": "calc", "task": "add", "metadata": {"k\x00": "v"}}}, "metadata"),
        ("POST", "/v1/runs", {"json": {"agent": "calc", "task": "add", "metadata": {"k": "v\x00"}}}, "metadata"),
        ("GET", "/v1/runs", {"params": {"status": "done\x00"}}, "status"),
        ("GET", "/v1/runs", {"params": {"agent": "calc\x00"}}, "agent"),
        ("GET", f"/v1/runs/{nul_run}", {}, "run_id"),
        ("GET", f"/v1/runs/{nul_run}/events", {}, "run_id"),
        ("POST", f"/v1/runs/{nul_run}/cancel", {}, "run_id"),
        ("POST", f"/v1/runs/{nul_run}/resume", {}, "run_id"),
        ("POST", f"/v1/runs/{nul_run}/feedback", {"json": {"thumbs": "up"}}, "run_id"),
        ("POST", f"/v1/runs/{run_id}/feedback", {"json": {"thumbs": "up", "comment": "ok\x00"}}, "comment"),
        ("POST", f"/v1/runs/{run_id}/feedback", {"json": {"score": 4, "by": "ada\x00"}}, "by"),
        ("GET", "/v1/approvals", {"params": {"status": "pending\x00"}}, "status"),
        ("GET", "/v1/approvals", {"params": {"run_id": f"{run_id}\x00"}}, "run_id"),
        ("GET", f"/v1/approvals/{nul_approval}", {}, "approval_id"),
        ("POST", f"/v1/approvals/{nul_approval}/approve", {"json": {}}, "approval_id"),
        ("POST", f"/v1/approvals/{approval_id}/approve", {"json": {"note": "fine\x00"}}, "note"),
        ("POST", f"/v1/approvals/{approval_id}/approve", {"json": {"arguments_hash": "\x00" * 64}}, "arguments_hash"),
        ("POST", f"/v1/approvals/{approval_id}/reject", {"json": {"reason": "no\x00"}}, "reason"),
        ("POST", f"/v1/approvals/{nul_approval}/reject", {"json": {"reason": "no"}}, "approval_id"),
        ("POST", f"/v1/approvals/{approval_id}/edit", {"json": {"arguments": {"order_id": "\x00"}}}, "arguments"),
        ("POST", f"/v1/approvals/{approval_id}/edit", {"json": {"arguments": refund, "note": "\x00"}}, "note"),
        ("POST", f"/v1/approvals/{nul_approval}/edit", {"json": {"arguments": {}}}, "approval_id"),
        ("POST", f"/v1/approvals/{approval_id}/resolve", {"json": {"decision": "retry", "note": "\x00"}}, "note"),
        ("POST", f"/v1/approvals/{approval_id}/resolve", {"json": {"decision": "skip", "result": "\x00"}}, "result"),
        ("POST", f"/v1/approvals/{nul_approval}/resolve", {"json": {"decision": "retry"}}, "approval_id"),
    ]  # fmt: skip


def test_a_nul_in_any_string_is_a_422_naming_the_field_and_changes_nothing(
    served: Service, waiting: dict[str, str]
) -> None:
    key, run_id, approval_id = waiting["key"], waiting["run_id"], waiting["approval_id"]
    with served.client(key) as client:
        before = client.get("/v1/runs").json()["runs"]
        answers = []
        for method, path, options, field in _nul_requests(run_id, approval_id):
            response = client.request(method, path, **options)
            answers.append((method, path, field, response.status_code, response.json()))
        wrong = [a for a in answers if a[3] != 422 or a[4]["fields"][0]["field"] != a[2]]
        assert wrong == []
        for _, _, field, _, body in answers:
            assert body["error"] == "invalid_request"
            assert f"{field}: contains a NUL character" in body["message"] and "remove it" in body["message"]
        # nothing changed: the same runs, the approval still pending and no feedback recorded
        assert client.get("/v1/runs").json()["runs"] == before
        detail = client.get(f"/v1/runs/{run_id}").json()
        assert [a["status"] for a in detail["approvals"]] == ["pending"] and detail["feedback"] == []
        assert client.post(f"/v1/approvals/{approval_id}/approve", json={"note": "ok"}).status_code == 200
        read_events(client, run_id, until="end")
        assert client.get(f"/v1/runs/{run_id}").json()["output"] == "Refunded 30.00 on P-7."
    assert "Traceback" not in served.log.read_text()


def _chunks(data: bytes, size: int = 512) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_chunked_body_over_max_body_is_413_and_one_under_it_is_served(
    served: Service, waiting: dict[str, str]
) -> None:
    with served.client(waiting["key"]) as client:
        before = client.get("/v1/runs").json()["runs"]
        big = json.dumps({"agent": "calc", "task": "add 1 and 2 " + "x" * (3 * MAX_BODY)}).encode()
        headers = {"content-type": "application/json"}
        response = client.post("/v1/runs", content=_chunks(big), headers=headers)
        assert response.status_code == 413, response.text
        assert response.json()["error"] == "body_too_large"
        assert f"larger than {MAX_BODY} bytes" in response.json()["message"]
        assert client.get("/v1/runs").json()["runs"] == before  # nothing was started
        small = json.dumps({"agent": "calc", "task": "add 2 and 3"}).encode()
        served_run = client.post("/v1/runs", content=_chunks(small, 8), headers=headers)
        assert served_run.status_code == 202, served_run.text
        read_events(client, served_run.json()["run_id"], until="end")
        assert client.get(f"/v1/runs/{served_run.json()['run_id']}").json()["output"] == "The sum is 5."


def test_an_oversized_body_by_content_length_is_413(served: Service, waiting: dict[str, str]) -> None:
    with served.client(waiting["key"]) as client:
        response = client.post("/v1/runs", json={"agent": "calc", "task": "x" * (2 * MAX_BODY)})
        assert response.status_code == 413 and response.json()["error"] == "body_too_large"
    with httpx.Client(base_url=served.url) as anonymous:
        assert anonymous.get("/healthz").text == "ok"
