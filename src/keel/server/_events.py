"""A run's event stream, read back from the durable journal.

Every step a run takes is journaled under its sequence number (``keel_steps``), by whichever worker ran
it; requests for people are rows of ``keel_approvals``. The event stream is derived from these at read
time, so it is persisted, identical from every process, free of the duplicates a replayed segment
would emit, and costs the loop nothing. An event's id is its journal sequence number, which makes
``Last-Event-ID`` resumption exact.
"""

from __future__ import annotations

from typing import Any

from ..durable._store import Approval, RunRecord, Store

__all__ = ["journal_events", "status_event"]

MOVING = ("queued", "running")
FINAL = ("done", "failed", "cancelled")


def journal_events(store: Store, run_id: str, after: int = 0) -> list[dict[str, Any]]:
    """The run's events with journal sequence numbers above `after`, in order.

    Kinds: ``model_response`` (a model call: text, tool calls, usage, duration), ``tool_result`` (a tool
    call with its arguments and result), ``tool_started`` (a guarded call begun and not yet finished),
    ``approval_requested`` / ``approval_decided`` (and ``attention_requested`` / ``attention_decided`` for
    interrupted calls and pauses).
    """
    journal = store.load_steps(run_id)
    if not journal or max(journal) <= after:
        return []
    requests = {a.id: a for a in store.list_approvals(status=None, run_id=run_id)}
    events: list[dict[str, Any]] = []
    pending_calls: list[dict[str, Any]] = []
    step = 0
    for seq in sorted(journal):
        name, status, output = journal[seq]
        output = output or {}
        event = _event(name, status, output, requests, pending_calls)
        if name == "model":
            step += 1
        if event is not None and seq > after:
            kind, data = event
            events.append({"id": seq, "kind": kind, "run_id": run_id, "step": step, "data": data})
    return events


def _event(
    name: str, status: str, output: dict[str, Any], requests: dict[str, Approval], calls: list[dict[str, Any]]
) -> tuple[str, dict[str, Any]] | None:
    if name == "model":
        response = output.get("response") or {}
        message = response.get("message") or {}
        calls[:] = list(message.get("tool_calls") or [])
        return "model_response", {
            "model": response.get("model"),
            "content": message.get("content"),
            "tool_calls": calls[:],
            "usage": response.get("usage") or {},
            "finish_reason": response.get("finish_reason"),
            "duration_ms": output.get("duration_ms"),
        }
    if name.startswith("tool:"):
        tool = name.removeprefix("tool:")
        call = next((c for c in calls if c.get("name") == tool), None)
        if call is not None:
            calls.remove(call)
        arguments = (call or {}).get("arguments")
        if status != "done":
            return "tool_started", {"name": tool, "arguments": arguments}
        return "tool_result", {
            "name": tool,
            "arguments": arguments,
            "call_id": (call or {}).get("id"),
            "content": output.get("content"),
            "is_error": bool(output.get("is_error")),
            "duration_ms": output.get("duration_ms"),
        }
    if name.startswith("request:"):
        kind = name.removeprefix("request:")
        request = requests.get(str(output.get("id")))
        prefix = "approval" if kind == "approval" else "attention"
        data: dict[str, Any] = {"id": output.get("id"), "kind": kind}
        if request is not None:
            data.update(
                tool=request.tool,
                arguments=request.arguments,
                arguments_hash=request.arguments_hash,
                reason=request.reason,
                status=request.status,
                requested_at=request.requested_at,
                expires_at=request.expires_at,
            )
        return f"{prefix}_requested", data
    if name.startswith("decision:"):
        kind = name.removeprefix("decision:")
        prefix = "approval" if kind == "approval" else "attention"
        request = requests.get(str(output.get("id")))
        return f"{prefix}_decided", {
            "id": output.get("id"),
            "kind": kind,
            "decision": output.get("decision"),
            "by": output.get("by"),
            "note": output.get("note"),
            "edited": bool(output.get("edited")),
            "arguments": output.get("arguments"),
            "decided_at": None if request is None else request.decided_at,
        }
    return None  # completions of interrupted calls: their result arrives as the call's own row


def status_event(record: RunRecord) -> dict[str, Any]:
    """A snapshot of the run's status (sent first on every connection and whenever it changes)."""
    return {
        "kind": "status",
        "run_id": record.run_id,
        "data": {
            "status": record.status,
            "steps": record.steps,
            "usage": record.usage,
            "error": record.error,
            "output": (record.result or {}).get("output") if record.status == "done" else None,
        },
    }
