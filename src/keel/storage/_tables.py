"""Every keel table, declared on one SQLAlchemy `metadata`.

keel's tables live beside DBOS's in one database (SQLite or PostgreSQL):

* the run index (``keel_runs``), the step journal (``keel_steps``), requests for a person's decision
  (``keel_approvals``) and worker heartbeats (``keel_workers``), written by `keel.durable`;
* the policies' shared counters (``keel_counters``, `keel.policies.budget` and `keel.policies.ratelimit`);
* the HTTP service's API keys (``keel_api_keys``), users' feedback (``keel_feedback``) and anomaly
  alerts (``keel_alerts``);
* eval results (``keel_evals``, ``keel_eval_trials``);
* the migration ledger itself (``keel_schema``).

The memory stores keep their own tables on their own connections (see `keel.storage._migrations`).
Only `keel.storage` and `keel.durable` use these tables; everything else goes through the read model.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "alerts",
    "api_keys",
    "approvals",
    "counters",
    "eval_trials",
    "evals",
    "feedback",
    "metadata",
    "runs",
    "schema_version",
    "steps",
    "workers",
]

metadata = sa.MetaData()

# -- runs: the index, the journal, decisions for a person, workers ----------------------------------
runs = sa.Table(
    "keel_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("agent", sa.String(64), nullable=False),
    sa.Column("task", sa.Text, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("segment", sa.Integer, nullable=False, default=0),
    sa.Column("tenant", sa.String(64), nullable=True),
    sa.Column("metadata", sa.Text, nullable=False, default="{}"),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("error_type", sa.String(40), nullable=True),
    sa.Column("steps", sa.Integer, nullable=False, default=0),
    sa.Column("usage", sa.Text, nullable=False, default="{}"),
    sa.Column("parent_run", sa.String(64), nullable=True),
    sa.Column("worker", sa.String(64), nullable=True),
    sa.Column("app_version", sa.String(64), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("keel_runs_status", "status", "updated_at"),
    sa.Index("keel_runs_created", "created_at"),
)

steps = sa.Table(
    "keel_steps",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # started | done
    sa.Column("output", sa.Text, nullable=True),
)

approvals = sa.Table(
    "keel_approvals",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # approval | interrupted | pause
    sa.Column("tool", sa.String(64), nullable=True),
    sa.Column("arguments", sa.Text, nullable=True),
    sa.Column("arguments_hash", sa.String(64), nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # pending | approved | rejected | expired | decided
    sa.Column("requested_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("on_expiry", sa.String(20), nullable=True),
    sa.Column("decision", sa.Text, nullable=True),  # JSON: what the person chose, for the run to read
    sa.Column("decided_by", sa.String(128), nullable=True),
    sa.Column("decided_at", sa.Float, nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("edited_arguments", sa.Text, nullable=True),
    sa.Column("edited_hash", sa.String(64), nullable=True),
    sa.Index("keel_approvals_pending", "status", "expires_at"),
    sa.Index("keel_approvals_run", "run_id"),
)

workers = sa.Table(
    "keel_workers",
    metadata,
    sa.Column("worker_id", sa.String(64), primary_key=True),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    sa.Column("info", sa.Text, nullable=False, default="{}"),
)

# -- policies: shared counters (spend per day, requests and tokens per minute) ----------------------
counters = sa.Table(
    "keel_counters",
    metadata,
    sa.Column("scope", sa.String(200), primary_key=True),
    sa.Column("window", sa.String(32), primary_key=True),
    sa.Column("used", sa.Float, nullable=False, default=0.0),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# -- the HTTP service and the observers: API keys, feedback, alerts ---------------------------------
api_keys = sa.Table(
    "keel_api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),  # SHA-256 of the whole key
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("name", sa.String(128), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
)

feedback = sa.Table(
    "keel_feedback",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("tenant", sa.String(64), nullable=True),
    sa.Column("agent", sa.String(64), nullable=False),
    sa.Column("thumbs", sa.String(4), nullable=True),  # up | down
    sa.Column("score", sa.Integer, nullable=True),  # 1..5
    sa.Column("satisfaction", sa.Float, nullable=False),  # 0..1, from thumbs or score
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("by", sa.String(128), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("keel_feedback_run", "run_id"),
    sa.Index("keel_feedback_tenant", "tenant", "created_at"),
)

alerts = sa.Table(
    "keel_alerts",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # from key and window: every process raises the same id
    sa.Column("key", sa.String(300), nullable=False),
    sa.Column("tenant", sa.String(64), nullable=True),
    sa.Column("agent", sa.String(64), nullable=False),
    sa.Column("metric", sa.String(40), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("baseline", sa.Float, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("window_end", sa.Float, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("raised_at", sa.Float, nullable=False),
    sa.Column("resolved_at", sa.Float, nullable=True),
    sa.Index("keel_alerts_active", "key", "resolved_at"),
)

# -- evals: one row per eval, one per trial ----------------------------------------------------------
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

eval_trials = sa.Table(
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

# -- the migration ledger ---------------------------------------------------------------------------
schema_version = sa.Table(
    "keel_schema",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)
