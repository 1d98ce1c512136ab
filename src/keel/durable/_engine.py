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
import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import sqlalchemy as sa
from dbos import (
    DBOS,
    DBOSClient,
    DBOSConfig,
    DBOSPortableJSONSerializer,
    EnqueueOptions,
    SetEnqueueOptions,
    SetWorkflowID,
)

from .._loop import run_loop
from .._observers import add_observer, fan_out, remove_observer
from .._seam import RunResult, StepConflict
from ..approvals import WAITING_STATUSES, Decided
from ..events import RunEvent
from ..exceptions import ConfigError, UsageError
from ..policies import redact
from ..storage import RunRecord, Store, make_engine
from ..storage._records import run_record
from ..storage._runs import FINISH_SEGMENT, INSERT_RUN, SET_RUNNING, finish_params, new_run_row
from ._decisions import cancel_run, decide, expire_due, fork_run
from ._killpoints import kill_point
from ._steps import JournalSteps
from ._writer import make_writer

if TYPE_CHECKING:
    from .._loop import LoopAgent as Agent  # what the engine reads of an agent; `keel.Agent` is one

__all__ = ["QUEUE", "DurableEngine", "add_observer", "make_engine", "register_agent", "remove_observer"]

log = logging.getLogger("keel.durable")
T = TypeVar("T")

QUEUE = "keel.runs"
FINAL = ("done", "failed", "cancelled")
RESUMABLE = ("waiting", "needs_attention", "running", "queued", "failed")
"""Statuses a run can be resumed from (a failed run, once the cause of its failure is fixed)."""
"""The states from which a run can be resumed or requeued."""
HEARTBEAT_SECONDS = 5.0
LAUNCH_SECONDS = 60.0
"""How long a segment handed out while its process launches waits for the launch to finish."""
ORPHAN_AFTER_SECONDS = 2 * HEARTBEAT_SECONDS
"""A run queued or running but untouched for this long, with no live segment, is handed to the queue again."""
DEAD_AFTER_SECONDS = 30.0

_AGENTS: dict[str, Agent] = {}


def register_agent(agent: Agent) -> None:
    """Make `agent` runnable by segments executed in this process, by its name."""
    _AGENTS[agent.name] = agent


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


async def carry(
    engine: DurableEngine,
    run_id: str,
    segment: int,
    emit: Callable[[RunEvent], None],
    fresh: RunRecord | None = None,
) -> tuple[dict[str, Any], RunResult | None]:
    """Carry a run forward by one segment in this process: replay its journal, then go on.

    Args:
        engine: the engine on the run's database.
        run_id: the run.
        segment: the segment to carry; a run whose index names another segment is left alone.
        emit: receives the run's events.
        fresh: the index entry of a run this process has just created as running, whose journal is
            empty: nothing needs reading back.

    Returns:
        a JSON-ready summary, and the full result when this segment ran the loop.
    """
    store = engine.store
    record = fresh or store.get_run(run_id)
    if record is None:
        return {"run_id": run_id, "status": "missing"}, None
    if record.segment != segment or record.status in FINAL:
        return {"run_id": run_id, "status": "stale"}, None  # a newer segment carries the run now
    agent = _AGENTS.get(record.agent)
    if agent is None:
        log.error("run %s needs agent %r, which this process has not loaded; handing it back", run_id, record.agent)
        await asyncio.to_thread(engine.dispatch, run_id, expect=("queued", "running"))
        return {"run_id": run_id, "status": "handed_back"}, None
    if fresh is None:
        await engine.writer.execute(SET_RUNNING, {"p_run": run_id, "p_worker": engine.worker_id, "p_now": time.time()})
    steps = JournalSteps(run_id, store, engine.writer, journal={} if fresh is not None else None)
    try:
        result = await run_loop(agent, record.task, steps, emit, record.metadata)
    except StepConflict:
        # Another segment of this run journaled the same step first: it owns the run; this one stops.
        return {"run_id": run_id, "status": "stale"}, None
    data = result.to_dict()
    await engine.writer.execute(FINISH_SEGMENT, finish_params(run_id, data))
    if result.status in WAITING_STATUSES and not store.list_approvals(status="pending", run_id=run_id):
        # A person decided after the loop last looked at the request but before the run was recorded as
        # waiting; the decision found the run still running and left it to this segment to continue.
        await asyncio.to_thread(engine.continue_decided, run_id)
    return {k: v for k, v in data.items() if k != "messages"}, result


@DBOS.workflow(name="keel.segment")
async def _segment(run_id: str, segment: int) -> dict[str, Any]:
    """A segment taken from the queue by a worker."""
    summary, _ = await carry(await DurableEngine.launched(), run_id, segment, fan_out([]))
    return summary


class DurableEngine:
    """keel's store, worker heartbeat and run queue on one database; one engine per database URL in a process.

    DBOS is a process global: the first engine launched in a process (and every worker) runs DBOS on its
    database, which executes segments taken from the queue there. An engine on any other database reaches
    that database's queue through a DBOS client, so a process can run, queue, decide and inspect runs on
    several databases at once; only a worker, which executes queued segments, needs DBOS on its own.

    Args:
        url: the database URL.
        worker_id: a stable id for a worker process; None makes a one-off id for this process.
        application_version: pinned on every segment; only processes of the same version recover it.
        worker: listen to the run queue (a worker) rather than run only this process's own runs.
        concurrency: segments a worker runs at once.
        launch: run DBOS on this database (False: reach its queue through a client).
    """

    _current: ClassVar[DurableEngine | None] = None
    """The engine that runs DBOS in this process."""
    _engines: ClassVar[dict[str, DurableEngine]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _ready: ClassVar[threading.Event] = threading.Event()

    def __init__(
        self,
        url: str,
        *,
        worker_id: str | None,
        application_version: str,
        worker: bool = False,
        concurrency: int = 100,
        launch: bool = True,
    ) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.store = Store(self.engine, application_version)
        self.writer = make_writer(self.engine)
        try:
            self.store.migrate()
        except sa.exc.SQLAlchemyError as exc:
            self.writer.close()
            self.engine.dispose()
            raise ConfigError(f"cannot open database {url!r}: {type(exc).__name__}: {exc}; check the URL") from exc
        self.worker_id = worker_id or f"proc-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.is_worker = worker
        # Heartbeat (with this pid) before DBOS launches and recovers this worker id's pending segments, so
        # that no sweeper takes this process for the dead one it replaces and hands those runs out too.
        self._info = {"host": socket.gethostname(), "pid": os.getpid(), "worker": worker}
        self.store.heartbeat(self.worker_id, self._info)
        self.client: DBOSClient | None = None
        if launch:
            self.queue = self._launch(application_version, concurrency)
        else:
            self.client = DBOSClient(
                system_database_engine=self.engine,
                serializer=DBOSPortableJSONSerializer(),
                application_name="keel",
            )
            # The client never creates DBOS's tables; a database no worker has opened yet needs them.
            self.client._sys_db.run_migrations()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat_loop, name="keel-heartbeat", daemon=True)
        self._beat.start()

    def _launch(self, application_version: str, concurrency: int) -> Any:
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
        DBOS.listen_queues([QUEUE] if self.is_worker else [])
        DBOS.launch()
        # DBOS keeps one queue configuration in the database for every process: only a worker sets it, so a
        # process that merely queues runs does not reset the workers' concurrency to its own default.
        return DBOS.register_queue(
            QUEUE,
            worker_concurrency=concurrency,
            polling_interval_sec=0.2,
            on_conflict="always_update" if self.is_worker else "never_update",
        )

    @classmethod
    def for_url(cls, url: str, **kwargs: Any) -> DurableEngine:
        """The process's engine on `url`, launching it as needed; engines on other databases keep running.

        Settings in `kwargs` replace an engine already running on `url` with one that has them.

        Raises:
            UsageError: a worker is asked for on a database other than the one DBOS runs on in this process.
        """
        with cls._lock:
            existing = cls._engines.get(url)
            if existing is not None and not kwargs:
                return existing
            current = cls._current
            if kwargs.get("worker") and current is not None and current.url != url:
                raise UsageError(
                    f"cannot serve the run queue of {url} in this process: DBOS runs one database per process "
                    f"and runs on {current.url} here; start the worker for {url} in its own process "
                    f"(`keel worker --db {url} ...`), or call DurableEngine.close() first, which stops "
                    f"the engine on {current.url}"
                )
            if existing is not None:
                existing._stop_engine()  # the same database with other settings
            from ..config import settings

            s = settings()
            kwargs.setdefault("worker_id", s.worker_id)
            kwargs.setdefault("application_version", s.application_version)
            launch = cls._current is None
            engine = off_loop(lambda: cls(url, launch=launch, **kwargs))
            cls._engines[url] = engine
            if launch:
                cls._current = engine
                cls._ready.set()
            return engine

    @classmethod
    def current(cls) -> DurableEngine:
        """The engine that runs DBOS in this process.

        Raises:
            UsageError: no engine has been launched in this process.
        """
        if cls._current is None:
            raise UsageError("no durable engine is running in this process")
        return cls._current

    @classmethod
    async def launched(cls) -> DurableEngine:
        """The engine running DBOS, waiting while it launches: DBOS hands out queued segments before that ends.

        Raises:
            UsageError: no engine has been launched in this process.
        """
        if not cls._ready.is_set():
            await asyncio.to_thread(cls._ready.wait, LAUNCH_SECONDS)
        return cls.current()

    @classmethod
    def close(cls) -> None:
        """Shut down every engine of this process, the one running DBOS last."""
        with cls._lock:
            for engine in sorted(cls._engines.values(), key=lambda e: e is cls._current):
                engine._stop_engine()

    def shutdown(self) -> None:
        """Stop the heartbeat and DBOS (or the client), and release the database; other engines keep running."""
        with DurableEngine._lock:
            self._stop_engine()

    @property
    def _dbos(self) -> Any:
        """What manages this database's segments: DBOS itself, or the client when DBOS runs elsewhere."""
        return DBOS if self.client is None else self.client

    def _stop_engine(self) -> None:
        self._stop.set()
        self._beat.join(timeout=5)
        if self.client is not None:
            self.client.destroy()
        elif DurableEngine._current is self:
            off_loop(lambda: DBOS.destroy(destroy_registry=False))
            DurableEngine._ready.clear()
            DurableEngine._current = None
        self.writer.close()
        self.engine.dispose()
        if DurableEngine._engines.get(self.url) is self:
            del DurableEngine._engines[self.url]

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
        """Hand to the queue the runs of workers that stopped heartbeating, orphaned runs, and decided ones.

        A run is decided when a request of its expires here, or when a person's decision released it and
        the process that decided died before queueing it.

        Returns:
            the ids of the runs dispatched.
        """
        now = time.time() if now is None else now
        dispatched: list[str] = []
        for worker_id, beat in self.store.workers_seen().items():
            if worker_id == self.worker_id or (now - beat < dead_after and self.alive(worker_id)):
                continue
            if not self.store.forget_worker(worker_id, beat):
                continue  # another sweeper took it, or the worker came back under the same id
            # A segment the dead worker had dequeued but not yet marked running leaves its run "queued"
            # with no worker named; only DBOS knows who held it, and nobody else would ever run it. Its
            # segments are cancelled first, so that a restart under the same id does not recover them too
            # (and none stays pending for ever: those of runs it finished just before it died, for one).
            held = self._held_segments(worker_id)
            if held:
                off_loop(functools.partial(self._dbos.cancel_workflows, sorted(held)))
            for record in self.store.list_runs(status="running", limit=10_000):
                if record.worker == worker_id or segment_id(record.run_id, record.segment) in held:
                    self._cancel_segment(record)
                    with contextlib.suppress(UsageError):  # the run moved on meanwhile: someone else carries it
                        dispatched.append(self.dispatch(record.run_id, expect=("running",)))
            for record in self.store.list_runs(status="queued", limit=10_000):
                if segment_id(record.run_id, record.segment) in held:
                    with contextlib.suppress(UsageError):  # a worker started it meanwhile
                        dispatched.append(self.dispatch(record.run_id, expect=("queued",)))
        for record in self._orphans(now):
            with contextlib.suppress(UsageError):  # it moved on meanwhile
                dispatched.append(self.dispatch(record.run_id, expect=(record.status,)))
        for expired in expire_due(self.store, now):
            if expired.segment is not None:
                self._enqueue(expired.approval.run_id, expired.segment)
                dispatched.append(expired.approval.run_id)
        for record in self.store.decided_waiting(now - ORPHAN_AFTER_SECONDS):
            with contextlib.suppress(UsageError):  # it moved on meanwhile
                dispatched.append(self.dispatch(record.run_id, expect=(record.status,)))
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

    def _orphans(self, now: float) -> list[RunRecord]:
        """Runs left queued or running that nothing will carry on.

        A process that died between claiming a run's next segment and queueing it leaves the run queued
        with no segment in DBOS; a segment that ended without settling its run (an error escaped it)
        leaves the run queued or running for ever. A run running with no segment in DBOS runs inside
        its process, outside the queue: the dead-worker sweep covers it.
        """
        idle = [
            record
            for status in ("queued", "running")
            for record in self.store.list_runs(status=status, limit=10_000)
            if now - record.updated_at > ORPHAN_AFTER_SECONDS
        ]
        ids = [segment_id(record.run_id, record.segment) for record in idle]
        found: dict[str, str] = {}
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            listed = off_loop(
                lambda chunk=chunk: self._dbos.list_workflows(  # type: ignore[misc]
                    workflow_ids=chunk, load_input=False, load_output=False
                )
            )
            found.update((w.workflow_id, w.status) for w in listed)
        return [
            record
            for record, wid in zip(idle, ids, strict=True)
            if found.get(wid) not in ("ENQUEUED", "PENDING", "DELAYED") and (wid in found or record.status == "queued")
        ]

    def _held_segments(self, worker_id: str) -> set[str]:
        """The ids of the segments a worker had dequeued (DBOS: PENDING on its executor id) and not finished."""
        found = off_loop(
            lambda: self._dbos.list_workflows(
                status="PENDING", executor_id=worker_id, name="keel.segment", load_input=False, load_output=False
            )
        )
        return {w.workflow_id for w in found}

    def _cancel_segment(self, record: RunRecord) -> None:
        try:
            off_loop(lambda: self._dbos.cancel_workflow(segment_id(record.run_id, record.segment)))
        except Exception:  # already finished or never started: nothing to cancel
            log.debug("could not cancel segment %s of %s", record.segment, record.run_id)

    # -- starting and continuing runs ----------------------------------------------------------
    def dispatch(self, run_id: str, *, expect: tuple[str, ...] = ("waiting", "needs_attention")) -> str:
        """Claim the run's next segment and put it on the queue for any worker."""
        segment = self.store.next_segment(run_id, expect=expect)
        self._enqueue(run_id, segment)
        return run_id

    def decide(
        self,
        approval_id: str,
        status: str,
        decision: dict[str, Any],
        *,
        by: str,
        note: str | None,
        edited: dict[str, Any] | None = None,
        edited_hash: str | None = None,
        dispatch: bool = True,
    ) -> Decided:
        """Record a person's decision and, with `dispatch`, queue the run it releases for any worker.

        The decision and the claim of the run's next segment are one transaction; a process killed before
        the segment is queued leaves the run queued for the sweeper to hand on.

        Raises:
            UsageError: unknown, already decided or expired.
        """
        decided = decide(
            self.store,
            approval_id,
            status,
            decision,
            by=by,
            note=note,
            edited=edited,
            edited_hash=edited_hash,
            claim=dispatch,
        )
        if decided.segment is not None:
            kill_point("decide:claimed")
            self._enqueue(decided.approval.run_id, decided.segment)
        return decided

    def continue_decided(self, run_id: str) -> None:
        """Queue the next segment of a run whose request a person has just decided.

        A run still queued or running is left alone: the segment carrying it finds the decision, when it
        looks at the request or, if it looked just before the decision, right after it records that the
        run waits (see `carry`).

        Raises:
            UsageError: the run does not exist or has finished.
        """
        while True:
            try:
                self.dispatch(run_id)
                return
            except UsageError:
                status = self.store.status(run_id)
                if status in ("queued", "running"):
                    return
                if status not in ("waiting", "needs_attention"):
                    raise
                # the segment recorded that the run waits between our two looks: claim it again

    def _enqueue(self, run_id: str, segment: int) -> None:
        # Every segment goes to workers of the version that started the run, whoever queues it (a
        # person's decision, a sweeper of another version): their code replays its journal.
        version = self.store.run_version(run_id) or self.store.app_version

        if self.client is not None:
            options: EnqueueOptions = {
                "queue_name": QUEUE,
                "workflow_name": "keel.segment",
                "workflow_id": segment_id(run_id, segment),
            }
            if version is not None:
                options["app_version"] = version
            self.client.enqueue(options, run_id, segment)
            return

        def enqueue() -> None:
            with SetWorkflowID(segment_id(run_id, segment)), SetEnqueueOptions(app_version=version):
                self.queue.enqueue(_segment, run_id, segment)

        off_loop(enqueue)

    def start(self, agent: Agent, task: str, run_id: str, metadata: dict[str, Any]) -> str:
        """Index a run and queue its first segment for any worker; return at once."""
        register_agent(agent)
        task, _ = redact(agent.policies, task, "task")  # what a policy hides is never stored
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
        task, _ = redact(agent.policies, task, "task")  # what a policy hides is never stored
        # Indexed as running on this process at once: the segment starts here, with an empty journal.
        row = new_run_row(
            run_id,
            agent.name,
            task,
            metadata,
            status="running",
            worker=self.worker_id,
            app_version=self.store.app_version,
        )
        try:
            await self.writer.execute(INSERT_RUN, row)
        except sa.exc.IntegrityError:
            return self.result(run_id, agent)  # the run exists: its recorded result, not a second run
        return await self._execute(agent, run_id, 0, emit, fresh=run_record(row))

    async def resume(self, agent: Agent, run_id: str, emit: Callable[[RunEvent], None]) -> RunResult:
        """Continue a run in this process: after a decision, or after the process running it died.

        Raises:
            UsageError: the run does not exist, has finished, belongs to another agent, or is running on a
                live worker.
        """
        self._take_over(run_id, agent.name)
        register_agent(agent)
        segment = self.store.next_segment(run_id, expect=RESUMABLE)
        return await self._execute(agent, run_id, segment, emit)

    def requeue(self, run_id: str) -> RunRecord:
        """Queue a run's next segment for any worker: after a decision, or after the process running it died.

        Raises:
            UsageError: the run does not exist, has finished, or is running on a live worker.
        """
        self._take_over(run_id, None)
        self.dispatch(run_id, expect=RESUMABLE)
        record = self.store.get_run(run_id)
        assert record is not None
        return record

    def _take_over(self, run_id: str, agent: str | None) -> RunRecord:
        """Check that a run can continue elsewhere, cancelling the segment of a dead worker that held it."""
        record = self.store.get_run(run_id)
        if record is None:
            raise UsageError(f"run {run_id!r} does not exist in {self.url}; list runs with `keel runs list`")
        if record.status in ("done", "cancelled"):
            raise UsageError(
                f"run {run_id!r} already finished ({record.status}); nothing to resume. "
                f"To run it again from a step, use `keel runs fork {run_id} --from-step N`"
            )
        if agent is not None and record.agent != agent:
            raise UsageError(f"run {run_id!r} belongs to agent {record.agent!r}, not {agent!r}; load that agent")
        if record.status in ("running", "queued") and record.worker and record.worker != self.worker_id:
            if self.alive(record.worker):
                raise UsageError(f"run {run_id!r} is {record.status} on live worker {record.worker}; let it finish")
            self._cancel_segment(record)
        return record

    async def _execute(
        self,
        agent: Agent,
        run_id: str,
        segment: int,
        emit: Callable[[RunEvent], None],
        fresh: RunRecord | None = None,
    ) -> RunResult:
        # In this process the segment runs directly: the journal and the run index make it durable, and
        # if this process dies the sweeper (or `keel runs resume`) hands the run to a worker's queue.
        summary, result = await carry(self, run_id, segment, emit, fresh)
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
        pause = 0.02
        while True:
            record = self.store.get_run(run_id)
            if record is None:
                raise UsageError(f"run {run_id!r} does not exist in {self.url}")
            if record.status not in ("queued", "running"):
                return self.result(run_id, agent)
            workflow = segment_id(run_id, record.segment)
            if await self._segment_known(workflow):
                handle: Any = await self._dbos.retrieve_workflow_async(workflow)
                await handle.get_result()  # a queued segment: DBOS says when it ends
            else:
                # the segment runs inside some process, outside DBOS: watch the run index
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)

    async def _segment_known(self, workflow: str) -> bool:
        if self.client is None:
            return await DBOS.get_workflow_status_async(workflow) is not None
        listed = await self.client.list_workflows_async(workflow_ids=[workflow], load_input=False, load_output=False)
        return bool(listed)

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
        cancel_run(self.store, run_id)
        self._cancel_segment(record)
        updated = self.store.get_run(run_id)
        assert updated is not None
        return updated

    def fork(self, run_id: str, from_step: int, *, new_run_id: str) -> RunRecord:
        """Start a new run whose history is the first `from_step` model steps of another; queue it.

        The fork gets the original's journal up to there, a call cut off in flight included (the fork asks a
        person about it), and its own pending request for each request copied without its decision.

        Raises:
            UsageError: the run does not exist, `from_step` is outside its history, or `new_run_id` is taken.
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
        forked = fork_run(self.store, record, new_run_id, upto)
        kill_point("fork:committed")  # stored whole and queued in the index: the sweeper hands it on
        self._enqueue(new_run_id, 0)
        return forked

    def prune(self, older_than: float) -> list[str]:
        """Delete finished runs (and their segments' DBOS records) not updated for `older_than` seconds."""
        removed = self.store.delete_runs_before(time.time() - older_than)
        ids = [segment_id(run_id, s) for run_id, last in removed for s in range(last + 1)]
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            off_loop(lambda chunk=chunk: self._dbos.delete_workflows(chunk))  # type: ignore[misc]
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
    agents: Sequence[Agent],
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
