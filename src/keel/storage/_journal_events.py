"""A run's events read back from its journal: the `keel.events` vocabulary for every other process.

Every step a run takes is journaled under its sequence number (``keel_steps``), by whichever worker ran
it; requests for people are rows of ``keel_approvals``. The events are derived from these at read time,
so they are persisted, identical from every process, free of the repeats a replayed segment passes, and
cost the loop nothing. An event's ``seq`` is its journal sequence number, which makes ``Last-Event-ID``
resumption exact. This is the one module that reads journal rows and step names back (with
`keel._seam.parse_step_name`); the server, metrics and the console read what it returns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from .._seam import MODEL, decision_step, parse_step_name, tool_step_name
from ..events import EventKind, RunEvent
from ._records import Approval, RunRecord
from ._store import Store
from ._tables import runs, steps

__all__ = [
    "StepCall",
    "event_dict",
    "journal_marks",
    "read_events",
    "status_event",
    "step_calls",
    "unanswered_request",
]


def read_events(store: Store, run_id: str, after: int = 0) -> list[RunEvent]:
    """The run's events with journal sequence numbers above `after`, in order.

    Kinds: ``model_response`` (a model call: text, tool calls, usage, duration), ``tool_result`` (a tool
    call with its arguments and result; a fallback's says why in ``fallback``), ``tool_started`` (a
    guarded call begun and not yet finished), ``approval_requested`` / ``approval_decided`` (and
    ``attention_requested`` / ``attention_decided`` for interrupted calls and pauses).
    """
    journal = store.load_steps(run_id)
    if not journal or max(journal) <= after:
        return []
    asks = any(parse_step_name(name).family in ("request", "decision") for name, _, _ in journal.values())
    requests = {a.id: a for a in store.list_approvals(status=None, run_id=run_id)} if asks else {}
    events: list[RunEvent] = []
    pending_calls: list[dict[str, Any]] = []
    step = 0
    for seq in sorted(journal):
        name, status, output = journal[seq]
        event = _event(name, status, output or {}, requests, pending_calls)
        if name == MODEL:
            step += 1
        if event is not None and seq > after:
            kind, data = event
            events.append(RunEvent(kind, run_id, step, data, at=0.0, seq=seq))
    return events


def _event(
    name: str, status: str, output: dict[str, Any], requests: dict[str, Approval], calls: list[dict[str, Any]]
) -> tuple[EventKind, dict[str, Any]] | None:
    step = parse_step_name(name)
    if step.family == "model":
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
    if step.family == "tool":
        tool = step.subject
        call = next((c for c in calls if c.get("name") == tool), None)
        call = call or next((c for c in calls if "because" in c), None)  # a fallback answers the call that failed
        if call is not None:
            calls.remove(call)
        arguments = (call or {}).get("arguments")
        if status != "done":
            return "tool_started", {"name": tool, "arguments": arguments}
        if output.get("fall_back") and call is not None:  # the next tool row is its fallback
            calls.insert(0, {**call, "because": f"{tool} failed: {output['fall_back']}"})
        result: dict[str, Any] = {
            "name": tool,
            "arguments": arguments,
            "call_id": (call or {}).get("id"),
            "content": output.get("content"),
            "is_error": bool(output.get("is_error")),
            "duration_ms": output.get("duration_ms"),
        }
        if call is not None and "because" in call:
            result["fallback"] = {"tool": tool, "because": call["because"]}
        return "tool_result", result
    approval = step.subject == "approval"
    if step.family == "request":
        request = requests.get(str(output.get("id")))
        data: dict[str, Any] = {"id": output.get("id"), "kind": step.subject}
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
        return ("approval_requested" if approval else "attention_requested"), data
    if step.family == "decision":
        request = requests.get(str(output.get("id")))
        return ("approval_decided" if approval else "attention_decided"), {
            "id": output.get("id"),
            "kind": step.subject,
            "decision": output.get("decision"),
            "by": output.get("by"),
            "note": output.get("note"),
            "edited": bool(output.get("edited")),
            "arguments": output.get("arguments"),
            "decided_at": None if request is None else request.decided_at,
        }
    return None  # completions of interrupted calls (their result arrives as the call's own row), policy effects


def status_event(record: RunRecord) -> RunEvent:
    """A snapshot of the run's status from its index entry."""
    return RunEvent(
        "status",
        record.run_id,
        record.steps,
        {
            "status": record.status,
            "steps": record.steps,
            "usage": record.usage,
            "error": record.error,
            "output": (record.result or {}).get("output") if record.status == "done" else None,
        },
        at=0.0,
    )


def event_dict(event: RunEvent) -> dict[str, Any]:
    """An event as other processes receive it (the SSE stream's ``data``): journal events carry their ``id``."""
    if event.kind == "status":
        return {"kind": "status", "run_id": event.run_id, "data": event.data}
    return {"id": event.seq, "kind": event.kind, "run_id": event.run_id, "step": event.step, "data": event.data}


def journal_marks(store: Store, ids: list[str]) -> dict[str, tuple[Any, ...]]:
    """For each run: its status and segment, and how many steps its journal holds (and how many are done).

    A mark that changes says the run moved; two queries, whatever the number of runs.
    """
    marks: dict[str, tuple[Any, ...]] = {run_id: ("missing",) for run_id in ids}
    done = sa.func.sum(sa.case((steps.c.status == "done", 1), else_=0))
    with store.engine.connect() as conn:
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            for run_id, status, segment in conn.execute(
                sa.select(runs.c.run_id, runs.c.status, runs.c.segment).where(runs.c.run_id.in_(chunk))
            ):
                marks[run_id] = (status, segment)
            for run_id, count, finished in conn.execute(
                sa.select(steps.c.run_id, sa.func.count(), done)
                .where(steps.c.run_id.in_(chunk))
                .group_by(steps.c.run_id)
            ):
                marks[run_id] = (*marks[run_id], count, finished)
    return marks


@dataclass(frozen=True, slots=True)
class StepCall:
    """A finished model or tool call of a run, as its journal records it.

    Attributes:
        kind: ``model`` or ``tool``.
        name: the tool's name; ``model`` for a model call.
        outcome: ``ok``, or ``error`` for a tool that reported one.
        seconds: how long the call took.
    """

    kind: Literal["model", "tool"]
    name: str
    outcome: Literal["ok", "error"]
    seconds: float


def step_calls(store: Store, run_ids: list[str]) -> dict[str, list[StepCall]]:
    """The finished model and tool calls of each run, from its journal."""
    calls: dict[str, list[StepCall]] = {r: [] for r in run_ids}
    for chunk in (run_ids[i : i + 500] for i in range(0, len(run_ids), 500)):
        query = sa.select(steps.c.run_id, steps.c.name, steps.c.output).where(
            steps.c.run_id.in_(chunk),
            steps.c.status == "done",
            sa.or_(steps.c.name == MODEL, steps.c.name.like(tool_step_name("%"))),
        )
        with store.engine.connect() as conn:
            for run_id, name, output in conn.execute(query):
                data = json.loads(output or "{}")
                seconds = float(data.get("duration_ms") or 0.0) / 1000
                step = parse_step_name(name)
                if step.family == "model":
                    calls[run_id].append(StepCall("model", MODEL, "ok", seconds))
                else:
                    calls[run_id].append(
                        StepCall("tool", step.subject, "error" if data.get("is_error") else "ok", seconds)
                    )
    return calls


def unanswered_request(names: Mapping[int, str], seq: int) -> bool:
    """Whether step `seq` of a journal (names by sequence number) asks a person and the next holds no decision."""
    step = parse_step_name(names[seq])
    return step.family == "request" and names.get(seq + 1) != decision_step(step.subject)
