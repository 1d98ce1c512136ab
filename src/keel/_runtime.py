"""`Runtime`: where runs execute, durable on a database or in memory."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from ._loop import RunResult, run_loop
from .exceptions import UsageError
from .messages import RunEvent

if TYPE_CHECKING:
    from .agent import Agent

__all__ = ["Runtime", "new_run_id"]

log = logging.getLogger("keel")


def new_run_id() -> str:
    """A new run id: ``run_`` and 26 hex digits, time-ordered so ids sort by start."""
    return f"run_{uuid.uuid1().hex[:8]}{uuid.uuid4().hex[:18]}"


class InMemorySteps:
    """The step seam without a journal: each step simply runs. For tests and throwaway runs."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    async def __call__(self, name: str, fn: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Run the step."""
        return await fn()


class Runtime:
    """Where runs execute.

    Args:
        database_url: a SQLite or PostgreSQL URL for durable runs, or ``memory`` for runs that keep
            nothing; default ``KEEL_DATABASE_URL`` (``sqlite:///.keel/keel.db``).
        observers: called with every `RunEvent` of every run.
    """

    _default: ClassVar[Runtime | None] = None

    def __init__(
        self, database_url: str | None = None, *, observers: list[Callable[[RunEvent], None]] | None = None
    ) -> None:
        if database_url is None:
            from .config import settings

            database_url = settings().database_url
        self.database_url = database_url
        self.durable = database_url != "memory"
        self.observers = list(observers or [])
        if self.durable:
            from .durable import make_engine

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

    def _emitter(self, on_event: Callable[[RunEvent], None] | None) -> Callable[[RunEvent], None]:
        sinks = [*self.observers, *([on_event] if on_event else [])]

        def emit(event: RunEvent) -> None:
            for sink in sinks:
                try:
                    sink(event)
                except Exception:  # an observer must never break a run
                    log.exception("observer %r failed on %s", sink, event.kind)

        return emit

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
            UsageError: the task is empty.
        """
        if not isinstance(task, str) or not task.strip():
            raise UsageError("task must be a non-empty string saying what the agent should do")
        run_id = run_id or new_run_id()
        emit = self._emitter(on_event)
        if not self.durable:
            return await run_loop(agent, task, InMemorySteps(run_id), emit, metadata)
        from .durable import DurableEngine

        return await DurableEngine.for_url(self.database_url).run(agent, task, run_id, emit, metadata or {})

    async def resume(
        self, agent: Agent, run_id: str, *, on_event: Callable[[RunEvent], None] | None = None
    ) -> RunResult:
        """Continue a durable run whose process stopped; completed steps are not run again.

        Raises:
            UsageError: the runtime keeps no state, or the run cannot be resumed (the message says why).
        """
        if not self.durable:
            raise UsageError("an in-memory runtime keeps no runs to resume; use a database URL")
        from .durable import DurableEngine

        emit = self._emitter(on_event)
        return await DurableEngine.for_url(self.database_url).resume(agent, run_id, emit)
