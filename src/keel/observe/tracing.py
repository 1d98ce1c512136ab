"""OpenTelemetry spans for runs, model calls and tool calls, with the GenAI semantic conventions.

`RunTracer` is an observer of the `RunEvent` stream: give it to a `Runtime` (``observers=[...]``) or,
for runs that workers take from the queue, to `keel.durable.add_observer` (``keel serve --trace``
and ``keel worker`` do this). It never reaches into the loop. Each run is an ``invoke_agent`` span;
each model call a ``chat`` span and each tool call an ``execute_tool`` span beneath it, timed from the
events, with ``gen_ai.*`` attributes plus ``keel.run_id`` and ``keel.tenant``.

Needs the ``otel`` extra (``pip install 'keel[otel]'``); nothing of OpenTelemetry is imported until
this module is, so tracing that is not turned on costs nothing.

A run resumed in a later segment (after an approval, or on another worker) replays its journal, and
the loop passes the events of its earlier steps again marked ``replayed`` (`keel.events`): each
segment is its own ``invoke_agent`` span, in which the replayed calls appear again with their recorded
duration, marked ``keel.replayed``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ..events import RunEvent

__all__ = ["RunTracer", "configure_tracing"]

log = logging.getLogger("keel.tracing")
NS = 1_000_000_000


def configure_tracing(
    exporter: Literal["console", "otlp"] | SpanExporter, *, service_name: str = "keel", endpoint: str | None = None
) -> TracerProvider:
    """A tracer provider exporting spans in batches to the console, to OTLP over HTTP, or to `exporter`.

    Args:
        exporter: ``console``, ``otlp`` (endpoint from `endpoint` or ``OTEL_EXPORTER_OTLP_ENDPOINT``,
            default ``http://localhost:4318``), or an exporter of your own.
        service_name: the ``service.name`` resource attribute.
        endpoint: the OTLP traces endpoint, e.g. ``http://collector:4318/v1/traces``.
    """
    chosen: SpanExporter
    if exporter == "console":
        chosen = ConsoleSpanExporter()
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        chosen = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    else:
        chosen = exporter
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(chosen))
    return provider


def _provider_of(model: str) -> str:
    prefix, sep, _ = model.partition(":")
    return prefix if sep else model


class RunTracer:
    """Turns each run's `RunEvent`s into spans.

    Args:
        provider: the tracer provider; default the global one (``opentelemetry.trace``).
    """

    def __init__(self, provider: trace.TracerProvider | None = None) -> None:
        self.tracer = (provider or trace.get_tracer_provider()).get_tracer("keel")
        self._runs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, event: RunEvent) -> None:
        """Observe one event."""
        handler = getattr(self, "_on_" + event.kind, None)
        if handler is not None:
            with self._lock:
                handler(event)

    def _attributes(self, run: dict[str, Any]) -> dict[str, Any]:
        attributes = {"keel.run_id": run["run_id"], gen_ai.GEN_AI_AGENT_NAME: run["agent"]}
        if run.get("tenant"):
            attributes["keel.tenant"] = run["tenant"]
        return attributes

    def _on_run_started(self, event: RunEvent) -> None:
        old = self._runs.pop(event.run_id, None)
        if old is not None:  # a segment that ended without a run_finished
            old["span"].end()
        run: dict[str, Any] = {
            "run_id": event.run_id,
            "agent": str(event.data.get("agent", "")),
            "model": str(event.data.get("model", "")),
            "tenant": event.data.get("tenant"),
        }
        span = self.tracer.start_span(
            f"invoke_agent {run['agent']}",
            kind=SpanKind.INTERNAL,
            start_time=int(event.at * NS),
            attributes={
                **self._attributes(run),
                gen_ai.GEN_AI_OPERATION_NAME: gen_ai.GenAiOperationNameValues.INVOKE_AGENT.value,
                gen_ai.GEN_AI_REQUEST_MODEL: run["model"],
                gen_ai.GEN_AI_PROVIDER_NAME: _provider_of(run["model"]),
            },
        )
        run["span"] = span
        run["context"] = trace.set_span_in_context(span)
        self._runs[event.run_id] = run

    def _child(self, run: dict[str, Any], name: str, start: float, attributes: dict[str, Any]) -> Span:
        return self.tracer.start_span(
            name,
            context=run["context"],
            kind=SpanKind.CLIENT,
            start_time=int(start * NS),
            attributes={**self._attributes(run), **attributes},
        )

    def _on_model_request(self, event: RunEvent) -> None:
        run = self._runs.get(event.run_id)
        if run is not None:
            run["model_started"] = event.at

    def _on_model_response(self, event: RunEvent) -> None:
        run = self._runs.get(event.run_id)
        if run is None:
            return
        usage = event.data.get("usage") or {}
        recorded = float(event.data.get("duration_ms") or 0) / 1000
        start = run.pop("model_started", None)
        replayed = event.replayed
        if start is None or replayed:
            start = event.at - recorded
        span = self._child(
            run,
            f"chat {run['model']}",
            start,
            {
                gen_ai.GEN_AI_OPERATION_NAME: gen_ai.GenAiOperationNameValues.CHAT.value,
                gen_ai.GEN_AI_REQUEST_MODEL: run["model"],
                gen_ai.GEN_AI_PROVIDER_NAME: _provider_of(run["model"]),
                gen_ai.GEN_AI_USAGE_INPUT_TOKENS: int(usage.get("input_tokens") or 0),
                gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS: int(usage.get("output_tokens") or 0),
                "keel.step": event.step,
                "keel.cost_usd": float(usage.get("cost_usd") or 0.0),
                "keel.tool_calls": len(event.data.get("tool_calls") or []),
                "keel.replayed": replayed,
            },
        )
        span.end(end_time=int(event.at * NS))

    def _on_tool_call(self, event: RunEvent) -> None:
        run = self._runs.get(event.run_id)
        if run is not None:
            run.setdefault("tools", {})[event.data.get("call_id")] = event.at

    def _on_tool_result(self, event: RunEvent) -> None:
        run = self._runs.get(event.run_id)
        if run is None:
            return
        name = str(event.data.get("name", ""))
        start = run.get("tools", {}).pop(event.data.get("call_id"), None)
        if start is None:
            start = event.at - float(event.data.get("duration_ms") or 0) / 1000
        span = self._child(
            run,
            f"execute_tool {name}",
            start,
            {
                gen_ai.GEN_AI_OPERATION_NAME: gen_ai.GenAiOperationNameValues.EXECUTE_TOOL.value,
                gen_ai.GEN_AI_TOOL_NAME: name,
                gen_ai.GEN_AI_TOOL_CALL_ID: str(event.data.get("call_id") or ""),
                gen_ai.GEN_AI_TOOL_TYPE: "function",
                "keel.step": event.step,
            },
        )
        if event.data.get("is_error"):
            span.set_status(Status(StatusCode.ERROR, str(event.data.get("content", ""))[:200]))
        span.end(end_time=int(event.at * NS))

    def _on_policy_decision(self, event: RunEvent) -> None:
        run = self._runs.get(event.run_id)
        if run is not None:
            attributes = {k: str(v) for k, v in event.data.items() if v is not None}
            run["span"].add_event("keel.policy_decision", attributes, timestamp=int(event.at * NS))

    def _on_run_finished(self, event: RunEvent) -> None:
        run = self._runs.pop(event.run_id, None)
        if run is None:
            return
        span: Span = run["span"]
        status = str(event.data.get("status", ""))
        usage = event.data.get("usage") or {}
        span.set_attribute("keel.status", status)
        span.set_attribute(gen_ai.GEN_AI_USAGE_INPUT_TOKENS, int(usage.get("input_tokens") or 0))
        span.set_attribute(gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS, int(usage.get("output_tokens") or 0))
        span.set_attribute("keel.cost_usd", float(usage.get("cost_usd") or 0.0))
        if status == "failed":
            span.set_status(Status(StatusCode.ERROR, str(event.data.get("error") or "")[:200]))
        span.end(end_time=int(event.at * NS))
