"""Anomaly alerts (``keel_alerts``) and the finished runs of a window, which the detector scores."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ._tables import alerts, runs

__all__ = ["FinishedRun", "active_alerts", "claim_alert", "finished_runs", "resolve_alert"]

FINISHED = ("done", "failed", "cancelled")


def claim_alert(engine: sa.Engine, alert: Mapping[str, Any]) -> bool:
    """Record an alert (its columns but ``resolved_at``) unless it, or an active one with its key, is recorded.

    Returns:
        True if this call recorded it; False if another process (or an earlier window) did.
    """
    try:
        with engine.begin() as conn:
            active = conn.execute(
                sa.select(alerts.c.id).where(alerts.c.key == alert["key"], alerts.c.resolved_at.is_(None))
            ).first()
            if active is not None:
                return False
            conn.execute(alerts.insert().values(**alert, resolved_at=None))
    except sa.exc.IntegrityError:
        return False  # another process recorded it first
    return True


def resolve_alert(engine: sa.Engine, key: str, at: float) -> None:
    """Mark the active alert with this key resolved at `at`."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(alerts).where(alerts.c.key == key, alerts.c.resolved_at.is_(None)).values(resolved_at=at)
        )


def active_alerts(engine: sa.Engine, tenant: str | None) -> list[dict[str, Any]]:
    """The active alerts of one tenant, newest first: each alert's columns but ``resolved_at``."""
    query = (
        sa.select(*[c for c in alerts.c if c.name != "resolved_at"])
        .where(alerts.c.resolved_at.is_(None), alerts.c.tenant == tenant)
        .order_by(alerts.c.raised_at.desc())
    )
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


@dataclass(frozen=True, slots=True)
class FinishedRun:
    """A run that finished, as the anomaly detector scores it.

    Attributes:
        tenant: the run's tenant.
        agent: the run's agent.
        status: ``done``, ``failed`` or ``cancelled``.
        steps: the steps it took.
        cost_usd: what it cost.
        created_at: when it was created (seconds since the epoch).
        updated_at: when it finished.
    """

    tenant: str | None
    agent: str
    status: str
    steps: int
    cost_usd: float
    created_at: float
    updated_at: float


def finished_runs(
    engine: sa.Engine, start: float, end: float | None = None, *, tenant: str | None = None
) -> list[FinishedRun]:
    """The runs that finished in [start, end) (since `start` with no end), of one tenant or (None) all."""
    query = sa.select(
        runs.c.tenant, runs.c.agent, runs.c.status, runs.c.steps, runs.c.usage, runs.c.created_at, runs.c.updated_at
    ).where(runs.c.updated_at >= start, runs.c.status.in_(FINISHED))
    if end is not None:
        query = query.where(runs.c.updated_at < end)
    if tenant is not None:
        query = query.where(runs.c.tenant == tenant)
    with engine.connect() as conn:
        return [
            FinishedRun(
                tenant=row.tenant,
                agent=row.agent,
                status=row.status,
                steps=int(row.steps or 0),
                cost_usd=float(json.loads(row.usage or "{}").get("cost_usd") or 0.0),
                created_at=float(row.created_at),
                updated_at=float(row.updated_at),
            )
            for row in conn.execute(query)
        ]
