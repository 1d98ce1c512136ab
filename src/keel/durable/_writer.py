"""Group commit for the journal: steps finished by many concurrent runs share one transaction.

Each write returns only once its transaction has committed, so a step's result is durable before
the run moves on; but a thousand runs finishing steps at the same moment cost one commit, not a
thousand. One thread owns one connection and drains the queue in batches.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any

import sqlalchemy as sa

from ._store import COMPLETE_STEP, INSERT_STEP

__all__ = ["JournalWriter"]

log = logging.getLogger("keel.durable")

MAX_BATCH = 2000
Item = tuple[Any, dict[str, Any], "Future[None]"]


class JournalWriter:
    """Executes keel's writes in batches on one thread, each batch one transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="keel-journal", daemon=True)
        self._thread.start()

    async def execute(self, statement: Any, params: dict[str, Any]) -> None:
        """Execute one write and return once its transaction has committed.

        Raises:
            sqlalchemy.exc.IntegrityError: a unique key is taken (for example, another segment
                journaled this step first).
        """
        future: Future[None] = Future()
        self._queue.put((statement, params, future))
        await asyncio.wrap_future(future)

    async def step(self, kind: str, run_id: str, seq: int, name: str, output: dict[str, Any] | None) -> None:
        """Journal a step: ``done`` (completed), ``started`` (about to run) or ``complete`` (a started one ended)."""
        text = None if output is None else json.dumps(output)
        if kind == "complete":
            await self.execute(COMPLETE_STEP, {"p_run": run_id, "p_seq": seq, "p_output": text})
        else:
            status = "started" if kind == "started" else "done"
            await self.execute(
                INSERT_STEP, {"run_id": run_id, "seq": seq, "name": name, "status": status, "output": text}
            )

    def close(self) -> None:
        """Finish pending writes and stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        conn: sa.Connection | None = None
        while True:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            try:
                if conn is None or conn.closed:
                    conn = self._engine.connect()
                self._commit(conn, batch)
            except Exception:  # the batch failed as a whole: commit row by row so only the bad row fails
                if conn is not None:
                    conn.close()
                    conn = None
                for item in batch:
                    try:
                        with self._engine.connect() as single:
                            self._commit(single, [item])
                    except Exception as exc:
                        if not item[2].done():
                            item[2].set_exception(exc)
        if conn is not None:
            conn.close()

    @staticmethod
    def _commit(conn: sa.Connection, batch: list[Item]) -> None:
        with conn.begin():
            # consecutive writes of the same statement go as one executemany, in order
            for statement, group in itertools.groupby(batch, key=lambda item: item[0]):
                conn.execute(statement, [params for _, params, _ in group])
        for _, _, future in batch:
            if not future.done():
                future.set_result(None)
