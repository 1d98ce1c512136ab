"""Requests for a person's decision (``keel_approvals``): stored, read back, and found decided."""

from __future__ import annotations

import json

import sqlalchemy as sa

from ._records import Approval, RunRecord, approval_record, run_record
from ._tables import approvals, runs

__all__ = ["ApprovalRows"]


class ApprovalRows:
    """Approvals and other decisions for a person, through `engine` (part of `Store`).

    The writes that decide a request move a run too, in one transaction: they are in `keel.durable`.
    """

    engine: sa.Engine

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
        return None if row is None else approval_record(row)

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
            return [approval_record(r) for r in conn.execute(query).mappings()]

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
