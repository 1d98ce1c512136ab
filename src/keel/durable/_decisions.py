"""The writes that move a run on a person's word, or copy it: each one transaction.

A decision and the claim of the run's next segment commit together, so that no kill between them leaves a
run waiting on a request already decided; a cancel and the rejection of the run's pending requests commit
together; a fork's index row, its history and its own requests commit together, so that no kill leaves a
fork with half a history for a worker to run from scratch. The queueing that follows a claim (a DBOS
enqueue) is a separate write: a run claimed and never queued is found by the sweeper. Which decisions fit a
request, its expiry and the records a decision writes are `keel.approvals`'s; the SQL is here.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

from ..approvals import WAITING_STATUSES, Decided, check_decidable, expired_decision, forked_expiry, request_id
from ..exceptions import UsageError
from ..storage import RunRecord, Store
from ..storage._journal_events import unanswered_request
from ..storage._records import approval_record
from ..storage._runs import INSERT_RUN, new_run_row
from ..storage._tables import approvals, runs, steps
from ._killpoints import kill_point

__all__ = ["WAITING_STATUSES", "Decided", "cancel_run", "decide", "expire_due", "fork_run", "request_id"]


def decide(
    store: Store,
    approval_id: str,
    status: str,
    decision: dict[str, Any],
    *,
    by: str,
    note: str | None,
    edited: dict[str, Any] | None = None,
    edited_hash: str | None = None,
    claim: bool = True,
) -> Decided:
    """Record a person's decision on a pending, unexpired request and, with `claim`, claim the run it releases.

    Raises:
        UsageError: unknown, already decided or expired.
    """
    now = time.time()
    with store.engine.begin() as conn:
        row = conn.execute(sa.select(approvals).where(approvals.c.id == approval_id)).mappings().first()
        request = check_decidable(None if row is None else approval_record(row), approval_id, now)
        updated = conn.execute(
            approvals.update()
            .where(approvals.c.id == approval_id, approvals.c.status == "pending")
            .values(
                status=status,
                decision=json.dumps(decision, default=str),
                decided_by=by,
                decided_at=now,
                note=note,
                edited_arguments=None if edited is None else json.dumps(edited, default=str),
                edited_hash=edited_hash,
            )
        )
        if updated.rowcount != 1:
            raise UsageError(f"approval {approval_id!r} was decided by someone else just now")
        kill_point("decide:recorded")
        segment = _claim_waiting(conn, request.run_id) if claim else None
    approval = store.get_approval(approval_id)
    assert approval is not None
    return Decided(approval, segment)


def expire_due(store: Store, now: float | None = None, *, ids: list[str] | None = None) -> list[Decided]:
    """Mark pending requests past their expiry (of `ids`, or all) expired, each claiming the run it releases."""
    now = time.time() if now is None else now
    query = sa.select(approvals.c.id, approvals.c.run_id, approvals.c.on_expiry).where(
        approvals.c.status == "pending", approvals.c.expires_at.is_not(None), approvals.c.expires_at <= now
    )
    if ids is not None:
        query = query.where(approvals.c.id.in_(ids))
    with store.engine.connect() as conn:
        due = conn.execute(query).all()
    expired: list[tuple[str, int | None]] = []
    for approval_id, run_id, on_expiry in due:
        with store.engine.begin() as conn:
            done = conn.execute(
                approvals.update()
                .where(approvals.c.id == approval_id, approvals.c.status == "pending")
                .values(
                    status="expired",
                    decision=json.dumps(expired_decision(on_expiry)),
                    decided_by="keel",
                    decided_at=now,
                )
            )
            if done.rowcount == 1:
                expired.append((str(approval_id), _claim_waiting(conn, str(run_id))))
    found = [(store.get_approval(i), segment) for i, segment in expired]
    return [Decided(approval, segment) for approval, segment in found if approval is not None]


def cancel_run(store: Store, run_id: str) -> None:
    """Reject a run's pending requests and mark it cancelled, together."""
    now = time.time()
    with store.engine.begin() as conn:  # requests first, then the run: the order in which a decision locks them
        conn.execute(
            approvals.update()
            .where(approvals.c.run_id == run_id, approvals.c.status == "pending")
            .values(
                status="rejected",
                decision=json.dumps({"decision": "rejected"}),
                decided_by="keel",
                decided_at=now,
                note="run cancelled",
            )
        )
        kill_point("cancel:recorded")
        conn.execute(runs.update().where(runs.c.run_id == run_id).values(status="cancelled", updated_at=now))
    store.note_cancelled(run_id)


def fork_run(store: Store, source: RunRecord, target: str, upto: int) -> RunRecord:
    """Index a queued fork of `source` with its journal up to step `upto`, in one transaction.

    Rows are copied as they are, a call cut off in flight (journaled ``started``) and the rows resolving it
    included: the fork asks a person about that call, as the original does, and never re-runs it on its own.
    A request copied without its decision becomes a new pending request of the fork (same kind, tool,
    arguments, hash, reason and expiry policy; its own id and clock), so that only a decision on the fork's
    request releases the fork. A decision journaled up to `upto` is history, copied like any other step.

    Raises:
        UsageError: `target` is taken, or a copied request is missing from the database.
    """
    now = time.time()
    row = new_run_row(target, source.agent, source.task, source.metadata, source.run_id, app_version=store.app_version)
    try:
        with store.engine.begin() as conn:
            conn.execute(INSERT_RUN, row)
            kill_point("fork:indexed")
            journal = conn.execute(
                sa.select(steps.c.seq, steps.c.name, steps.c.status, steps.c.output)
                .where(steps.c.run_id == source.run_id, steps.c.seq <= upto)
                .order_by(steps.c.seq)
            ).all()
            names = {int(seq): str(name) for seq, name, _, _ in journal}
            copied = []
            for seq, name, status, output in journal:
                if unanswered_request(names, seq):
                    output = json.dumps({"id": _fork_request(conn, str(json.loads(output)["id"]), target, seq, now)})
                copied.append({"run_id": target, "seq": seq, "name": name, "status": status, "output": output})
            if copied:
                conn.execute(steps.insert(), copied)
    except sa.exc.IntegrityError:
        raise UsageError(f"run {target!r} already exists; fork under another id") from None
    forked = store.get_run(target)
    assert forked is not None
    return forked


def _claim_waiting(conn: sa.Connection, run_id: str) -> int | None:
    """Claim the next segment of `run_id` if it waits for a person; None if it is queued, running or over.

    The run's row is locked (PostgreSQL; SQLite holds its write lock already), so a segment about to record
    the run as waiting does so after this transaction commits: it then finds no pending request and
    continues the run itself.
    """
    row = conn.execute(
        sa.select(runs.c.status, runs.c.segment).where(runs.c.run_id == run_id).with_for_update()
    ).first()
    if row is None or row.status not in WAITING_STATUSES:
        return None
    segment = int(row.segment) + 1
    claimed = conn.execute(
        runs.update()
        .where(runs.c.run_id == run_id, runs.c.segment == row.segment, runs.c.status == row.status)
        .values(segment=segment, status="queued", updated_at=time.time())
    )
    return segment if claimed.rowcount == 1 else None


def _fork_request(conn: sa.Connection, original_id: str, target: str, seq: int, now: float) -> str:
    original = conn.execute(sa.select(approvals).where(approvals.c.id == original_id)).mappings().first()
    if original is None:
        raise UsageError(f"request {original_id!r} journaled by the run is missing from the database; cannot fork")
    new_id = request_id(target, seq)
    conn.execute(
        approvals.insert().values(
            id=new_id,
            run_id=target,
            kind=original["kind"],
            tool=original["tool"],
            arguments=original["arguments"],
            arguments_hash=original["arguments_hash"],
            reason=original["reason"],
            status="pending",
            requested_at=now,
            expires_at=forked_expiry(original["requested_at"], original["expires_at"], now),
            on_expiry=original["on_expiry"],
        )
    )
    return new_id
