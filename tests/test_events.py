"""The event vocabulary: each happening of a run announced once, whatever the number of segments."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from keel import Agent, RunEvent, Runtime, ToolCall, tool
from keel.durable import DurableEngine
from keel.events import PAYLOADS
from keel.models import ScriptedModel
from keel.policies.approvals import RequireApproval


@tool(side_effects=True)
def refund(order_id: str) -> str:
    """Refund an order.

    Args:
        order_id: the order.
    """
    return f"refunded {order_id}"


def three_refunds() -> Agent:
    model = ScriptedModel(
        [
            ToolCall("refund", {"order_id": "A-1"}),
            ToolCall("refund", {"order_id": "A-2"}),
            ToolCall("refund", {"order_id": "A-3"}),
            "Refunded A-1, A-2 and A-3.",
        ],
        name="refunds",
    )
    return Agent(name="refunds", model=model, tools=[refund], policies=[RequireApproval(["refund"])])


def happening(event: RunEvent) -> str:
    return json.dumps([event.kind, event.step, event.data], sort_keys=True, default=str)


@pytest.fixture
def runtime(tmp_path: Path) -> Any:
    yield Runtime(f"sqlite:///{tmp_path / 'keel.db'}")
    DurableEngine.close()


def test_a_run_resumed_three_times_announces_each_happening_once(runtime: Runtime) -> None:
    agent = three_refunds()
    events: list[RunEvent] = []
    result = asyncio.run(runtime.run(agent, "refund A-1, A-2, A-3", on_event=events.append))
    for _ in range(3):
        assert result.status == "waiting"
        [approval] = runtime.approvals(run_id=result.run_id)
        runtime.approve(approval.id, by="ops", dispatch=False)
        result = asyncio.run(runtime.resume(agent, result.run_id, on_event=events.append))
    assert result.status == "done" and result.output == "Refunded A-1, A-2 and A-3."

    live = [happening(e) for e in events if not e.replayed]
    assert len(live) == len(set(live)), [h for h in live if live.count(h) > 1]
    kinds = [e.kind for e in events if not e.replayed]
    assert kinds.count("model_response") == 4  # four model requests, each announced once
    assert kinds.count("tool_result") == 3
    assert kinds.count("approval_requested") == kinds.count("approval_decided") == 3
    assert kinds.count("run_started") == 1  # the later segments continue the run: replayed
    assert kinds.count("run_finished") == 4  # each segment ends on its own: three waits, then done
    # what the segments passed again is there, marked: every replayed event repeats a live one
    assert {happening(e) for e in events if e.replayed} <= set(live)
    assert any(e.replayed for e in events)


def test_every_event_carries_the_keys_of_its_payload_type(runtime: Runtime) -> None:
    agent = three_refunds()
    events: list[RunEvent] = []
    result = asyncio.run(runtime.run(agent, "refund A-1, A-2, A-3", on_event=events.append))
    [approval] = runtime.approvals(run_id=result.run_id)
    runtime.approve(approval.id, by="ops", dispatch=False)
    asyncio.run(runtime.resume(agent, result.run_id, on_event=events.append))
    for event in events:
        assert event.run_id == result.run_id
        declared = set(get_type_hints(PAYLOADS[event.kind]))
        assert set(event.data) <= declared, (event.kind, set(event.data) - declared)
    seqs = [e.seq for e in events if not e.replayed]
    assert seqs == sorted(seqs) and seqs[-1] > 0
