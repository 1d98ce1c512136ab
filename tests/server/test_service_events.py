"""The SSE stream and the in-process stream speak one vocabulary, in one order, against a real `keel serve`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from keel import RunEvent, Runtime
from keel.durable import DurableEngine
from keel.events import JOURNAL_KINDS

from .conftest import AGENTS, TARGETS, Service, read_events, start_service, stop_service
from .service_agents import support


@pytest.fixture(scope="module")
def key(service: Service) -> str:
    return service.key("acme")


def test_the_sse_stream_and_the_in_process_stream_carry_the_same_kinds_in_the_same_order(
    service: Service, key: str
) -> None:
    events: list[RunEvent] = []
    runtime = Runtime(service.db)
    try:
        paused = asyncio.run(
            runtime.run(support, "refund S-9 40.00", on_event=events.append, metadata={"tenant": "acme"})
        )
        assert paused.status == "waiting"
        [approval] = runtime.approvals(run_id=paused.run_id)
        runtime.approve(approval.id, by="ops", dispatch=False)
        done = asyncio.run(runtime.resume(support, paused.run_id, on_event=events.append))
        assert done.status == "done"
    finally:
        DurableEngine.close()
    here = [e for e in events if not e.replayed and e.kind in JOURNAL_KINDS]
    assert [e.kind for e in here] == [
        "model_response",
        "approval_requested",
        "approval_decided",
        "tool_result",
        "model_response",
    ]
    with service.client(key) as client:
        streamed = [e for e in read_events(client, paused.run_id, until="end") if "id" in e]
    assert [e["event"] for e in streamed] == [e.kind for e in here]
    assert [e["data"]["step"] for e in streamed] == [e.step for e in here]
    by_kind = {e["event"]: e["data"]["data"] for e in streamed}
    decided = next(e for e in here if e.kind == "approval_decided")
    assert by_kind["approval_decided"]["by"] == decided.data["by"] == "ops"


@pytest.fixture(scope="module")
def shipping(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_service(tmp_path_factory.mktemp("ship"), targets=[*TARGETS, f"{AGENTS}:shipping"])
    yield svc
    stop_service(svc)


def test_a_client_resuming_after_a_guarded_call_started_gets_its_result(shipping: Service, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with shipping.client(shipping.key("acme")) as client:
        run_id = client.post("/v1/runs", json={"agent": "shipping", "task": f"ship A-7 {gate}"}).json()["run_id"]
        before = read_events(client, run_id, until="tool_started")
        assert [e["event"] for e in before if e["event"] != "status"] == ["model_response", "tool_started"]
        started = before[-1]
        assert "id" not in started and started["data"]["data"]["name"] == "ship_order"  # no point to resume from
        last_id = [e["id"] for e in before if "id" in e][-1]
        gate.touch()  # the call may now finish
        after = read_events(client, run_id, until="end", last_id=last_id)
        kinds = [e["event"] for e in after if "id" in e]
        assert kinds == ["tool_result", "model_response"]
        assert next(e for e in after if e["event"] == "tool_result")["data"]["data"]["content"] == "shipped A-7"
