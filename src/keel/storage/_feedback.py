"""Users' feedback on runs (``keel_feedback``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ._tables import feedback

__all__ = ["Feedback", "insert_feedback", "select_feedback"]


@dataclass(frozen=True, slots=True)
class Feedback:
    """One user's feedback on one run.

    Attributes:
        id: the feedback's id.
        run_id: the run.
        agent: the run's agent.
        tenant: the run's tenant.
        thumbs: ``up`` or ``down``, if given.
        score: 1 (worst) to 5 (best), if given.
        satisfaction: 0 to 1: the score scaled, else 1 for thumbs up and 0 for down.
        comment: free text.
        by: who gave it.
        created_at: when (seconds since the epoch).
    """

    id: str
    run_id: str
    agent: str
    tenant: str | None
    thumbs: str | None
    score: int | None
    satisfaction: float
    comment: str | None
    by: str | None
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dataclasses.asdict(self)


def insert_feedback(engine: sa.Engine, item: Feedback) -> None:
    """Store one item of feedback."""
    with engine.begin() as conn:
        conn.execute(feedback.insert().values(**item.to_dict()))


def select_feedback(
    engine: sa.Engine, *, run_id: str | None = None, tenant: str | None = None, since: float | None = None
) -> list[Feedback]:
    """Feedback, oldest first, filtered by run, tenant and time."""
    query = sa.select(feedback).order_by(feedback.c.created_at)
    if run_id:
        query = query.where(feedback.c.run_id == run_id)
    if tenant:
        query = query.where(feedback.c.tenant == tenant)
    if since is not None:
        query = query.where(feedback.c.created_at >= since)
    with engine.connect() as conn:
        return [Feedback(**dict(r)) for r in conn.execute(query).mappings()]
