"""Tenant isolation: one tenant's key never sees another's runs, approvals, events, feedback or metrics."""

from __future__ import annotations

from .conftest import Service, read_events


def test_one_tenant_never_sees_another_tenants_runs_approvals_or_metrics(service: Service) -> None:
    acme, globex = service.key("acme-iso"), service.key("globex-iso")
    with service.client(acme) as a, service.client(globex) as g:
        done = a.post("/v1/runs", json={"agent": "calc", "task": "add 20 and 22"}).json()["run_id"]
        waiting = a.post("/v1/runs", json={"agent": "support", "task": "refund Z-1 300.00"}).json()["run_id"]
        read_events(a, done, until="end")
        read_events(a, waiting, until="waiting")
        [approval] = [x for x in a.get("/v1/approvals").json() if x["run_id"] == waiting]

        # globex sees none of it, and cannot act on it: every answer is 404, as for ids that do not exist
        listed = g.get("/v1/runs").json()["runs"]
        assert {done, waiting}.isdisjoint(r["run_id"] for r in listed)
        assert g.get("/v1/approvals").json() == []
        assert g.get("/v1/approvals", params={"run_id": waiting, "status": "all"}).json() == []
        for method, path in [
            ("GET", f"/v1/runs/{done}"),
            ("GET", f"/v1/runs/{done}/events"),
            ("POST", f"/v1/runs/{waiting}/cancel"),
            ("POST", f"/v1/runs/{done}/resume"),
            ("GET", f"/v1/approvals/{approval['id']}"),
        ]:
            answer = g.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
            assert "does not exist" in answer.json()["message"]
        assert g.post(f"/v1/runs/{done}/feedback", json={"thumbs": "down"}).status_code == 404
        assert g.post(f"/v1/approvals/{approval['id']}/approve", json={}).status_code == 404
        assert g.post(f"/v1/approvals/{approval['id']}/reject", json={"reason": "mine now"}).status_code == 404
        edit = {"arguments": {"order_id": "Z-1", "amount": "1.00"}}
        assert g.post(f"/v1/approvals/{approval['id']}/edit", json=edit).status_code == 404

        # globex's own work stays its own too
        theirs = g.post("/v1/runs", json={"agent": "calc", "task": "add 1 and 2"}).json()["run_id"]
        read_events(g, theirs, until="end")
        assert theirs not in [r["run_id"] for r in a.get("/v1/runs").json()["runs"]]
        assert a.get(f"/v1/runs/{theirs}").status_code == 404

        # the approval is untouched by globex's attempts, and still acme's to decide
        assert a.get(f"/v1/approvals/{approval['id']}").json()["status"] == "pending"

        # metrics are per tenant: acme's show its waiting approval and its runs, globex's do not
        a_metrics, g_metrics = a.get("/metrics").text, g.get("/metrics").text
        assert 'keel_approvals_pending{agent="support",tool="refund_order"} 1.0' in a_metrics
        assert "keel_approvals_pending{" not in g_metrics
        assert 'keel_runs{agent="support",status="waiting"} 1.0' in a_metrics
        assert 'keel_runs{agent="calc",status="done"} 1.0' in a_metrics
        assert 'keel_runs{agent="calc",status="done"} 1.0' in g_metrics
        assert 'agent="support"' not in g_metrics
        assert a.get("/v1/me").json()["tenant"] == "acme-iso"


def test_a_run_cannot_be_started_under_another_tenant_through_metadata(service: Service) -> None:
    key = service.key("initech-iso")
    with service.client(key) as client:
        answer = client.post("/v1/runs", json={"agent": "calc", "task": "add 1 and 1", "metadata": {"tenant": "acme"}})
        run = client.get(f"/v1/runs/{answer.json()['run_id']}").json()
        assert run["metadata"]["tenant"] == "initech-iso"
