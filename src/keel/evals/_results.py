"""Eval results in the database: one row per eval, one per trial, beside the runs they refer to.

The tables are created by numbered migrations recorded in ``keel_eval_schema`` (their own, so the
run tables' migrations and these evolve independently). Each eval row keeps the agent's name,
model, keel version and configuration hash, and the whole report as JSON.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import sqlalchemy as sa

from ..exceptions import UsageError
from ._report import EvalReport

__all__ = ["ResultStore"]

metadata = sa.MetaData()

evals = sa.Table(
    "keel_evals",
    metadata,
    sa.Column("eval_id", sa.String(64), primary_key=True),
    sa.Column("evalset", sa.String(200), nullable=False),
    sa.Column("agent", sa.String(64), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("keel_version", sa.String(40), nullable=False),
    sa.Column("agent_version", sa.String(64), nullable=False),
    sa.Column("config_hash", sa.String(64), nullable=False),
    sa.Column("trials", sa.Integer, nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("pass_rate", sa.Float, nullable=False),
    sa.Column("pass_hat_k", sa.Float, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("report", sa.Text, nullable=False),
    sa.Index("keel_evals_set", "evalset", "started_at"),
)

trials = sa.Table(
    "keel_eval_trials",
    metadata,
    sa.Column("eval_id", sa.String(64), primary_key=True),
    sa.Column("case_id", sa.String(80), primary_key=True),
    sa.Column("trial", sa.Integer, primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("steps", sa.Integer, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("latency_s", sa.Float, nullable=False),
    sa.Column("checks", sa.Text, nullable=False),
)

schema_version = sa.Table(
    "keel_eval_schema",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)

MIGRATIONS: list[list[sa.Table]] = [[evals, trials]]
"""Migration N creates (or alters) these tables; append, never edit, to change the schema."""


class ResultStore:
    """Reads and writes eval results in a SQLite or PostgreSQL database.

    Args:
        url: the database URL (the same one the runs are kept in, usually).
    """

    def __init__(self, url: str) -> None:
        from ..durable import make_engine

        self.url = url
        self.engine = make_engine(url)

    def close(self) -> None:
        """Release the database."""
        self.engine.dispose()

    def migrate(self) -> int:
        """Apply pending migrations; return the schema version now in force."""
        with self.engine.begin() as conn:
            schema_version.create(conn, checkfirst=True)
            current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
            for number, tables in enumerate(MIGRATIONS, start=1):
                if number <= current:
                    continue
                for table in tables:
                    table.create(conn, checkfirst=True)
                conn.execute(schema_version.insert().values(version=number, applied_at=time.time()))
                current = number
        return current

    def save(self, report: EvalReport) -> str:
        """Store the report and its trials; return the new eval id."""
        self.migrate()
        eval_id = f"eval_{time.time_ns() // 1000:014x}{uuid.uuid4().hex[:8]}"
        totals = report.totals()
        with self.engine.begin() as conn:
            conn.execute(
                evals.insert().values(
                    eval_id=eval_id,
                    evalset=report.evalset,
                    agent=report.agent,
                    model=report.model,
                    keel_version=report.keel_version,
                    agent_version=report.agent_version,
                    config_hash=report.config_hash,
                    trials=report.trials,
                    seed=report.seed,
                    pass_rate=totals["pass_rate"],
                    pass_hat_k=totals["pass_hat_k"],
                    cost_usd=totals["cost_usd"],
                    started_at=report.started_at,
                    report=json.dumps(report.to_dict(), default=str),
                )
            )
            rows = [
                {
                    "eval_id": eval_id,
                    "case_id": t.case_id,
                    "trial": t.trial,
                    "run_id": t.run_id,
                    "passed": t.passed,
                    "status": t.status,
                    "steps": t.steps,
                    "cost_usd": t.cost_usd,
                    "latency_s": t.latency_s,
                    "checks": json.dumps([c.to_dict() for c in t.checks]),
                }
                for case in report.cases
                for t in case.trials
            ]
            if rows:
                conn.execute(trials.insert(), rows)
        return eval_id

    def load(self, eval_id: str) -> EvalReport:
        """A stored report.

        Raises:
            UsageError: no such eval.
        """
        self.migrate()
        with self.engine.connect() as conn:
            text = conn.execute(sa.select(evals.c.report).where(evals.c.eval_id == eval_id)).scalar()
        if text is None:
            raise UsageError(f"eval {eval_id!r} does not exist in {self.url}")
        return EvalReport.from_dict(json.loads(text))

    def history(self, evalset: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Stored evals, newest first: id, set, agent, model, config hash, pass rate, pass^k, cost."""
        self.migrate()
        query = sa.select(*[c for c in evals.c if c.name != "report"]).order_by(evals.c.started_at.desc()).limit(limit)
        if evalset is not None:
            query = query.where(evals.c.evalset == evalset)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def trial_rows(self, eval_id: str) -> list[dict[str, Any]]:
        """The stored trials of one eval, in case and trial order."""
        with self.engine.connect() as conn:
            query = sa.select(trials).where(trials.c.eval_id == eval_id).order_by(trials.c.case_id, trials.c.trial)
            return [dict(row) for row in conn.execute(query).mappings()]
