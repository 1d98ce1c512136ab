"""Tracing: OpenTelemetry spans with GenAI attributes, checked with the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from keel import Runtime
from keel.observe.tracing import RunTracer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from server.service_agents import calc, support  # noqa: E402


def tracer() -> tuple[RunTracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return RunTracer(provider), exporter


def by_name(spans: Any) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


def test_a_run_is_an_agent_span_with_chat_and_tool_spans_beneath_it() -> None:
    observer, exporter = tracer()
    result = calc.run_sync(
        "divide 6 by 0", runtime=Runtime("memory", observers=[observer]), metadata={"tenant": "acme"}
    )
    assert result.status == "done"
    spans = by_name(exporter.get_finished_spans())
    [run] = spans["invoke_agent calc"]
    chats = spans["chat scripted"]
    [tool] = spans["execute_tool divide"]
    assert len(chats) == 2
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.attributes["gen_ai.agent.name"] == "calc"
    assert run.attributes["keel.run_id"] == result.run_id and run.attributes["keel.tenant"] == "acme"
    assert run.attributes["keel.status"] == "done"
    assert run.attributes["gen_ai.usage.input_tokens"] == result.usage.input_tokens
    for child in [*chats, tool]:
        assert child.parent is not None and child.parent.span_id == run.context.span_id
        assert child.context.trace_id == run.context.trace_id
        assert child.attributes["keel.run_id"] == result.run_id and child.attributes["keel.tenant"] == "acme"
        assert run.start_time <= child.start_time <= child.end_time <= run.end_time
    assert chats[0].attributes["gen_ai.operation.name"] == "chat"
    assert chats[0].attributes["gen_ai.request.model"] == "scripted"
    assert chats[0].attributes["gen_ai.usage.output_tokens"] > 0
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "divide" and tool.attributes["gen_ai.tool.call.id"]
    assert tool.status.status_code is StatusCode.ERROR  # the tool reported an error to the model


def test_a_failed_run_has_an_error_status_and_policy_decisions_are_span_events(tmp_path: Path) -> None:
    observer, exporter = tracer()
    runtime = Runtime(f"sqlite:///{tmp_path / 'keel.db'}", observers=[observer])
    failed = calc.run_sync("please fail", runtime=runtime)
    waiting = support.run_sync("refund C-1 300.00", runtime=runtime)
    [approval] = runtime.approvals(run_id=waiting.run_id)
    runtime.approve(approval.id, by="ops", dispatch=False)
    assert asyncio.run(runtime.resume(support, waiting.run_id)).status == "done"

    spans = by_name(exporter.get_finished_spans())
    [calc_run] = spans["invoke_agent calc"]
    assert calc_run.status.status_code is StatusCode.ERROR and calc_run.attributes["keel.run_id"] == failed.run_id
    first, second = spans["invoke_agent support"]  # one per segment: before and after the approval
    assert first.attributes["keel.status"] == "waiting" and second.attributes["keel.status"] == "done"
    decision = [e for e in first.events if e.name == "keel.policy_decision"]
    assert decision and decision[0].attributes["action"] == "pause"
    assert [s.attributes["gen_ai.tool.name"] for s in spans["execute_tool refund_order"]] == ["refund_order"]
    replayed = [s for s in spans["chat scripted"] if s.parent.span_id == second.context.span_id]
    assert len(replayed) == 2  # the journaled first call, replayed, and the one after the approval


def test_tracing_is_not_imported_by_keel() -> None:
    import subprocess

    heavy = "('opentelemetry', 'prometheus_client', 'fastapi', 'uvicorn')"
    code = f"import keel, sys; print(any(m.startswith({heavy}) for m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
