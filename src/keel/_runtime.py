"""`Runtime`: where runs execute, durable on a database or in memory."""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ._loop import run_loop
from ._observers import Observer, add_observer, fan_out
from ._seam import RunResult, RunStatus, Suspend
from ._validate import reject_nul
from .approvals import WAITING
from .approvals import approve as _approve
from .approvals import edit as _edit
from .approvals import reject as _reject
from .approvals import resolve as _resolve
from .events import RunEvent
from .exceptions import ConfigError, UsageError

if TYPE_CHECKING:
    from .agent import Agent
    from .durable import Approval, DurableEngine, RunRecord

__all__ = ["Runtime", "check_database", "new_run_id"]

_random = random.Random(int.from_bytes(os.urandom(16), "big"))


def new_run_id() -> str:
    """A new run id: ``run_``, the start time in microseconds and 64 random bits (ids sort by start)."""
    return f"run_{time.time_ns() // 1000:014x}{_random.getrandbits(64):016x}"


WHERE_IS_IT = "point at yours with --db URL or KEEL_DATABASE_URL"


def check_database(url: str, *, create: bool = True) -> None:
    """Check that keel can open the SQLite database at `url`, before anything else touches it.

    Args:
        url: the database URL; other than SQLite, the connection itself says what is wrong.
        create: make the database (and its folder) when missing; False for commands that only read
            or act on what is already there, which must not leave an empty database behind a typo.

    Raises:
        ConfigError: the database does not exist (with `create` False), or cannot be created or opened.
    """
    name = url.removeprefix("sqlite:///")
    if not url.startswith("sqlite:///") or name in ("", ":memory:") or name.startswith("file:"):
        return
    path = Path(name).expanduser()
    if not path.exists():
        if not create:
            raise ConfigError(
                f"database {url} does not exist (no file {path.absolute()}); {WHERE_IS_IT} "
                "(`keel run`, `keel serve` and `keel worker` create it)"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot open database {url!r}: cannot make the folder {path.parent} ({exc.strerror}); "
                "choose a writable path with --db URL or KEEL_DATABASE_URL"
            ) from None
    try:
        conn = sqlite3.connect(path, timeout=30)
        try:
            conn.execute("PRAGMA schema_version").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ConfigError(
            f"cannot open database {url!r}: {exc} ({path}); choose a writable path with --db URL or "
            "KEEL_DATABASE_URL"
        ) from None


class InMemorySteps:
    """The step seam without a journal: each step simply runs. For tests and throwaway runs."""

    replayed = False
    replaying = False

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.seq = 0

    async def __call__(
        self, name: str, fn: Callable[[], Awaitable[dict[str, Any]]], *, guard: bool = False
    ) -> dict[str, Any]:
        """Run the step."""
        self.seq += 1
        return await fn()

    async def complete(self, fn: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Never needed: an in-memory run cannot be interrupted and resumed."""
        return await fn()

    async def decide(self, kind: str, request: dict[str, Any]) -> dict[str, Any]:
        """An in-memory run cannot wait for a person: it ends, waiting, and cannot be resumed."""
        status: RunStatus = WAITING.get(kind, "needs_attention")
        raise Suspend(status, f"{request.get('reason', kind)} (an in-memory run cannot be resumed; use a database)")


class Runtime:
    """Where runs execute.

    Args:
        database_url: a SQLite or PostgreSQL URL for durable runs, or ``memory`` for runs that keep
            nothing; default ``KEEL_DATABASE_URL`` (``sqlite:///.keel/keel.db``).
        observers: called with every `RunEvent` of the runs of this runtime (`observe` registers one for
            every run of the process).
        create: create the database when it does not exist (default); False raises `ConfigError` instead.
    """

    _default: ClassVar[Runtime | None] = None

    def __init__(
        self,
        database_url: str | None = None,
        *,
        observers: list[Callable[[RunEvent], None]] | None = None,
        create: bool = True,
    ) -> None:
        if database_url is None:
            from .config import settings

            database_url = settings().database_url
        self.database_url = database_url
        self.durable = database_url != "memory"
        self.observers = list(observers or [])
        if self.durable:
            from .durable import make_engine

            check_database(database_url, create=create)  # before the engine, which makes the folder
            make_engine(database_url).dispose()  # reject a bad URL now, with its name

    @classmethod
    def default(cls) -> Runtime:
        """The process's default runtime, on ``KEEL_DATABASE_URL``."""
        if cls._default is None:
            cls._default = cls()
        return cls._default

    @classmethod
    def in_memory(cls) -> Runtime:
        """A runtime that keeps nothing: for tests and throwaway runs."""
        return cls("memory")

    @staticmethod
    def observe(observer: Observer) -> Callable[[], None]:
        """Send every `RunEvent` of every run this process executes to `observer`, in memory or durable.

        Runs started here and runs a worker here takes from the queue alike; tracing, say.

        Returns:
            a function that stops sending events to `observer`.
        """
        return add_observer(observer)

    def _emitter(self, on_event: Callable[[RunEvent], None] | None) -> Callable[[RunEvent], None]:
        return fan_out([*self.observers, *([on_event] if on_event else [])])

    async def run(
        self,
        agent: Agent,
        task: str,
        *,
        run_id: str | None = None,
        on_event: Callable[[RunEvent], None] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> RunResult:
        """Run `agent` on `task` to its end.

        Raises:
            UsageError: the task is empty, or it, the metadata or the run id holds a NUL character.
        """
        if not isinstance(task, str) or not task.strip():
            raise UsageError("task must be a non-empty string saying what the agent should do")
        reject_nul(task=task, metadata=metadata, run_id=run_id)
        run_id = run_id or new_run_id()
        emit = self._emitter(on_event)
        if not self.durable:
            return await run_loop(agent, task, InMemorySteps(run_id), emit, metadata)
        return await self._engine().run(agent, task, run_id, emit, metadata or {})

    def _engine(self) -> DurableEngine:
        if not self.durable:
            raise UsageError("an in-memory runtime keeps no runs; give the Runtime a database URL")
        from .durable import DurableEngine

        return DurableEngine.for_url(self.database_url)

    def start(
        self, agent: Agent, task: str, *, run_id: str | None = None, metadata: dict[str, Any] | None = None
    ) -> str:
        """Queue a run for any worker on this database and return its id at once.

        Raises:
            UsageError: the task is empty or holds a NUL character (or the metadata or run id does), or the
                runtime is in memory.
        """
        if not isinstance(task, str) or not task.strip():
            raise UsageError("task must be a non-empty string saying what the agent should do")
        reject_nul(task=task, metadata=metadata, run_id=run_id)
        return self._engine().start(agent, task, run_id or new_run_id(), metadata or {})

    async def resume(
        self, agent: Agent, run_id: str, *, on_event: Callable[[RunEvent], None] | None = None
    ) -> RunResult:
        """Continue a durable run in this process; completed steps are not run again.

        Use it after a decision on a waiting run, or when the process running it died.

        Raises:
            UsageError: the run cannot be resumed (the message says why).
        """
        reject_nul(run_id=run_id)
        return await self._engine().resume(agent, run_id, self._emitter(on_event))

    def requeue(self, run_id: str) -> RunRecord:
        """Queue a durable run that has not finished for any worker on this database; return its entry.

        The counterpart of `resume` for when no process here has the agent loaded: a worker that
        has it continues the run; completed steps are not run again.

        Raises:
            UsageError: the run does not exist, has finished, or is running on a live worker.
        """
        reject_nul(run_id=run_id)
        return self._engine().requeue(run_id)

    async def wait(self, run_id: str, agent: Agent | None = None) -> RunResult:
        """Wait for a run (on any worker) to finish or to wait for a person, and return its result.

        Raises:
            UsageError: no such run, or the runtime is in memory.
        """
        reject_nul(run_id=run_id)
        return await self._engine().wait(run_id, agent)

    def get(self, run_id: str) -> RunRecord:
        """The run's index entry: status, task, result so far.

        Raises:
            UsageError: no such run.
        """
        reject_nul(run_id=run_id)
        record = self._engine().store.get_run(run_id)
        if record is None:
            raise UsageError(f"run {run_id!r} does not exist; list runs with `keel runs list`")
        return record

    def runs(self, *, status: str | None = None, agent: str | None = None, limit: int = 50) -> list[RunRecord]:
        """Runs, newest first."""
        reject_nul(status=status, agent=agent)
        return self._engine().store.list_runs(status=status, agent=agent, limit=limit)

    def approvals(self, *, status: str | None = "pending", run_id: str | None = None) -> list[Approval]:
        """Requests for a person's decision (pending ones by default), oldest first."""
        reject_nul(status=status, run_id=run_id)
        return self._engine().store.list_approvals(status=status, run_id=run_id)

    def approve(
        self,
        approval_id: str,
        *,
        by: str,
        note: str | None = None,
        arguments_hash: str | None = None,
        dispatch: bool = True,
    ) -> Approval:
        """Approve a pending tool call, exactly as requested.

        Args:
            approval_id: the approval.
            by: who approves (recorded).
            note: an optional note.
            arguments_hash: the hash of the arguments the approver saw; refused if the request differs.
            dispatch: queue the run's next step for a worker, in the decision's transaction (False: continue
                it yourself with `resume`; a worker's sweeper queues it if nobody has 10 seconds later).

        Raises:
            UsageError: unknown, not an approval, already decided, expired, or for other arguments.
        """
        reject_nul(approval_id=approval_id, by=by, note=note, arguments_hash=arguments_hash)
        return _approve(
            self._engine(), approval_id, by=by, note=note, reviewed_hash=arguments_hash, dispatch=dispatch
        )

    def reject(self, approval_id: str, *, by: str, reason: str, dispatch: bool = True) -> Approval:
        """Reject a pending tool call; the model is told `reason`.

        Raises:
            UsageError: unknown, not an approval, already decided or expired.
        """
        reject_nul(approval_id=approval_id, by=by, reason=reason)
        return _reject(self._engine(), approval_id, by=by, reason=reason, dispatch=dispatch)

    def edit(
        self, approval_id: str, arguments: dict[str, Any], *, by: str, note: str | None = None, dispatch: bool = True
    ) -> Approval:
        """Approve a pending tool call with changed arguments; both versions and hashes are kept.

        Raises:
            UsageError: unknown, not an approval, already decided or expired, or arguments not an object.
        """
        reject_nul(approval_id=approval_id, arguments=arguments, by=by, note=note)
        return _edit(self._engine(), approval_id, arguments, by=by, note=note, dispatch=dispatch)

    def resolve(
        self,
        approval_id: str,
        decision: str,
        *,
        by: str,
        note: str | None = None,
        result: str | None = None,
        dispatch: bool = True,
    ) -> Approval:
        """Decide a run that needs attention.

        Args:
            approval_id: the request.
            decision: for an interrupted call ``retry``, ``skip`` (with `result`) or ``fail``; for a pause
                ``continue`` (the model sees `note`) or ``fail``.
            by: who decides.
            note: shown to the model when the run continues.
            result: the result to record for a skipped call.
            dispatch: queue the run's next step for a worker.

        Raises:
            UsageError: unknown, already decided, or a decision that does not fit the request.
        """
        reject_nul(approval_id=approval_id, decision=decision, by=by, note=note, result=result)
        return _resolve(
            self._engine(), approval_id, decision, by=by, note=note, result=result, dispatch=dispatch
        )

    def cancel(self, run_id: str) -> RunRecord:
        """Cancel a run that has not finished; pending approvals are rejected and its state is kept.

        Raises:
            UsageError: the run does not exist or already finished.
        """
        reject_nul(run_id=run_id)
        return self._engine().cancel(run_id)

    def fork(self, run_id: str, from_step: int, *, run_id_new: str | None = None) -> RunRecord:
        """Queue a new run that starts from the first `from_step` steps of another run's history.

        Raises:
            UsageError: the run does not exist or `from_step` is outside its history.
        """
        reject_nul(run_id=run_id, run_id_new=run_id_new)
        return self._engine().fork(run_id, from_step, new_run_id=run_id_new or new_run_id())

    def prune(self, older_than: float) -> list[str]:
        """Delete finished runs not updated for `older_than` seconds; return their ids."""
        if older_than < 0:
            raise UsageError(f"older_than must be zero or more seconds, got {older_than}")
        return self._engine().prune(older_than)
