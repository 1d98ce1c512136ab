"""The binding to DBOS Transact, the only module that imports `dbos`.

A run is indexed in ``keel_runs`` and journaled step by step in ``keel_steps``. It executes as one or
more *segments*: each a DBOS workflow that replays the journal and carries the run forward until it
ends or must wait for a person. Waiting holds no process: the segment ends, and a decision queues
the next segment, which any worker on the database picks up, now or after a restart. DBOS owns the
segments' lifecycle (exactly-once dequeue, recovery of a worker's own pending segments); keel's
heartbeat sweeper hands the runs of a worker that stopped heartbeating to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import sqlalchemy as sa
from dbos import DBOS, DBOSConfig, DBOSPortableJSONSerializer, SetWorkflowID

from .._loop import RunResult, run_loop
from ..exceptions import ConfigError, UsageError
from ..messages import RunEvent
from ._steps import JournalSteps
from ._store import RunRecord, Store

if TYPE_CHECKING:
    from ..agent import Agent

__all__ = ["QUEUE", "DurableEngine", "make_engine", "register_agent"]

log = logging.getLogger("keel.durable")
T = TypeVar("T")

QUEUE = "keel.runs"
FINAL = ("done", "failed", "cancelled")
HEARTBEAT_SECONDS = 5.0
DEAD_AFTER_SECONDS = 30.0

_AGENTS: dict[str, Agent] = {}
_LIVE: dict[str, Callable[[RunEvent], None]] = {}
_RESULTS: dict[str, RunResult] = {}


def register_agent(agent: Agent) -> None:
    """Make `agent` runnable by segments executed in this process, by its name."""
    _AGENTS[agent.name] = agent


def _noop(event: RunEvent) -> None:
    return None


def off_loop(fn: Callable[[], T]) -> T:
    """Call `fn` here, or on a helper thread when an event loop runs here (DBOS's sync calls refuse to)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    with ThreadPoolExecutor(1, thread_name_prefix="keel-dbos") as pool:
        return pool.submit(fn).result()


def segment_id(run_id: str, segment: int) -> str:
    """The DBOS workflow id of a run's segment (the first has the run's own id)."""
    return run_id if segment == 0 else f"{run_id}~{segment}"


@DBOS.workflow(name="keel.segment")
async def _segment(run_id: str, segment: int) -> dict[str, Any]:
    engine = DurableEngine.current()
    store = engine.store
    record = store.get_run(run_id)
    if record is None:
        return {"run_id": run_id, "status": "missing"}
    if record.segment != segment or record.status in FINAL:
        return {"run_id": run_id, "status": "stale"}  # a newer segment carries the run now
    agent = _AGENTS.get(record.agent)
    if agent is None:
        log.error("run %s needs agent %r, which this process has not loaded; handing it back", run_id, record.agent)
        await asyncio.to_thread(engine.dispatch, run_id, expect=("queued", "running"))
        return {"run_id": run_id, "status": "handed_back"}
    store.set_status(run_id, "running", worker=engine.worker_id)
    steps = JournalSteps(run_id, store)
    try:
        result = await run_loop(agent, record.task, steps, _LIVE.get(run_id, _noop), record.metadata)
    except sa.exc.IntegrityError:
        # Another segment of this run journaled the same step first: it owns the run; this one stops.
        return {"run_id": run_id, "status": "stale"}
    data = result.to_dict()
    store.finish_segment(run_id, data)
    _RESULTS[run_id] = result
    return {k: v for k, v in data.items() if k != "messages"}


def sqlite_engine(url: str) -> sa.Engine:
    """A SQLAlchemy engine for SQLite in WAL mode with synchronous=NORMAL, creating the file's folder."""
    path = url.removeprefix("sqlite:///")
    if path and path != ":memory:":
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine


def make_engine(url: str) -> sa.Engine:
    """Build the database engine for `url`.

    Raises:
        ConfigError: the URL is not a SQLite or PostgreSQL URL.
    """
    if url.startswith("sqlite:///"):
        return sqlite_engine(url)
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        pg = "postgresql+psycopg://" + url.split("://", 1)[1]
        return sa.create_engine(pg, pool_size=20, max_overflow=20, pool_pre_ping=True)
    raise ConfigError(
        f"database URL {url!r} is not supported; use sqlite:///path/to/keel.db, postgresql://user@host/db, "
        "or 'memory' for runs that keep nothing"
    )


class DurableEngine:
    """DBOS, launched once per process on one database, plus keel's store and worker heartbeat.

    Args:
        url: the database URL.
        worker_id: a stable id for a worker process; None makes a one-off id for this process.
        application_version: pinned on every segment; only processes of the same version recover it.
        worker: listen to the run queue (a worker) rather than run only this process's own runs.
        concurrency: segments a worker runs at once.
    """

    _current: ClassVar[DurableEngine | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        url: str,
        *,
        worker_id: str | None,
        application_version: str,
        worker: bool = False,
        concurrency: int = 100,
    ) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.store = Store(self.engine)
        try:
            self.store.migrate()
        except sa.exc.SQLAlchemyError as exc:
            self.engine.dispose()
            raise ConfigError(f"cannot open database {url!r}: {type(exc).__name__}: {exc}; check the URL") from exc
        self.worker_id = worker_id or f"proc-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.is_worker = worker
        config: DBOSConfig = {
            "name": "keel",
            "system_database_url": self.engine.url.render_as_string(hide_password=False),
            "system_database_engine": self.engine,
            "application_version": application_version,
            "executor_id": self.worker_id,
            "serializer": DBOSPortableJSONSerializer(),
            "log_level": "WARNING",
        }
        DBOS(config=config)
        DBOS.listen_queues([QUEUE] if worker else [])
        DBOS.launch()
        self.queue = DBOS.register_queue(QUEUE, worker_concurrency=concurrency, polling_interval_sec=0.2)
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat_loop, name="keel-heartbeat", daemon=True)
        self._info = {"host": socket.gethostname(), "pid": os.getpid(), "worker": worker}
        self.store.heartbeat(self.worker_id, self._info)
        self._beat.start()

    @classmethod
    def for_url(cls, url: str, **kwargs: Any) -> DurableEngine:
        """The process's engine on `url`, launching (or relaunching on another database) as needed."""
        with cls._lock:
            current = cls._current
            if current is not None and current.url == url and not kwargs:
                return current
            if current is not None:
                current.shutdown()
            from ..config import settings

            s = settings()
            kwargs.setdefault("worker_id", s.worker_id)
            kwargs.setdefault("application_version", s.application_version)
            cls._current = off_loop(lambda: cls(url, **kwargs))
            return cls._current

    @classmethod
    def current(cls) -> DurableEngine:
        """The launched engine.

        Raises:
            UsageError: no engine has been launched in this process.
        """
        if cls._current is None:
            raise UsageError("no durable engine is running in this process")
        return cls._current

    @classmethod
    def close(cls) -> None:
        """Shut down this process's engine, if one runs."""
        with cls._lock:
            if cls._current is not None:
                cls._current.shutdown()

    def shutdown(self) -> None:
        """Stop the heartbeat and DBOS, and release the database."""
        self._stop.set()
        self._beat.join(timeout=5)
        off_loop(lambda: DBOS.destroy(destroy_registry=False))
        self.engine.dispose()
        if DurableEngine._current is self:
            DurableEngine._current = None

    # -- heartbeat and sweeping ----------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self.store.heartbeat(self.worker_id, self._info)
                if self.is_worker:
                    self.sweep()
            except Exception:  # the database may be briefly unavailable; try again next beat
                log.exception("heartbeat failed")

    def sweep(self, now: float | None = None, dead_after: float = DEAD_AFTER_SECONDS) -> list[str]:
        """Hand the runs of workers that stopped heartbeating, and of expired approvals, to the queue.

        Returns:
            the ids of the runs dispatched.
        """
        now = time.time() if now is None else now
        dispatched: list[str] = []
        for worker_id, beat in self.store.workers_seen().items():
            if worker_id == self.worker_id or (now - beat < dead_after and self.alive(worker_id)):
                continue
            if not self.store.forget_worker(worker_id):
                continue  # another sweeper took it
            for record in self.store.list_runs(status="running", limit=10_000):
                if record.worker == worker_id:
                    self._cancel_segment(record)
                    dispatched.append(self.dispatch(record.run_id, expect=("running",)))
            for record in self.store.list_runs(status="queued", limit=10_000):
                if record.worker == worker_id:
                    dispatched.append(self.dispatch(record.run_id, expect=("queued",)))
        for approval in self.store.expire_due(now):
            waiting = self.store.get_run(approval.run_id)
            if waiting is not None and waiting.status in ("waiting", "needs_attention"):
                dispatched.append(self.dispatch(approval.run_id))
        return dispatched

    def alive(self, worker_id: str) -> bool:
        """Whether a worker is alive: its process when on this host, else a recent heartbeat."""
        info = self.store.worker_info(worker_id)
        if info is None:
            return False
        if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
            try:
                os.kill(info["pid"], 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        beat = self.store.workers_seen().get(worker_id)
        return beat is not None and time.time() - beat < DEAD_AFTER_SECONDS

    def _cancel_segment(self, record: RunRecord) -> None:
        try:
            off_loop(lambda: DBOS.cancel_workflow(segment_id(record.run_id, record.segment)))
        except Exception:  # already finished or never started: nothing to cancel
            log.debug("could not cancel segment %s of %s", record.segment, record.run_id)

    # -- starting and continuing runs ----------------------------------------------------------
    def dispatch(self, run_id: str, *, expect: tuple[str, ...] = ("waiting", "needs_attention")) -> str:
        """Claim the run's next segment and put it on the queue for any worker."""
        segment = self.store.next_segment(run_id, expect=expect)
        self._enqueue(run_id, segment)
        return run_id

    def _enqueue(self, run_id: str, segment: int) -> None:
        def enqueue() -> None:
            with SetWorkflowID(segment_id(run_id, segment)):
                self.queue.enqueue(_segment, run_id, segment)

        off_loop(enqueue)

    def start(self, agent: Agent, task: str, run_id: str, metadata: dict[str, Any]) -> str:
        """Index a run and queue its first segment for any worker; return at once."""
        register_agent(agent)
        if self.store.create_run(run_id, agent.name, task, metadata):
            self._enqueue(run_id, 0)
        return run_id

    async def run(
        self, agent: Agent, task: str, run_id: str, emit: Callable[[RunEvent], None], metadata: dict[str, Any]
    ) -> RunResult:
        """Run the first segment in this process and return how it ended.

        A run id that already exists returns that run's recorded result instead of running again.
        """
        register_agent(agent)
        if not self.store.create_run(run_id, agent.name, task, metadata):
            return self.result(run_id, agent)
        return await self._execute(agent, run_id, 0, emit)

    async def resume(self, agent: Agent, run_id: str, emit: Callable[[RunEvent], None]) -> RunResult:
        """Continue a run in this process: after a decision, or after the process running it died.

        Raises:
            UsageError: the run does not exist, has finished, belongs to another agent, or is running on a
                live worker.
        """
        record = self.store.get_run(run_id)
        if record is None:
            raise UsageError(f"run {run_id!r} does not exist in {self.url}; list runs with `keel runs list`")
        if record.status in FINAL:
            raise UsageError(f"run {run_id!r} already finished ({record.status}); nothing to resume")
        if record.agent != agent.name:
            raise UsageError(f"run {run_id!r} belongs to agent {record.agent!r}, not {agent.name!r}; load that agent")
        if record.status in ("running", "queued") and record.worker and record.worker != self.worker_id:
            if self.alive(record.worker):
                raise UsageError(f"run {run_id!r} is {record.status} on live worker {record.worker}; let it finish")
            self._cancel_segment(record)
        register_agent(agent)
        segment = self.store.next_segment(run_id, expect=("waiting", "needs_attention", "running", "queued"))
        return await self._execute(agent, run_id, segment, emit)

    async def _execute(self, agent: Agent, run_id: str, segment: int, emit: Callable[[RunEvent], None]) -> RunResult:
        _LIVE[run_id] = emit
        try:
            with SetWorkflowID(segment_id(run_id, segment)):
                handle = await DBOS.start_workflow_async(_segment, run_id, segment)
            summary = await handle.get_result()
        finally:
            _LIVE.pop(run_id, None)
        result = _RESULTS.pop(run_id, None)
        if result is not None:
            return result
        if summary.get("status") in ("stale", "missing", "handed_back"):
            return self.result(run_id, agent)
        return RunResult.from_dict(summary, agent.output_type)

    async def wait(self, run_id: str, agent: Agent | None = None) -> RunResult:
        """Wait until the run stops moving (done, failed, cancelled, or waiting for a person).

        Raises:
            UsageError: the run does not exist.
        """
        while True:
            record = self.store.get_run(run_id)
            if record is None:
                raise UsageError(f"run {run_id!r} does not exist in {self.url}")
            if record.status not in ("queued", "running"):
                return self.result(run_id, agent)
            handle: Any = await DBOS.retrieve_workflow_async(
                segment_id(run_id, record.segment), existing_workflow=False
            )
            await handle.get_result()

    def cancel(self, run_id: str) -> RunRecord:
        """Cancel a run that has not finished; its state so far is kept.

        Raises:
            UsageError: the run does not exist or already finished.
        """
        record = self.store.get_run(run_id)
        if record is None:
            raise UsageError(f"run {run_id!r} does not exist; list runs with `keel runs list`")
        if record.status in FINAL:
            raise UsageError(f"run {run_id!r} already finished ({record.status}); nothing to cancel")
        self.store.set_status(run_id, "cancelled")
        self._cancel_segment(record)
        for approval in self.store.list_approvals(status="pending", run_id=run_id):
            with contextlib.suppress(UsageError):  # decided concurrently
                self.store.decide(approval.id, "rejected", {"decision": "rejected"}, by="keel", note="run cancelled")
        updated = self.store.get_run(run_id)
        assert updated is not None
        return updated

    def fork(self, run_id: str, from_step: int, *, new_run_id: str) -> RunRecord:
        """Start a new run whose history is the first `from_step` model steps of another; queue it.

        Raises:
            UsageError: the run does not exist, or `from_step` is outside its history.
        """
        record = self.store.get_run(run_id)
        if record is None:
            raise UsageError(f"run {run_id!r} does not exist; list runs with `keel runs list`")
        journal = self.store.load_steps(run_id)
        model_seqs = [seq for seq, (name, _, _) in sorted(journal.items()) if name == "model"]
        if not 0 <= from_step <= len(model_seqs):
            raise UsageError(
                f"run {run_id!r} has {len(model_seqs)} steps; --from-step must be between 0 and {len(model_seqs)}"
            )
        upto = model_seqs[from_step] - 1 if from_step < len(model_seqs) else max(journal, default=0)
        self.store.create_run(new_run_id, record.agent, record.task, record.metadata, parent=run_id)
        self.store.copy_steps(run_id, new_run_id, upto)
        self._enqueue(new_run_id, 0)
        forked = self.store.get_run(new_run_id)
        assert forked is not None
        return forked

    def prune(self, older_than: float) -> list[str]:
        """Delete finished runs (and their segments' DBOS records) not updated for `older_than` seconds."""
        removed = self.store.delete_runs_before(time.time() - older_than)
        ids = [segment_id(run_id, s) for run_id, last in removed for s in range(last + 1)]
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            off_loop(lambda chunk=chunk: DBOS.delete_workflows(chunk))  # type: ignore[misc]
        return [run_id for run_id, _ in removed]

    def result(self, run_id: str, agent: Agent | None = None) -> RunResult:
        """The recorded result of a run's latest segment.

        Raises:
            UsageError: the run does not exist.
        """
        record = self.store.get_run(run_id)
        if record is None:
            raise UsageError(f"run {run_id!r} does not exist in {self.url}")
        data = record.result or {"run_id": run_id, "status": record.status}
        data = {**data, "status": record.status if record.status not in ("queued", "running") else data["status"]}
        return RunResult.from_dict(data, agent.output_type if agent else None)


def run_worker(
    url: str,
    agents: list[Agent],
    *,
    worker_id: str,
    concurrency: int = 100,
    stop: threading.Event,
    ready: Callable[[DurableEngine], None] | None = None,
) -> None:
    """Serve the run queue on `url` with `agents` until `stop` is set.

    On start the worker recovers its own unfinished segments (same `worker_id`), sweeps the runs of
    dead workers onto the queue, then runs queued segments, at most `concurrency` at a time.
    """
    for agent in agents:
        register_agent(agent)
    engine = DurableEngine.for_url(url, worker_id=worker_id, worker=True, concurrency=concurrency)
    try:
        engine.sweep()
        if ready is not None:
            ready(engine)
        stop.wait()
    finally:
        engine.shutdown()
