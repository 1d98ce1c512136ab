"""`keel serve --trace console`: runs taken from the queue by the service's worker are traced."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import read_events, start_service, stop_service


def test_serve_with_tracing_exports_spans_of_queued_runs(tmp_path: Path) -> None:
    service = start_service(tmp_path, "--anomaly-window", "0", "--trace", "console")
    try:
        key = service.key("traced")
        with service.client(key) as client:
            run_id = client.post("/v1/runs", json={"agent": "calc", "task": "add 3 and 4"}).json()["run_id"]
            read_events(client, run_id, until="end")
    finally:
        stop_service(service)  # the exporter flushes its batch on shutdown
    text = service.log.read_text()
    decoder, spans, at = json.JSONDecoder(), [], text.find("{")
    while at != -1:
        try:
            span, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            at = text.find("{", at + 1)
            continue
        if isinstance(span, dict) and "attributes" in span:
            spans.append(span)
        at = text.find("{", end)
    mine = [s for s in spans if s["attributes"].get("keel.run_id") == run_id]
    names = sorted(s["name"] for s in mine)
    assert names == ["chat scripted", "chat scripted", "execute_tool add", "invoke_agent calc"], names
    assert all(s["attributes"]["keel.tenant"] == "traced" for s in mine)
