"""Users' satisfaction with runs: thumbs, a 1-5 score and a comment, kept beside the run.

Feedback feeds the satisfaction metrics (`keel.observe.metrics`) and can be exported into eval sets
(`list_feedback`).
"""

from __future__ import annotations

import secrets
import time

from ..exceptions import UsageError
from ..storage import Feedback, Store, insert_feedback, select_feedback

__all__ = ["Feedback", "list_feedback", "record_feedback", "satisfaction"]


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
    insert_feedback(store.engine, item)
    return item


def list_feedback(
    store: Store, *, run_id: str | None = None, tenant: str | None = None, since: float | None = None
) -> list[Feedback]:
    """Feedback, oldest first, filtered by run, tenant and time."""
    return select_feedback(store.engine, run_id=run_id, tenant=tenant, since=since)
