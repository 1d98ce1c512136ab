"""The binding to DBOS Transact: each run is a DBOS workflow; each step is journaled by keel.

DBOS owns the workflow's lifecycle (status, recovery, queues, durable waits). The loop's steps are
journaled in keel's own table in the same database, one row per step, appended as it completes:
a resumed run replays completed steps from the journal and never runs them again.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa
from dbos import DBOS, DBOSConfig, DBOSPortableJSONSerializer

from .._loop import RunResult, run_loop
from ..exceptions import ConfigError, RunError, UsageError
from ..messages import RunEvent

if TYPE_CHECKING:
    from ..agent import Agent

__all__ = ["DurableEngine", "JournalSteps"]

log = logging.getLogger("keel.durable")

_LIVE: dict[str, tuple[Agent, Callable[[RunEvent], None]]] = {}
_AGENTS: dict[str, Agent] = {}

SCHEMA = """
CREATE TABLE IF NOT EXISTS keel_steps (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    output TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
)
"""


def register_agent(agent: Agent) -> None:
    """Make `agent` available to runs recovered in this process, by its name."""
    _AGENTS[agent.name] = agent


def _noop(event: RunEvent) -> None:
    return None


@DBOS.workflow(name="keel.run")
async def _run_workflow(agent_name: str, task: str, metadata: dict[str, Any]) -> dict[str, Any]:
    run_id = DBOS.workflow_id
    assert run_id is not None
    live = _LIVE.get(run_id)
    agent = live[0] if live else _AGENTS.get(agent_name)
    if agent is None:
        raise ConfigError(
            f"run {run_id} needs agent {agent_name!r}, which this process has not loaded; start the worker "
            "with the module that defines it"
        )
    emit = live[1] if live else _noop
    engine = DurableEngine.current()
    steps = JournalSteps(run_id, engine.journal)
    result = await run_loop(agent, task, steps, emit, metadata)
    return result.to_dict()


class Journal:
    """Completed steps of runs, in keel's table beside DBOS's."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._insert = sa.text("INSERT INTO keel_steps (run_id, seq, name, output) VALUES (:r, :s, :n, :o)")
        self._select = sa.text("SELECT seq, name, output FROM keel_steps WHERE run_id = :r ORDER BY seq")

    def create(self) -> None:
        """Create the journal table if missing."""
        with self.engine.begin() as conn:
            conn.execute(sa.text(SCHEMA))

    def load(self, run_id: str) -> dict[int, tuple[str, dict[str, Any]]]:
        """Every completed step of a run, by sequence number."""
        with self.engine.connect() as conn:
            rows = conn.execute(self._select, {"r": run_id}).all()
        return {int(seq): (name, json.loads(output)) for seq, name, output in rows}

    def record(self, run_id: str, seq: int, name: str, output: dict[str, Any]) -> None:
        """Append one completed step."""
        with self.engine.begin() as conn:
            conn.execute(self._insert, {"r": run_id, "s": seq, "n": name, "o": json.dumps(output)})


class JournalSteps:
    """The durable step seam: replays journaled steps, runs and records new ones."""

    def __init__(self, run_id: str, journal: Journal) -> None:
        self.run_id = run_id
        self._journal = journal
        self._done = journal.load(run_id)
        self._seq = 0

    async def __call__(self, name: str, fn: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Return the recorded output of this step, or run it and record it."""
        self._seq += 1
        recorded = self._done.pop(self._seq, None)
        if recorded is not None:
            if recorded[0] != name:
                raise RunError(
                    f"run {self.run_id} diverged from its journal at step {self._seq}: the journal has "
                    f"{recorded[0]!r} but the agent asked for {name!r}; resume it with the agent version "
                    "that started it",
                    run_id=self.run_id,
                )
            return recorded[1]
        output = await fn()
        self._journal.record(self.run_id, self._seq, name, output)
        return output


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
        return sa.create_engine(pg, pool_size=10, max_overflow=10, pool_pre_ping=True)
    raise ConfigError(
        f"database URL {url!r} is not supported; use sqlite:///path/to/keel.db, postgresql://user@host/db, "
        "or 'memory' for runs that keep nothing"
    )


class DurableEngine:
    """DBOS, launched once per process on one database, plus keel's journal."""

    _current: ClassVar[DurableEngine | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, url: str, *, worker_id: str | None, application_version: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.journal = Journal(self.engine)
        try:
            self.journal.create()
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigError(f"cannot open database {url!r}: {exc.__class__.__name__}: {exc}; check the URL") from exc
        config: DBOSConfig = {
            "name": "keel",
            "system_database_url": self.engine.url.render_as_string(hide_password=False),
            "system_database_engine": self.engine,
            "application_version": application_version,
            "executor_id": worker_id or f"local-{uuid.uuid4().hex[:12]}",
            "serializer": DBOSPortableJSONSerializer(),
            "log_level": "WARNING",
        }
        DBOS(config=config)
        DBOS.launch()

    @classmethod
    def for_url(cls, url: str) -> DurableEngine:
        """The process's engine on `url`, launching (or relaunching on another database) as needed."""
        with cls._lock:
            current = cls._current
            if current is not None and current.url == url:
                return current
            if current is not None:
                current.shutdown()
            from ..config import settings

            s = settings()
            cls._current = cls(url, worker_id=s.worker_id, application_version=s.application_version)
            return cls._current

    @classmethod
    def current(cls) -> DurableEngine:
        """The launched engine.

        Raises:
            RunError: no engine has been launched in this process.
        """
        if cls._current is None:
            raise RunError("no durable engine is running in this process")
        return cls._current

    def shutdown(self) -> None:
        """Stop DBOS and release the database."""
        DBOS.destroy(destroy_registry=False)
        self.engine.dispose()
        if DurableEngine._current is self:
            DurableEngine._current = None

    async def run(
        self,
        agent: Agent,
        task: str,
        run_id: str,
        emit: Callable[[RunEvent], None],
        metadata: dict[str, Any],
    ) -> RunResult:
        """Start (or rejoin) the run's workflow and wait for its end."""
        register_agent(agent)
        _LIVE[run_id] = (agent, emit)
        try:
            from dbos import SetWorkflowID

            with SetWorkflowID(run_id):
                handle = await DBOS.start_workflow_async(_run_workflow, agent.name, task, metadata)
            data = await handle.get_result()
        finally:
            _LIVE.pop(run_id, None)
        return RunResult.from_dict(data, agent.output_type)

    async def resume(self, agent: Agent, run_id: str, emit: Callable[[RunEvent], None]) -> RunResult:
        """Continue a run whose process stopped: completed steps replay from the journal.

        Raises:
            UsageError: the run does not exist, already finished, or belongs to another agent.
        """
        status = await DBOS.get_workflow_status_async(run_id)
        if status is None:
            raise UsageError(f"run {run_id!r} does not exist in {self.url}; check the id with `keel runs list`")
        if status.status in ("SUCCESS", "ERROR"):
            raise UsageError(f"run {run_id!r} already finished ({status.status.lower()}); nothing to resume")
        args = status.input["args"] if isinstance(status.input, dict) and "args" in status.input else None
        if args and args[0] != agent.name:
            raise UsageError(f"run {run_id!r} belongs to agent {args[0]!r}, not {agent.name!r}; load that agent")
        register_agent(agent)
        _LIVE[run_id] = (agent, emit)
        try:
            handle = await DBOS.resume_workflow_async(run_id)
            data = await handle.get_result()
        finally:
            _LIVE.pop(run_id, None)
        return RunResult.from_dict(data, agent.output_type)
