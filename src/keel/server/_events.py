"""A run's event stream, read back from the durable journal.

Every step a run takes is journaled under its sequence number (``keel_steps``), by whichever worker ran
it; requests for people are rows of ``keel_approvals``. The event stream is derived from these at read
time, so it is persisted, identical from every process, free of the duplicates a replayed segment
would emit, and costs the loop nothing. An event's id is its journal sequence number, which makes
``Last-Event-ID`` resumption exact.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import anyio.to_thread
import sqlalchemy as sa

from ..durable._store import Approval, RunRecord, Store, runs, steps

__all__ = ["RunWatch", "journal_events", "status_event"]

log = logging.getLogger("keel.server")

MOVING = ("queued", "running")
FINAL = ("done", "failed", "cancelled")


def journal_events(store: Store, run_id: str, after: int = 0) -> list[dict[str, Any]]:
    """The run's events with journal sequence numbers above `after`, in order.

    Kinds: ``model_response`` (a model call: text, tool calls, usage, duration), ``tool_result`` (a tool
    call with its arguments and result; a fallback's says why in ``fallback``), ``tool_started`` (a
    guarded call begun and not yet finished),
    ``approval_requested`` / ``approval_decided`` (and ``attention_requested`` / ``attention_decided`` for
    interrupted calls and pauses).
    """
    journal = store.load_steps(run_id)
    if not journal or max(journal) <= after:
        return []
    asks = any(name.startswith(("request:", "decision:")) for name, _, _ in journal.values())
    requests = {a.id: a for a in store.list_approvals(status=None, run_id=run_id)} if asks else {}
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


class RunWatch:
    """One poller for every event stream of a process: wakes the streams whose run changed.

    Each tick reads, for all watched runs at once, their status and the size of their journal (two
    queries, whatever the number of clients); a stream whose run moved then reads its new events.

    Args:
        store: keel's tables.
        interval: seconds between ticks. Default 0.1.
    """

    def __init__(self, store: Store, interval: float = 0.1) -> None:
        self.store = store
        self.interval = interval
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._seen: dict[str, tuple[Any, ...]] = {}
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, run_id: str) -> asyncio.Event:
        """An event set whenever the run changes (its status, or a step journaled)."""
        changed = asyncio.Event()
        self._watchers.setdefault(run_id, set()).add(changed)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return changed

    def unsubscribe(self, run_id: str, changed: asyncio.Event) -> None:
        """Stop waking `changed`."""
        watchers = self._watchers.get(run_id)
        if watchers is not None:
            watchers.discard(changed)
            if not watchers:
                del self._watchers[run_id]
                self._seen.pop(run_id, None)

    async def _run(self) -> None:
        while self._watchers:
            ids = list(self._watchers)
            try:
                marks = await anyio.to_thread.run_sync(self._marks, ids)
            except Exception:  # the database may be briefly unavailable: wake everyone to look for themselves
                log.exception("watching runs failed")
                marks = {run_id: ("?", time.monotonic()) for run_id in ids}
            for run_id, mark in marks.items():
                if self._seen.get(run_id) != mark:
                    self._seen[run_id] = mark
                    for changed in self._watchers.get(run_id, ()):
                        changed.set()
            await asyncio.sleep(self.interval)

    def _marks(self, ids: list[str]) -> dict[str, tuple[Any, ...]]:
        marks: dict[str, tuple[Any, ...]] = {run_id: ("missing",) for run_id in ids}
        done = sa.func.sum(sa.case((steps.c.status == "done", 1), else_=0))
        with self.store.engine.connect() as conn:
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
