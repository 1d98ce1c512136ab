"""Eval results in the database: one row per eval, one per trial, beside the runs they refer to.

The tables (``keel_evals``, ``keel_eval_trials``) are declared in `keel.storage` and created by its one
migration ledger, with every other keel table. Each eval row keeps the agent's name, model, keel
version and configuration hash, and the whole report as JSON.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from .. import storage
from ..exceptions import UsageError
from ._report import EvalReport

__all__ = ["ResultStore"]


class ResultStore:
    """Reads and writes eval results in a SQLite or PostgreSQL database.

    Args:
        url: the database URL (the same one the runs are kept in, usually).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = storage.make_engine(url)

    def close(self) -> None:
        """Release the database."""
        self.engine.dispose()

    def migrate(self) -> int:
        """Apply pending migrations (of every keel table); return the schema version now in force."""
        return storage.migrate(self.engine)

    def save(self, report: EvalReport) -> str:
        """Store the report and its trials; return the new eval id."""
        self.migrate()
        eval_id = f"eval_{time.time_ns() // 1000:014x}{uuid.uuid4().hex[:8]}"
        totals = report.totals()
        row = {
            "eval_id": eval_id,
            "evalset": report.evalset,
            "agent": report.agent,
            "model": report.model,
            "keel_version": report.keel_version,
            "agent_version": report.agent_version,
            "config_hash": report.config_hash,
            "trials": report.trials,
            "seed": report.seed,
            "pass_rate": totals["pass_rate"],
            "pass_hat_k": totals["pass_hat_k"],
            "cost_usd": totals["cost_usd"],
            "started_at": report.started_at,
            "report": json.dumps(report.to_dict(), default=str),
        }
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
        storage.insert_eval(self.engine, row, rows)
        return eval_id

    def load(self, eval_id: str) -> EvalReport:
        """A stored report.

        Raises:
            UsageError: no such eval.
        """
        self.migrate()
        text = storage.eval_report(self.engine, eval_id)
        if text is None:
            raise UsageError(f"eval {eval_id!r} does not exist in {self.url}")
        return EvalReport.from_dict(json.loads(text))

    def history(self, evalset: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Stored evals, newest first: id, set, agent, model, config hash, pass rate, pass^k, cost."""
        self.migrate()
        return storage.eval_history(self.engine, evalset, limit)

    def trial_rows(self, eval_id: str) -> list[dict[str, Any]]:
        """The stored trials of one eval, in case and trial order."""
        return storage.eval_trial_rows(self.engine, eval_id)
