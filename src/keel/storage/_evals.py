"""Eval results (``keel_evals``, ``keel_eval_trials``): one row per eval, one per trial, beside the runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from ._tables import eval_trials, evals

__all__ = ["eval_history", "eval_report", "eval_trial_rows", "insert_eval"]


def insert_eval(engine: sa.Engine, row: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]) -> None:
    """Store one eval's row (its report as JSON text) and its trials' rows, in one transaction."""
    with engine.begin() as conn:
        conn.execute(evals.insert().values(**row))
        if trials:
            conn.execute(eval_trials.insert(), [dict(t) for t in trials])


def eval_report(engine: sa.Engine, eval_id: str) -> str | None:
    """The stored report (JSON text) of one eval, or None."""
    with engine.connect() as conn:
        text = conn.execute(sa.select(evals.c.report).where(evals.c.eval_id == eval_id)).scalar()
    return None if text is None else str(text)


def eval_history(engine: sa.Engine, evalset: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Stored evals, newest first, every column but the report."""
    query = sa.select(*[c for c in evals.c if c.name != "report"]).order_by(evals.c.started_at.desc()).limit(limit)
    if evalset is not None:
        query = query.where(evals.c.evalset == evalset)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def eval_trial_rows(engine: sa.Engine, eval_id: str) -> list[dict[str, Any]]:
    """The stored trials of one eval, in case and trial order."""
    query = (
        sa.select(eval_trials)
        .where(eval_trials.c.eval_id == eval_id)
        .order_by(eval_trials.c.case_id, eval_trials.c.trial)
    )
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]
