"""A served run's redacted secrets stay redacted: in the event stream, the run and the database."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from .conftest import AGENTS, Service, read_events, start_service, stop_service
from .service_agents import CARD, GITHUB_TOKEN

EMAIL = "jane.doe@example.com"


@pytest.fixture(scope="module")
def vault_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_service(tmp_path_factory.mktemp("vault"), "--anomaly-window", "0", f"{AGENTS}:vault")
    yield svc
    stop_service(svc)


def test_what_the_filter_redacted_is_not_in_the_events_the_run_or_the_journal(vault_service: Service) -> None:
    with vault_service.client(vault_service.key("acme")) as client:
        answer = client.post("/v1/runs", json={"agent": "vault", "task": f"Mail {EMAIL} the config"})
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        events = read_events(client, run_id, until="end")
        run = client.get(f"/v1/runs/{run_id}").json()
    assert run["status"] == "done" and run["output"] == "Charged card [REDACTED CARD]."
    tool = next(e for e in events if e["event"] == "tool_result")["data"]["data"]
    assert tool["content"] == "GITHUB_TOKEN=[REDACTED SECRET] region=eu"
    answered = [e["data"]["data"]["content"] for e in events if e["event"] == "model_response"]
    assert answered[-1] == "Charged card [REDACTED CARD]."

    engine = sa.create_engine(vault_service.db)
    try:
        with engine.connect() as conn:
            journal = conn.execute(sa.text("SELECT * FROM keel_steps WHERE run_id = :r"), {"r": run_id}).all()
            task = conn.execute(sa.text("SELECT task FROM keel_runs WHERE run_id = :r"), {"r": run_id}).scalar_one()
    finally:
        engine.dispose()
    assert task == "Mail [REDACTED EMAIL] the config"
    everything = json.dumps(events) + json.dumps(run) + json.dumps([list(row) for row in journal], default=str)
    for raw in (GITHUB_TOKEN, CARD, EMAIL):
        assert raw not in everything
