"""keel's own tables beside DBOS's, in the same database.

They hold the run index, the step journal, approvals and other decisions for a person, and worker
heartbeats.

The schema is created and upgraded by numbered migrations recorded in ``keel_schema``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ..exceptions import UsageError

__all__ = ["Approval", "RunRecord", "Store", "alerts", "api_keys", "feedback", "run_record"]

metadata = sa.MetaData()

runs = sa.Table(
    "keel_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("agent", sa.String(64), nullable=False),
    sa.Column("task", sa.Text, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("segment", sa.Integer, nullable=False, default=0),
    sa.Column("tenant", sa.String(64), nullable=True),
    sa.Column("metadata", sa.Text, nullable=False, default="{}"),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("error_type", sa.String(40), nullable=True),
    sa.Column("steps", sa.Integer, nullable=False, default=0),
    sa.Column("usage", sa.Text, nullable=False, default="{}"),
    sa.Column("parent_run", sa.String(64), nullable=True),
    sa.Column("worker", sa.String(64), nullable=True),
    sa.Column("app_version", sa.String(64), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("keel_runs_status", "status", "updated_at"),
    sa.Index("keel_runs_created", "created_at"),
)

steps = sa.Table(
    "keel_steps",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # started | done
    sa.Column("output", sa.Text, nullable=True),
)

approvals = sa.Table(
    "keel_approvals",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # approval | interrupted | pause
    sa.Column("tool", sa.String(64), nullable=True),
    sa.Column("arguments", sa.Text, nullable=True),
    sa.Column("arguments_hash", sa.String(64), nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # pending | approved | rejected | expired | decided
    sa.Column("requested_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("on_expiry", sa.String(20), nullable=True),
    sa.Column("decision", sa.Text, nullable=True),  # JSON: what the person chose, for the run to read
    sa.Column("decided_by", sa.String(128), nullable=True),
    sa.Column("decided_at", sa.Float, nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("edited_arguments", sa.Text, nullable=True),
    sa.Column("edited_hash", sa.String(64), nullable=True),
    sa.Index("keel_approvals_pending", "status", "expires_at"),
    sa.Index("keel_approvals_run", "run_id"),
)

workers = sa.Table(
    "keel_workers",
    metadata,
    sa.Column("worker_id", sa.String(64), primary_key=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    sa.Column("info", sa.Text, nullable=False, default="{}"),
)

schema_version = sa.Table(
    "keel_schema",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)

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


CANCEL_REFRESH_SECONDS = 1.0
CANCEL_HORIZON_SECONDS = 7 * 24 * 3600.0
"""Runs cancelled longer ago than this are not looked for (their segments have long stopped)."""

# -- the HTTP service's tables (keel.server, keel.observe) ------------------------------------------
api_keys = sa.Table(
    "keel_api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),  # SHA-256 of the whole key
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("name", sa.String(128), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
)

feedback = sa.Table(
    "keel_feedback",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("tenant", sa.String(64), nullable=True),
    sa.Column("agent", sa.String(64), nullable=False),
    sa.Column("thumbs", sa.String(4), nullable=True),  # up | down
    sa.Column("score", sa.Integer, nullable=True),  # 1..5
    sa.Column("satisfaction", sa.Float, nullable=False),  # 0..1, from thumbs or score
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("by", sa.String(128), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("keel_feedback_run", "run_id"),
    sa.Index("keel_feedback_tenant", "tenant", "created_at"),
)

alerts = sa.Table(
    "keel_alerts",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # from key and window: every process raises the same id
    sa.Column("key", sa.String(300), nullable=False),
    sa.Column("tenant", sa.String(64), nullable=True),
    sa.Column("agent", sa.String(64), nullable=False),
    sa.Column("metric", sa.String(40), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("baseline", sa.Float, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("window_end", sa.Float, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("raised_at", sa.Float, nullable=False),
    sa.Column("resolved_at", sa.Float, nullable=True),
    sa.Index("keel_alerts_active", "key", "resolved_at"),
)

def _add_run_app_version(conn: sa.Connection) -> None:
    """Runs remember the application version that started them, so every segment is queued under it."""
    if "app_version" not in {c["name"] for c in sa.inspect(conn).get_columns("keel_runs")}:
        conn.execute(sa.text("ALTER TABLE keel_runs ADD COLUMN app_version VARCHAR(64)"))


def _counters() -> sa.Table:
    from ..policies._ledger import counters

    return counters


Migration = list[sa.Table] | Callable[[sa.Connection], None]
MIGRATIONS: list[Migration] = [
    [runs, steps, approvals, workers],
    _add_run_app_version,
    [_counters()],
    # the HTTP service: API keys (hashed) mapped to tenants; users' feedback on runs; anomaly alerts
    [api_keys, feedback, alerts],
]
"""Migration N creates these tables, or alters the schema; append, never edit, to change the schema.

The tables above are the current schema, so a new database gets each column from migration 1 and the
later migrations find nothing to do; an older database gets them from the later migrations.
"""


@dataclass(slots=True)
class RunRecord:
    """One row of the run index."""

    run_id: str
    agent: str
    task: str
    status: str
    segment: int
    tenant: str | None
    metadata: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    error_type: str | None
    steps: int
    usage: dict[str, Any]
    parent_run: str | None
    worker: str | None
    created_at: float
    updated_at: float
    app_version: str | None = None


@dataclass(slots=True)
class Approval:
    """A request for a person's decision, bound to the exact arguments of one tool call.

    Attributes:
        id: the approval's id.
        run_id: the paused run.
        kind: ``approval`` (a tool call waits for consent), ``interrupted`` (a side-effecting call was
            in flight when its worker died) or ``pause`` (a policy or tool asked for a person).
        tool: the tool, when the decision is about a call.
        arguments: the call's arguments.
        arguments_hash: SHA-256 of tool and arguments; a decision applies to these arguments only.
        reason: why a person is needed.
        status: ``pending``, ``approved``, ``rejected``, ``expired`` or ``decided``.
        requested_at: when it was requested (seconds since the epoch).
        expires_at: when it expires, if it does.
        on_expiry: what happens on expiry: ``reject`` or ``escalate``.
        decided_by: who decided.
        decided_at: when.
        note: the person's note (shown to the model on a rejection).
        edited_arguments: replacement arguments, when the person edited the call.
        edited_hash: SHA-256 of the edited call.
    """

    id: str
    run_id: str
    kind: str
    tool: str | None
    arguments: dict[str, Any] | None
    arguments_hash: str | None
    reason: str
    status: str
    requested_at: float
    expires_at: float | None
    on_expiry: str | None
    decided_by: str | None = None
    decided_at: float | None = None
    note: str | None = None
    edited_arguments: dict[str, Any] | None = None
    edited_hash: str | None = None
    decision: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dataclasses.asdict(self)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Store:
    """Reads and writes keel's tables through one SQLAlchemy engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: sa.Engine, app_version: str | None = None) -> None:
        self.engine = engine
        self.app_version = app_version
        """The application version recorded on the runs this store creates."""
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

    # -- schema -------------------------------------------------------------------------------
    def migrate(self) -> int:
        """Apply pending migrations; return the schema version now in force."""
        with self.engine.begin() as conn:
            schema_version.create(conn, checkfirst=True)
            current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
            for number, migration in enumerate(MIGRATIONS, start=1):
                if number <= current:
                    continue
                if callable(migration):
                    migration(conn)
                else:
                    for table in migration:
                        table.create(conn, checkfirst=True)
                conn.execute(schema_version.insert().values(version=number, applied_at=time.time()))
                current = number
        return current

    # -- run index ----------------------------------------------------------------------------
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

    def finish_segment(self, run_id: str, result: dict[str, Any]) -> None:
        """Record how a segment of the run ended: its result, with the conversation."""
        with self.engine.begin() as conn:
            conn.execute(FINISH_SEGMENT, finish_params(run_id, result))

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

    # -- journal ------------------------------------------------------------------------------
    def load_steps(self, run_id: str) -> dict[int, tuple[str, str, dict[str, Any] | None]]:
        """Every journaled step of a run: seq -> (name, status, output)."""
        with self.engine.connect() as conn:
            rows = conn.execute(self._select_steps, {"r": run_id}).all()
        return {int(seq): (name, status, _loads(output)) for seq, name, status, output in rows}

    def record_step(self, run_id: str, seq: int, name: str, output: dict[str, Any]) -> None:
        """Journal a completed step."""
        with self.engine.begin() as conn:
            conn.execute(
                INSERT_STEP,
                {"run_id": run_id, "seq": seq, "name": name, "status": "done", "output": json.dumps(output)},
            )

    def mark_started(self, run_id: str, seq: int, name: str) -> None:
        """Journal that a guarded step is about to run (committed before it starts)."""
        with self.engine.begin() as conn:
            conn.execute(INSERT_STEP, {"run_id": run_id, "seq": seq, "name": name, "status": "started", "output": None})

    def complete_started(self, run_id: str, seq: int, output: dict[str, Any]) -> None:
        """Record the output of a guarded step that was marked started."""
        with self.engine.begin() as conn:
            conn.execute(
                steps.update()
                .where(steps.c.run_id == run_id, steps.c.seq == seq)
                .values(status="done", output=json.dumps(output))
            )

    # -- approvals and other decisions --------------------------------------------------------
    def request_decision(self, approval: Approval) -> None:
        """Store a new request for a person's decision (idempotent on its id)."""
        with self.engine.begin() as conn:
            if conn.execute(sa.select(approvals.c.id).where(approvals.c.id == approval.id)).first():
                return
            conn.execute(
                approvals.insert().values(
                    id=approval.id,
                    run_id=approval.run_id,
                    kind=approval.kind,
                    tool=approval.tool,
                    arguments=None if approval.arguments is None else json.dumps(approval.arguments, default=str),
                    arguments_hash=approval.arguments_hash,
                    reason=approval.reason,
                    status="pending",
                    requested_at=approval.requested_at,
                    expires_at=approval.expires_at,
                    on_expiry=approval.on_expiry,
                )
            )

    def get_approval(self, approval_id: str) -> Approval | None:
        """One approval, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(approvals).where(approvals.c.id == approval_id)).mappings().first()
        return None if row is None else _approval(row)

    def list_approvals(
        self, *, status: str | None = "pending", run_id: str | None = None, tenant: str | None = None
    ) -> list[Approval]:
        """Approvals, oldest first."""
        query = sa.select(approvals).order_by(approvals.c.requested_at)
        if status:
            query = query.where(approvals.c.status == status)
        if run_id:
            query = query.where(approvals.c.run_id == run_id)
        if tenant:
            query = query.join(runs, runs.c.run_id == approvals.c.run_id).where(runs.c.tenant == tenant)
        with self.engine.connect() as conn:
            return [_approval(r) for r in conn.execute(query).mappings()]

    def decided_waiting(self, decided_before: float) -> list[RunRecord]:
        """Runs recorded as waiting for a person with no request pending, the last decided before `decided_before`.

        Nothing else would move them: a process died between a decision and the queueing of the run it
        released (a segment that recorded its run as waiting right after the decision, say).
        """
        pending = sa.select(approvals.c.id).where(approvals.c.run_id == runs.c.run_id, approvals.c.status == "pending")
        last = (
            sa.select(sa.func.max(approvals.c.decided_at)).where(approvals.c.run_id == runs.c.run_id).scalar_subquery()
        )
        query = sa.select(runs).where(
            runs.c.status.in_(("waiting", "needs_attention")), ~pending.exists(), last < decided_before
        )
        with self.engine.connect() as conn:
            return [run_record(r) for r in conn.execute(query).mappings()]

    # -- workers ------------------------------------------------------------------------------
    def heartbeat(self, worker_id: str, info: dict[str, Any]) -> None:
        """Record that a worker is alive."""
        now = time.time()
        with self.engine.begin() as conn:
            updated = conn.execute(
                workers.update().where(workers.c.worker_id == worker_id).values(heartbeat_at=now, info=json.dumps(info))
            )
            if updated.rowcount == 0:
                conn.execute(
                    workers.insert().values(
                        worker_id=worker_id, started_at=now, heartbeat_at=now, info=json.dumps(info)
                    )
                )

    def workers_seen(self) -> dict[str, float]:
        """Every known worker and its last heartbeat."""
        with self.engine.connect() as conn:
            return {w: float(h) for w, h in conn.execute(sa.select(workers.c.worker_id, workers.c.heartbeat_at))}

    def worker_info(self, worker_id: str) -> dict[str, Any] | None:
        """What a worker recorded about itself (host, pid), or None if unknown."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(workers.c.info).where(workers.c.worker_id == worker_id)).first()
        return None if row is None else dict(json.loads(row[0] or "{}"))

    def forget_worker(self, worker_id: str, seen: float | None = None) -> bool:
        """Remove a worker's row; True if this call removed it (only one sweeper wins).

        With `seen`, only while its last heartbeat is still that one: a worker restarted under the same id
        since it was judged dead keeps its row.
        """
        query = workers.delete().where(workers.c.worker_id == worker_id)
        if seen is not None:
            query = query.where(workers.c.heartbeat_at == seen)
        with self.engine.begin() as conn:
            return conn.execute(query).rowcount == 1


def run_record(row: Mapping[Any, Any]) -> RunRecord:
    """A `RunRecord` from a row of the run index (or a new row's values, which may lack the nullable ones)."""
    return RunRecord(
        run_id=row["run_id"],
        agent=row["agent"],
        task=row["task"],
        status=row["status"],
        segment=int(row["segment"]),
        tenant=row.get("tenant"),
        metadata=json.loads(row["metadata"] or "{}"),
        result=_loads(row.get("result")),
        error=row.get("error"),
        error_type=row.get("error_type"),
        steps=int(row.get("steps") or 0),
        usage=json.loads(row.get("usage") or "{}"),
        parent_run=row.get("parent_run"),
        worker=row.get("worker"),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        app_version=row.get("app_version"),
    )


def _approval(row: Any) -> Approval:
    return Approval(
        id=row["id"],
        run_id=row["run_id"],
        kind=row["kind"],
        tool=row["tool"],
        arguments=_loads(row["arguments"]),
        arguments_hash=row["arguments_hash"],
        reason=row["reason"],
        status=row["status"],
        requested_at=float(row["requested_at"]),
        expires_at=None if row["expires_at"] is None else float(row["expires_at"]),
        on_expiry=row["on_expiry"],
        decided_by=row["decided_by"],
        decided_at=None if row["decided_at"] is None else float(row["decided_at"]),
        note=row["note"],
        edited_arguments=_loads(row["edited_arguments"]),
        edited_hash=row["edited_hash"],
        decision=_loads(row["decision"]) or {},
    )
