"""The rows the metrics are computed from: runs, requests for a person and feedback, per tenant."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ._tables import approvals, feedback, runs

__all__ = ["DecidedRequest", "PendingRequests", "Rating", "RunSummary", "RunStats", "ratings", "run_stats"]


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run as the metrics count it.

    Attributes:
        run_id: the run.
        agent: its agent.
        status: its current status.
        steps: the steps it took so far.
        input_tokens: model tokens read.
        output_tokens: model tokens written.
        cost_usd: what its model calls cost.
        created_at: when it was created (seconds since the epoch).
        updated_at: when its index row last changed (when it finished, for a finished run).
    """

    run_id: str
    agent: str
    status: str
    steps: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class PendingRequests:
    """How many requests of one agent's runs about one tool wait for a person (tool None: not about a tool)."""

    agent: str
    tool: str | None
    count: int


@dataclass(frozen=True, slots=True)
class DecidedRequest:
    """A request a person decided: its run's agent, the outcome, and when it was asked and decided."""

    agent: str
    status: str
    requested_at: float
    decided_at: float


@dataclass(frozen=True, slots=True)
class Rating:
    """One item of feedback as the metrics count it: the agent, thumbs, satisfaction (0..1) and when."""

    agent: str
    thumbs: str | None
    satisfaction: float
    created_at: float


@dataclass(frozen=True, slots=True)
class RunStats:
    """Everything the metrics of one tenant (or all) are computed from, read in one transaction."""

    runs: list[RunSummary]
    pending: list[PendingRequests]
    decided: list[DecidedRequest]
    ratings: list[Rating]


def _of(table: sa.Table, tenant: str | None) -> sa.ColumnElement[bool]:
    return sa.true() if tenant is None else table.c.tenant == tenant


def _summary(row: Any) -> RunSummary:
    run_id, agent, status, n_steps, usage, created, updated = row
    use = json.loads(usage or "{}")
    return RunSummary(
        run_id=run_id,
        agent=agent,
        status=status,
        steps=int(n_steps or 0),
        input_tokens=int(use.get("input_tokens") or 0),
        output_tokens=int(use.get("output_tokens") or 0),
        cost_usd=float(use.get("cost_usd") or 0.0),
        created_at=float(created),
        updated_at=float(updated),
    )


def run_stats(engine: sa.Engine, tenant: str | None) -> RunStats:
    """The runs, pending and decided requests, and feedback of `tenant` (every tenant's with None)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                runs.c.run_id,
                runs.c.agent,
                runs.c.status,
                runs.c.steps,
                runs.c.usage,
                runs.c.created_at,
                runs.c.updated_at,
            ).where(_of(runs, tenant))
        ).all()
        pending = conn.execute(
            sa.select(approvals.c.tool, runs.c.agent, sa.func.count())
            .join(runs, runs.c.run_id == approvals.c.run_id)
            .where(approvals.c.status == "pending", _of(runs, tenant))
            .group_by(approvals.c.tool, runs.c.agent)
        ).all()
        decided = conn.execute(
            sa.select(runs.c.agent, approvals.c.status, approvals.c.requested_at, approvals.c.decided_at)
            .join(runs, runs.c.run_id == approvals.c.run_id)
            .where(approvals.c.status != "pending", approvals.c.decided_at.is_not(None), _of(runs, tenant))
        ).all()
        rated = conn.execute(
            sa.select(feedback.c.agent, feedback.c.thumbs, feedback.c.satisfaction, feedback.c.created_at).where(
                _of(feedback, tenant)
            )
        ).all()
    return RunStats(
        runs=[_summary(r) for r in rows],
        pending=[PendingRequests(agent, tool, int(count)) for tool, agent, count in pending],
        decided=[DecidedRequest(a, s, float(req), float(dec)) for a, s, req, dec in decided],
        ratings=[Rating(a, t, float(v), float(c)) for a, t, v, c in rated],
    )


def ratings(engine: sa.Engine, tenant: str | None, since: float) -> list[Rating]:
    """The feedback given since `since` on `tenant`'s runs (every tenant's with None)."""
    query = sa.select(feedback.c.agent, feedback.c.thumbs, feedback.c.satisfaction, feedback.c.created_at).where(
        feedback.c.created_at >= since, _of(feedback, tenant)
    )
    with engine.connect() as conn:
        return [Rating(a, t, float(v), float(c)) for a, t, v, c in conn.execute(query)]
