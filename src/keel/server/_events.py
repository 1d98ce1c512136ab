"""A run's event stream for the server: the `keel.events` kinds read back from the journal.

`keel.storage` reads the journal (`read_events`); this module shapes the events as the stream sends
them and watches the runs that streams follow. An event's id is its journal sequence number, which
makes ``Last-Event-ID`` resumption exact.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread

from ..events import RunEvent
from ..storage import RunRecord, Store, event_dict, journal_marks, read_events
from ..storage import status_event as run_status

__all__ = ["RunWatch", "journal_events", "sse", "status_event"]

log = logging.getLogger("keel.server")

MOVING = ("queued", "running")
FINAL = ("done", "failed", "cancelled")
KEEPALIVE_SECONDS = 15.0


def journal_events(store: Store, run_id: str, after: int = 0) -> list[dict[str, Any]]:
    """The run's events with journal sequence numbers above `after`, in order, as the stream sends them.

    Each is ``{"id", "kind", "run_id", "step", "data"}``; the kinds and their payloads are those of
    `keel.events` (read back by `keel.storage.read_events`).
    """
    return [event_dict(e) for e in read_events(store, run_id, after)]


def status_event(record: RunRecord) -> dict[str, Any]:
    """A snapshot of the run's status (sent first on every connection and whenever it changes)."""
    return event_dict(run_status(record))


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
        return journal_marks(self.store, ids)


def _look(store: Any, run_id: str, after: int) -> tuple[RunRecord | None, list[RunEvent]]:
    """The run's entry and its events after `after`, read together on one worker thread."""
    return store.get_run(run_id), read_events(store, run_id, after)


def _frame(event: RunEvent, with_id: bool) -> bytes:
    head = f"id: {event.seq}\n" if with_id else ""
    return f"{head}event: {event.kind}\ndata: {json.dumps(event_dict(event), default=str)}\n\n".encode()


async def sse(watch: RunWatch, store: Any, run_id: str, after: int) -> AsyncIterator[bytes]:
    """Send the run's new events each time the watch says it changed, until it finishes.

    A guarded call's start and its result are two events. The start (``tool_started``) goes out once
    and carries no id, so it is no point to resume from: a client that reconnects after the last id it
    got receives the call's result, journaled later under the call's own sequence number. The stream
    reads on from the first call still in flight, and sends no id twice.
    """
    changed = watch.subscribe(run_id)
    last_status: str | None = None
    started: set[int] = set()  # guarded calls whose start was sent
    sent: set[int] = set()  # ids sent above `after`
    try:
        while True:
            changed.clear()  # cleared before looking: a change during the look wakes the next wait
            record, events = await anyio.to_thread.run_sync(_look, store, run_id, after)
            if record is None:  # pruned while watched
                yield b"event: end\ndata: {}\n\n"
                return
            for event in events:
                if event.kind == "tool_started":
                    if event.seq not in started:
                        started.add(event.seq)
                        yield _frame(event, with_id=False)
                elif event.seq not in sent:
                    sent.add(event.seq)
                    yield _frame(event, with_id=True)
            if events:
                in_flight = [e.seq for e in events if e.kind == "tool_started"]
                after = min(in_flight) - 1 if in_flight else events[-1].seq
                sent = {seq for seq in sent if seq > after}
            if record.status != last_status:
                last_status = record.status
                yield f"event: status\ndata: {json.dumps(event_dict(run_status(record)), default=str)}\n\n".encode()
            if record.status in FINAL:
                yield b"event: end\ndata: {}\n\n"
                return
            try:
                await asyncio.wait_for(changed.wait(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield b": keep-alive\n\n"
    finally:
        watch.unsubscribe(run_id, changed)
