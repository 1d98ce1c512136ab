"""The HTTP API against a real `keel serve` on loopback: runs, events, approvals, feedback, bad input."""

from __future__ import annotations

import pytest

from .conftest import Service, read_events


@pytest.fixture(scope="module")
def key(service: Service) -> str:
    return service.key("acme")


def test_a_run_started_over_http_runs_on_the_worker_and_streams_its_events(service: Service, key: str) -> None:
    with service.client(key) as client:
        answer = client.post("/v1/runs", json={"agent": "calc", "task": "add 2 and 3", "metadata": {"ticket": 7}})
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        assert answer.json()["events"] == f"/v1/runs/{run_id}/events"

        events = read_events(client, run_id, until="end")
        kinds = [e["event"] for e in events]
        assert kinds[-1] == "end"
        assert "model_response" in kinds and "tool_result" in kinds
        tool = next(e for e in events if e["event"] == "tool_result")["data"]["data"]
        assert (tool["name"], tool["arguments"], tool["content"], tool["is_error"]) == (
            "add",
            {"a": 2, "b": 3},
            "5",
            False,
        )
        final = [e for e in events if e["event"] == "status"][-1]["data"]["data"]
        assert final["status"] == "done" and final["output"] == "The sum is 5."

        run = client.get(f"/v1/runs/{run_id}").json()
        assert run["status"] == "done" and run["output"] == "The sum is 5." and run["steps"] == 2
        assert run["metadata"] == {"ticket": 7, "tenant": "acme"}
        assert [m["role"] for m in run["messages"]][:2] == ["system", "user"]
        assert run_id in [r["run_id"] for r in client.get("/v1/runs", params={"agent": "calc"}).json()["runs"]]


def test_a_planned_run_shows_its_plan_with_each_step_s_status(service: Service, key: str) -> None:
    with service.client(key) as client:
        run_id = client.post("/v1/runs", json={"agent": "planner", "task": "add 20 and 22"}).json()["run_id"]
        read_events(client, run_id, until="end")
        run = client.get(f"/v1/runs/{run_id}").json()
        assert (run["status"], run["output"]) == ("done", "The sum is 42."), run
        plan = run["plan"]
        assert plan["goal"] == "the sum" and plan["version"] == 1
        assert [(s["action"], s["status"], s["note"]) for s in plan["steps"]] == [
            ("add the two numbers", "done", "the sum is 42")
        ]
        unplanned = client.post("/v1/runs", json={"agent": "calc", "task": "add 1 and 2"}).json()["run_id"]
        read_events(client, unplanned, until="end")
        assert client.get(f"/v1/runs/{unplanned}").json()["plan"] is None


def test_events_resume_after_last_event_id_without_repeating(service: Service, key: str) -> None:
    with service.client(key) as client:
        run_id = client.post("/v1/runs", json={"agent": "calc", "task": "add 4 and 5"}).json()["run_id"]
        everything = read_events(client, run_id, until="end")
        ids = [int(e["id"]) for e in everything if "id" in e]
        assert ids == sorted(ids) and len(ids) == len(set(ids)) >= 2
        again = read_events(client, run_id, until="end", last_id=str(ids[0]))
        assert [int(e["id"]) for e in again if "id" in e] == ids[1:]
        bad = client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "seven"})
        assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["message"]


def test_a_refund_waits_for_approval_and_continues_once_approved(service: Service, key: str) -> None:
    with service.client(key) as client:
        run_id = client.post("/v1/runs", json={"agent": "support", "task": "refund A-1004 249.00"}).json()["run_id"]
        events = read_events(client, run_id, until="waiting")
        requested = next(e for e in events if e["event"] == "approval_requested")["data"]["data"]
        assert requested["tool"] == "refund_order" and requested["arguments"] == {
            "order_id": "A-1004",
            "amount": "249.00",
        }
        assert "refunds need a person's approval" in requested["reason"]

        pending = client.get("/v1/approvals").json()
        [approval] = [a for a in pending if a["run_id"] == run_id]
        assert approval["agent"] == "support" and approval["status"] == "pending"

        wrong = client.post(f"/v1/approvals/{approval['id']}/approve", json={"arguments_hash": "0" * 64})
        assert wrong.status_code == 409 and "other arguments" in wrong.json()["message"]
        ok = client.post(
            f"/v1/approvals/{approval['id']}/approve",
            json={"note": "gold customer", "arguments_hash": approval["arguments_hash"]},
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["status"] == "approved" and ok.json()["decided_by"].startswith("key:")
        again = client.post(f"/v1/approvals/{approval['id']}/approve", json={})
        assert again.status_code == 409 and "already approved" in again.json()["message"]

        events = read_events(client, run_id, until="end")
        decided = next(e for e in events if e["event"] == "approval_decided")["data"]["data"]
        assert decided["decision"] == "approved" and decided["note"] == "gold customer"
        run = client.get(f"/v1/runs/{run_id}").json()
        assert run["status"] == "done" and run["output"] == "Refunded 249.00 on A-1004."


def test_reject_and_edit_over_http(service: Service, key: str) -> None:
    with service.client(key) as client:
        rejected = client.post("/v1/runs", json={"agent": "support", "task": "refund A-1 10.00"}).json()["run_id"]
        edited = client.post("/v1/runs", json={"agent": "support", "task": "refund A-2 900.00"}).json()["run_id"]
        for run_id in (rejected, edited):
            read_events(client, run_id, until="waiting")
        by_run = {a["run_id"]: a for a in client.get("/v1/approvals").json()}

        assert client.post(f"/v1/approvals/{by_run[rejected]['id']}/reject", json={}).status_code == 422
        answer = client.post(f"/v1/approvals/{by_run[rejected]['id']}/reject", json={"reason": "not eligible"})
        assert answer.status_code == 200 and answer.json()["status"] == "rejected"

        bad = client.post(f"/v1/approvals/{by_run[edited]['id']}/edit", json={"arguments": {"order_id": "A-2"}})
        assert bad.status_code == 422 and "amount" in bad.json()["message"]
        answer = client.post(
            f"/v1/approvals/{by_run[edited]['id']}/edit",
            json={"arguments": {"order_id": "A-2", "amount": "90.00"}, "note": "partial"},
        )
        assert answer.status_code == 200 and answer.json()["edited_arguments"] == {"order_id": "A-2", "amount": "90.00"}

        read_events(client, rejected, until="end")
        read_events(client, edited, until="end")
        assert "rejected by key:" in client.get(f"/v1/runs/{rejected}").json()["output"]
        assert client.get(f"/v1/runs/{edited}").json()["output"] == "Refunded 90.00 on A-2."


def test_cancel_and_resume(service: Service, key: str) -> None:
    with service.client(key) as client:
        run_id = client.post("/v1/runs", json={"agent": "support", "task": "refund A-9 500.00"}).json()["run_id"]
        read_events(client, run_id, until="waiting")
        resumed = client.post(f"/v1/runs/{run_id}/resume")  # still waiting for its approval: queued again, waits again
        assert resumed.status_code == 200, resumed.text
        read_events(client, run_id, until="waiting")
        cancelled = client.post(f"/v1/runs/{run_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert client.post(f"/v1/runs/{run_id}/cancel").status_code == 409
        assert client.post(f"/v1/runs/{run_id}/resume").status_code == 409
        assert [
            a["status"] for a in client.get("/v1/approvals", params={"run_id": run_id, "status": "all"}).json()
        ] == ["rejected"]


def test_feedback_is_recorded_and_validated(service: Service, key: str) -> None:
    with service.client(key) as client:
        run_id = client.post("/v1/runs", json={"agent": "calc", "task": "add 1 and 1"}).json()["run_id"]
        read_events(client, run_id, until="end")
        answer = client.post(f"/v1/runs/{run_id}/feedback", json={"thumbs": "up", "score": 4, "comment": "quick"})
        assert answer.status_code == 201 and answer.json()["satisfaction"] == 0.75
        assert client.post(f"/v1/runs/{run_id}/feedback", json={"score": 9}).json()["fields"][0]["field"] == "score"
        assert client.post(f"/v1/runs/{run_id}/feedback", json={}).status_code == 422
        assert [f["comment"] for f in client.get(f"/v1/runs/{run_id}").json()["feedback"]] == ["quick"]
        stats = client.get("/v1/stats", params={"hours": 1, "buckets": 6}).json()
        assert len(stats["points"]) == 6 and stats["to"] > stats["from"]
        assert sum(p["runs"] for p in stats["points"]) >= 1
        assert stats["points"][-1]["satisfaction"] == 0.75
        assert client.get("/v1/alerts").json() == {"alerts": []}  # detection is off in this service
        assert client.get("/v1/stats", params={"hours": 0}).json()["fields"][0]["field"] == "hours"


def test_bad_input_gets_the_right_4xx_naming_the_problem(service: Service, key: str) -> None:
    with service.client(key) as client:
        malformed = client.post("/v1/runs", content=b"{not json", headers={"content-type": "application/json"})
        assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["message"]
        missing = client.post("/v1/runs", json={"agent": "calc"})
        assert missing.status_code == 422 and missing.json()["fields"] == [
            {"field": "task", "message": "Field required"}
        ]
        unknown_agent = client.post("/v1/runs", json={"agent": "nope", "task": "x"})
        assert unknown_agent.status_code == 422 and "calc, planner, support" in unknown_agent.json()["message"]
        blank = client.post("/v1/runs", json={"agent": "calc", "task": "   "})
        assert blank.status_code == 422 and blank.json()["fields"][0]["field"] == "task"
        extra = client.post("/v1/runs", json={"agent": "calc", "task": "x", "priority": 1})
        assert extra.status_code == 422 and extra.json()["fields"][0]["field"] == "priority"
        huge = client.post("/v1/runs", json={"agent": "calc", "task": "x" * (2 << 20)})
        assert huge.status_code == 413 and "larger than" in huge.json()["message"]
        assert client.get("/v1/runs/run_missing").status_code == 404
        assert "does not exist" in client.get("/v1/runs/run_missing/events").json()["message"]
        assert client.post("/v1/approvals/apv_missing/approve", json={}).status_code == 404
        assert client.get("/v1/runs", params={"limit": 0}).json()["fields"][0]["field"] == "limit"
        assert client.delete("/v1/runs").status_code == 405
    with service.client(None) as anonymous:
        assert anonymous.get("/v1/runs").status_code == 401
        assert anonymous.get("/metrics").status_code == 401
    with service.client("keel_forged_key") as forged:
        assert "unknown or revoked" in forged.get("/v1/runs").json()["message"]


def test_keys_from_the_command_line_are_stored_hashed_and_can_be_revoked(service: Service) -> None:
    import json

    import sqlalchemy as sa

    made = service.keel("keys", "create", "--tenant", "cli-tenant", "--name", "ops", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    secret, key_id = created["key"], created["key_id"]
    with service.client(secret) as client:
        assert client.get("/v1/me").json() == {
            "key_id": key_id,
            "tenant": "cli-tenant",
            "name": "ops",
            "agents": ["calc", "planner", "support"],
        }
    listed = service.keel("keys", "list", "--tenant", "cli-tenant")
    assert key_id in listed.stdout and "active" in listed.stdout and secret not in listed.stdout
    engine = sa.create_engine(service.db)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT key_hash FROM keel_api_keys WHERE key_id = :k"), {"k": key_id}).scalar()
    engine.dispose()
    assert stored and secret not in stored and len(stored) == 64  # only the SHA-256 is kept

    unused = service.keel("keys", "create", "--tenant", "cli-tenant", "--json")
    unused_secret, unused_id = json.loads(unused.stdout)["key"], json.loads(unused.stdout)["key_id"]
    assert service.keel("keys", "revoke", unused_id).returncode == 0
    with service.client(unused_secret) as client:
        assert client.get("/v1/runs").status_code == 401
    again = service.keel("keys", "revoke", unused_id)
    assert again.returncode == 2 and "already revoked" in again.stderr
    bad = service.keel("keys", "create", "--tenant", "no spaces allowed")
    assert bad.returncode == 2 and "is not valid" in bad.stderr


def test_health_and_openapi(service: Service) -> None:
    with service.client(None) as client:
        assert client.get("/healthz").text == "ok"
        assert client.get("/readyz").status_code == 200
        spec = client.get("/openapi.json").json()
        assert {"/v1/runs", "/v1/runs/{run_id}/events", "/v1/approvals", "/metrics"} <= set(spec["paths"])
