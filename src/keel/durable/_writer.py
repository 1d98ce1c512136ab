"""Group commit for the journal: steps finished by many concurrent runs share one transaction.

Each write returns only once its transaction has committed, so a step's result is durable before the
run moves on; but a thousand runs finishing steps at the same moment cost one commit, not a thousand.
Two writers share that contract:

* `LoopWriter` (SQLite): the writes made during one turn of an event loop are committed together at
  the start of its next turn, on the loop's own thread, through one raw `sqlite3` connection. A local
  SQLite commit in WAL mode with ``synchronous=NORMAL`` takes tens of microseconds, less than handing
  the write to another thread and back.
* `ThreadWriter` (PostgreSQL): one thread owns one connection and drains a queue in batches, so the
  event loop never waits on the network; each batch wakes each waiting event loop once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import sqlalchemy as sa

from ..storage._runs import COMPLETE_STEP, INSERT_STEP

__all__ = ["JournalWriter", "LoopWriter", "ThreadWriter", "make_writer"]

log = logging.getLogger("keel.durable")

MAX_BATCH = 2000
Item = tuple[Any, dict[str, Any], "asyncio.Future[None]"]


class JournalWriter(Protocol):
    """Executes keel's journal and run-index writes; each returns once committed."""

    async def execute(self, statement: Any, params: dict[str, Any]) -> None:
        """Execute one write and return once its transaction has committed.

        Raises:
            sqlalchemy.exc.IntegrityError: a unique key is taken (for example, another segment
                journaled this step first).
        """

    async def step(self, kind: str, run_id: str, seq: int, name: str, output: dict[str, Any] | None) -> None:
        """Journal a step: ``done`` (completed), ``started`` (about to run) or ``complete`` (a started one ended)."""

    def close(self) -> None:
        """Finish pending writes and release the connection."""


async def _journal(
    writer: JournalWriter, kind: str, run_id: str, seq: int, name: str, output: dict[str, Any] | None
) -> None:
    text = None if output is None else json.dumps(output)
    if kind == "complete":
        await writer.execute(COMPLETE_STEP, {"p_run": run_id, "p_seq": seq, "p_output": text})
    else:
        status = "started" if kind == "started" else "done"
        row = {"run_id": run_id, "seq": seq, "name": name, "status": status, "output": text}
        await writer.execute(INSERT_STEP, row)


def _settle(results: Sequence[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, error in results:
        if future.done():  # the waiting step was cancelled
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def make_writer(engine: sa.Engine) -> JournalWriter:
    """The writer suited to the engine's database."""
    if engine.dialect.name == "sqlite":
        return LoopWriter(engine)
    return ThreadWriter(engine)


class LoopWriter:
    """SQLite: commits each event-loop turn's writes in one transaction on the loop's thread."""

    def __init__(self, engine: sa.Engine) -> None:
        self._dialect = engine.dialect
        self._conn = sqlite3.connect(
            engine.url.database or ":memory:", timeout=30, check_same_thread=False, isolation_level=None
        )
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
            self._conn.execute(f"PRAGMA {pragma}")
        self._lock = threading.Lock()  # segments may run on several event loops (DBOS's and the caller's)
        self._pending: dict[asyncio.AbstractEventLoop, list[Item]] = {}
        self._sql: dict[tuple[Any, tuple[str, ...]], tuple[str, list[str], dict[str, Any]]] = {}

    async def execute(self, statement: Any, params: dict[str, Any]) -> None:  # noqa: D102 - see JournalWriter
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        batch = self._pending.get(loop)
        if batch is None:
            batch = self._pending[loop] = []
            loop.call_soon(self._flush, loop)
        batch.append((statement, params, future))
        await future

    async def step(  # noqa: D102 - see JournalWriter
        self, kind: str, run_id: str, seq: int, name: str, output: dict[str, Any] | None
    ) -> None:
        await _journal(self, kind, run_id, seq, name, output)

    def close(self) -> None:  # noqa: D102 - see JournalWriter
        with self._lock:
            self._conn.close()

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop)
        with self._lock:
            try:
                self._commit(batch)
                results: list[tuple[asyncio.Future[None], BaseException | None]] = [(f, None) for _, _, f in batch]
            except Exception:  # the batch failed as a whole: commit row by row so only the bad row fails
                results = [(item[2], self._single(item)) for item in batch]
        _settle(results)

    def _single(self, item: Item) -> BaseException | None:
        try:
            self._commit([item])
        except Exception as exc:
            return exc
        return None

    def _commit(self, batch: list[Item]) -> None:
        cursor = self._conn.cursor()
        cursor.execute("BEGIN")
        try:
            # consecutive writes of the same statement go as one executemany, in order
            for statement, group in itertools.groupby(batch, key=lambda item: item[0]):
                rows = [params for _, params, _ in group]
                sql, names, fixed = self._compiled(statement, rows[0])
                cursor.executemany(sql, [tuple(p[n] if n in p else fixed[n] for n in names) for p in rows])
            cursor.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            cursor.execute("ROLLBACK")
            raise sa.exc.IntegrityError(str(exc), None, exc) from exc
        except BaseException:
            if self._conn.in_transaction:
                cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.close()

    def _compiled(self, statement: Any, params: dict[str, Any]) -> tuple[str, list[str], dict[str, Any]]:
        """The statement as SQLite SQL, its parameters' order, and the values it fixes itself."""
        key = (statement, tuple(params))
        found = self._sql.get(key)
        if found is None:
            compiled = statement.compile(dialect=self._dialect, column_keys=list(params))
            found = self._sql[key] = (str(compiled), list(compiled.positiontup or ()), dict(compiled.params))
        return found


class ThreadWriter:
    """PostgreSQL: executes writes in batches on one thread, each batch one transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[tuple[Item, asyncio.AbstractEventLoop] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="keel-journal", daemon=True)
        self._thread.start()

    async def execute(self, statement: Any, params: dict[str, Any]) -> None:  # noqa: D102 - see JournalWriter
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(((statement, params, future), loop))
        await future

    async def step(  # noqa: D102 - see JournalWriter
        self, kind: str, run_id: str, seq: int, name: str, output: dict[str, Any] | None
    ) -> None:
        await _journal(self, kind, run_id, seq, name, output)

    def close(self) -> None:  # noqa: D102 - see JournalWriter
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
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
                if entry is None:
                    self._queue.put(None)
                    break
                batch.append(entry)
            items = [item for item, _ in batch]
            errors: list[BaseException | None]
            try:
                if conn is None or conn.closed:
                    conn = self._engine.connect()
                self._commit(conn, items)
                errors = [None] * len(items)
            except Exception:  # the batch failed as a whole: commit row by row so only the bad row fails
                if conn is not None:
                    conn.close()
                    conn = None
                errors = [self._single(item) for item in items]
            self._wake(batch, errors)
        if conn is not None:
            conn.close()

    def _single(self, item: Item) -> BaseException | None:
        try:
            with self._engine.connect() as single:
                self._commit(single, [item])
        except Exception as exc:
            return exc
        return None

    @staticmethod
    def _wake(batch: list[tuple[Item, asyncio.AbstractEventLoop]], errors: list[BaseException | None]) -> None:
        """Hand each event loop its settled writes in one wake-up."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], BaseException | None]]] = {}
        for ((_, _, future), loop), error in zip(batch, errors, strict=True):
            by_loop.setdefault(loop, []).append((future, error))
        for loop, results in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, results)
            except RuntimeError:  # the loop has closed: nobody waits for these writes any more
                log.debug("journal writes settled after their event loop closed")

    @staticmethod
    def _commit(conn: sa.Connection, batch: list[Item]) -> None:
        with conn.begin():
            # consecutive writes of the same statement go as one executemany, in order
            for statement, group in itertools.groupby(batch, key=lambda item: item[0]):
                conn.execute(statement, [params for _, params, _ in group])
