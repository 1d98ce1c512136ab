"""The run index (``keel_runs``) and the step journal (``keel_steps``).

The statements the durable engine executes through its journal writer, and `Store`'s reads and single
writes of runs and steps.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import sqlalchemy as sa

from ..exceptions import UsageError
from ._records import RunRecord, loads, run_record
from ._tables import approvals, runs, steps

__all__ = [
    "CANCEL_HORIZON_SECONDS",
    "CANCEL_REFRESH_SECONDS",
    "COMPLETE_STEP",
    "FINISH_SEGMENT",
    "INSERT_RUN",
    "INSERT_STEP",
    "SET_RUNNING",
    "RunIndex",
    "finish_params",
    "new_run_row",
]

INSERT_STEP = steps.insert()
COMPLETE_STEP = (
    steps.update()
    .where(steps.c.run_id == sa.bindparam("p_run"), steps.c.seq == sa.bindparam("p_seq"))
    .values(status="done", output=sa.bindparam("p_output"))
)
INSERT_RUN = runs.insert()
SET_RUNNING = (
    runs.update()
    .where(runs.c.run_id == sa.bindparam("p_run"))
    .values(status="running", worker=sa.bindparam("p_worker"), updated_at=sa.bindparam("p_now"))
)
FINISH_SEGMENT = (
    runs.update()
    .where(runs.c.run_id == sa.bindparam("p_run"), runs.c.status != "cancelled")
    .values(
        status=sa.bindparam("p_status"),
        result=sa.bindparam("p_result"),
        error=sa.bindparam("p_error"),
        error_type=sa.bindparam("p_error_type"),
        steps=sa.bindparam("p_steps"),
        usage=sa.bindparam("p_usage"),
        updated_at=sa.bindparam("p_now"),
    )
)

CANCEL_REFRESH_SECONDS = 1.0
CANCEL_HORIZON_SECONDS = 7 * 24 * 3600.0
"""Runs cancelled longer ago than this are not looked for (their segments have long stopped)."""


def new_run_row(
    run_id: str,
    agent: str,
    task: str,
    metadata: dict[str, Any],
    parent: str | None = None,
    *,
    status: str = "queued",
    worker: str | None = None,
    app_version: str | None = None,
) -> dict[str, Any]:
    """The index row of a new run: queued, or running on `worker`; started by `app_version`."""
    now = time.time()
    return {
        "run_id": run_id,
        "agent": agent,
        "task": task,
        "status": status,
        "worker": worker,
        "app_version": app_version,
        "segment": 0,
        "tenant": metadata.get("tenant"),
        "metadata": json.dumps(metadata, default=str),
        "steps": 0,
        "usage": "{}",
        "parent_run": parent,
        "created_at": now,
        "updated_at": now,
    }


def finish_params(run_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """Parameters of `FINISH_SEGMENT` for a segment's result (the conversation included)."""
    return {
        "p_run": run_id,
        "p_status": result["status"],
        "p_result": json.dumps(result, default=str),
        "p_error": _storable(result.get("error")),
        "p_error_type": result.get("error_type"),
        "p_steps": result.get("steps", 0),
        "p_usage": json.dumps(result.get("usage") or {}),
        "p_now": time.time(),
    }


def _storable(text: str | None) -> str | None:
    """`text` for a text column: a NUL character (which PostgreSQL cannot store) written out as backslash-x00.

    The error text is written by the model or a tool; the result's JSON keeps it exactly.
    """
    return None if text is None else text.replace("\x00", "\\x00")


class RunIndex:
    """The run index and the journal, read and written through `engine` (part of `Store`)."""

    engine: sa.Engine
    app_version: str | None

    def __init__(self) -> None:
        self._cancelled: set[str] = set()
        self._cancelled_at = float("-inf")
        self._cancel_lock = threading.Lock()
        self._select_steps = sa.select(steps.c.seq, steps.c.name, steps.c.status, steps.c.output).where(
            steps.c.run_id == sa.bindparam("r")
        )

    def is_cancelled(self, run_id: str) -> bool:
        """Whether the run was cancelled, from a process-wide set refreshed at most once a second."""
        now = time.monotonic()
        if now - self._cancelled_at >= CANCEL_REFRESH_SECONDS:
            with self._cancel_lock:
                if now - self._cancelled_at >= CANCEL_REFRESH_SECONDS:
                    query = sa.select(runs.c.run_id).where(
                        runs.c.status == "cancelled", runs.c.updated_at > time.time() - CANCEL_HORIZON_SECONDS
                    )
                    with self.engine.connect() as conn:
                        self._cancelled = {str(r[0]) for r in conn.execute(query)}
                    self._cancelled_at = now
        return run_id in self._cancelled

    def create_run(
        self, run_id: str, agent: str, task: str, metadata: dict[str, Any], *, parent: str | None = None
    ) -> bool:
        """Index a new run as ``queued``; return False if the run already exists."""
        try:
            with self.engine.begin() as conn:
                row = new_run_row(run_id, agent, task, metadata, parent, app_version=self.app_version)
                conn.execute(INSERT_RUN, row)
        except sa.exc.IntegrityError:
            return False
        return True

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run's index row, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).mappings().first()
        return None if row is None else run_record(row)

    def list_runs(
        self, *, status: str | None = None, agent: str | None = None, limit: int = 50, tenant: str | None = None
    ) -> list[RunRecord]:
        """Runs, newest first."""
        query = sa.select(runs).order_by(runs.c.created_at.desc()).limit(limit)
        if status:
            query = query.where(runs.c.status == status)
        if agent:
            query = query.where(runs.c.agent == agent)
        if tenant:
            query = query.where(runs.c.tenant == tenant)
        with self.engine.connect() as conn:
            return [run_record(r) for r in conn.execute(query).mappings()]

    def agents_of(self, run_ids: list[str]) -> dict[str, str]:
        """The agent of each of these runs that exists, in as few queries as the list allows."""
        ids = sorted(set(run_ids))
        names: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
                query = sa.select(runs.c.run_id, runs.c.agent).where(runs.c.run_id.in_(chunk))
                names.update((str(r[0]), str(r[1])) for r in conn.execute(query))
        return names

    def status(self, run_id: str) -> str | None:
        """The run's status, or None."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(runs.c.status).where(runs.c.run_id == run_id)).scalar()

    def note_cancelled(self, run_id: str) -> None:
        """Know at once, in this process, that the run was cancelled (other processes within a second)."""
        self._cancelled.add(run_id)

    def set_status(self, run_id: str, status: str, *, worker: str | None = None, segment: int | None = None) -> None:
        """Move a run to `status`."""
        if status == "cancelled":
            self._cancelled.add(run_id)
        values: dict[str, Any] = {"status": status, "updated_at": time.time()}
        if worker is not None:
            values["worker"] = worker
        if segment is not None:
            values["segment"] = segment
        with self.engine.begin() as conn:
            conn.execute(runs.update().where(runs.c.run_id == run_id).values(**values))

    def run_version(self, run_id: str) -> str | None:
        """The application version that started the run (None for runs indexed before versions were kept)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(runs.c.app_version).where(runs.c.run_id == run_id)).scalar()

    def next_segment(self, run_id: str, *, expect: tuple[str, ...]) -> int:
        """Claim the run's next segment number, if its status is one of `expect`.

        Raises:
            UsageError: the run does not exist or is in another state.
        """
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(runs.c.status, runs.c.segment).where(runs.c.run_id == run_id)).first()
            if row is None:
                raise UsageError(f"run {run_id!r} does not exist; list runs with `keel runs list`")
            if row.status not in expect:
                raise UsageError(
                    f"run {run_id!r} is {row.status}; only a run that is {' or '.join(expect)} can continue"
                )
            segment = int(row.segment) + 1
            updated = conn.execute(
                runs.update()
                .where(runs.c.run_id == run_id, runs.c.segment == row.segment, runs.c.status == row.status)
                .values(segment=segment, status="queued", updated_at=time.time())
            )
            if updated.rowcount != 1:
                raise UsageError(f"run {run_id!r} changed while continuing it; try again")
        return segment

    def delete_runs_before(self, cutoff: float) -> list[tuple[str, int]]:
        """Delete finished runs last updated before `cutoff`, with their steps and approvals.

        Returns:
            each deleted run's id and last segment number.
        """
        with self.engine.begin() as conn:
            found = [
                (str(r[0]), int(r[1]))
                for r in conn.execute(
                    sa.select(runs.c.run_id, runs.c.segment).where(
                        runs.c.updated_at < cutoff, runs.c.status.in_(("done", "failed", "cancelled"))
                    )
                )
            ]
            ids = [run_id for run_id, _ in found]
            for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
                conn.execute(steps.delete().where(steps.c.run_id.in_(chunk)))
                conn.execute(approvals.delete().where(approvals.c.run_id.in_(chunk)))
                conn.execute(runs.delete().where(runs.c.run_id.in_(chunk)))
        return found

    def load_steps(self, run_id: str) -> dict[int, tuple[str, str, dict[str, Any] | None]]:
        """Every journaled step of a run: seq -> (name, status, output)."""
        with self.engine.connect() as conn:
            rows = conn.execute(self._select_steps, {"r": run_id}).all()
        return {int(seq): (name, status, loads(output)) for seq, name, status, output in rows}
