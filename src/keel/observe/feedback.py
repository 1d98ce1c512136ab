"""Users' satisfaction with runs: thumbs, a 1-5 score and a comment, kept beside the run.

Feedback feeds the satisfaction metrics (`keel.observe.metrics`) and can be exported into eval sets
(`list_feedback`).
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..durable._store import Store, feedback
from ..exceptions import UsageError

__all__ = ["Feedback", "list_feedback", "record_feedback", "satisfaction"]


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


def satisfaction(thumbs: str | None, score: int | None) -> float:
    """Satisfaction on 0..1 from a score (preferred: finer) or thumbs.

    Raises:
        UsageError: neither given, or either out of range.
    """
    if score is not None and (isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5):
        raise UsageError(f"score must be a whole number from 1 to 5, got {score!r}")
    if thumbs is not None and thumbs not in ("up", "down"):
        raise UsageError(f"thumbs must be 'up' or 'down', got {thumbs!r}")
    if score is not None:
        return (score - 1) / 4
    if thumbs is not None:
        return 1.0 if thumbs == "up" else 0.0
    raise UsageError("give thumbs ('up' or 'down') or a score (1-5), or both")


def record_feedback(
    store: Store,
    run_id: str,
    *,
    thumbs: str | None = None,
    score: int | None = None,
    comment: str | None = None,
    by: str | None = None,
) -> Feedback:
    """Record feedback on a run.

    Raises:
        UsageError: the run does not exist, or the feedback is malformed.
    """
    value = satisfaction(thumbs, score)
    record = store.get_run(run_id)
    if record is None:
        raise UsageError(f"run {run_id!r} does not exist; list runs with `keel runs list`")
    item = Feedback(
        id="fb_" + secrets.token_hex(8),
        run_id=run_id,
        agent=record.agent,
        tenant=record.tenant,
        thumbs=thumbs,
        score=score,
        satisfaction=value,
        comment=comment,
        by=by,
        created_at=time.time(),
    )
    with store.engine.begin() as conn:
        conn.execute(feedback.insert().values(**item.to_dict()))
    return item


def list_feedback(
    store: Store, *, run_id: str | None = None, tenant: str | None = None, since: float | None = None
) -> list[Feedback]:
    """Feedback, oldest first, filtered by run, tenant and time."""
    query = sa.select(feedback).order_by(feedback.c.created_at)
    if run_id:
        query = query.where(feedback.c.run_id == run_id)
    if tenant:
        query = query.where(feedback.c.tenant == tenant)
    if since is not None:
        query = query.where(feedback.c.created_at >= since)
    with store.engine.connect() as conn:
        return [Feedback(**dict(r)) for r in conn.execute(query).mappings()]
