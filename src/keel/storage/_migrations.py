"""The migration ledger: one ordered list of migrations for every keel table, recorded in ``keel_schema``.

Migration N is applied once per database, in order, and its number is recorded in ``keel_schema``; to
change the schema, append a migration, never edit one (a database records numbers, so the numbers of
the migrations below are fixed for good). The tables in `keel.storage._tables` are the current schema:
a new database gets each column from the migration that creates its table, and the later migrations
that alter it find nothing to do; an older database gets them from the later migrations.

Databases written before this ledger held the eval tables kept their own ledger, ``keel_eval_schema``
(with its migration 1 creating ``keel_evals`` and ``keel_eval_trials``). Migration 5 creates those
tables only where they are missing, so such a database opens unchanged; ``keel_eval_schema`` is left
in place and no longer read.

The memory stores' tables are not on this ledger, because they are not on this connection:
`keel.memory.sqlite_vec` opens its file through apsw (the standard ``sqlite3`` of some builds cannot
load the sqlite-vec extension), in a file of its own by default; `keel.memory.pgvector` talks to
PostgreSQL through psycopg, often on a database of its own, and needs the ``vector`` extension that a
keel database does not. Both tables' shapes also depend on the vector size, which only the store knows
when it opens. Each store creates its tables in one transaction when it opens and records the vector
size in ``keel_memory_settings``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa

from ._tables import alerts, api_keys, approvals, counters, eval_trials, evals, feedback, runs, schema_version, steps
from ._tables import workers as workers_table

__all__ = ["MIGRATIONS", "Migration", "migrate"]


def _add_run_app_version(conn: sa.Connection) -> None:
    """Runs remember the application version that started them, so every segment is queued under it."""
    if "app_version" not in {c["name"] for c in sa.inspect(conn).get_columns("keel_runs")}:
        conn.execute(sa.text("ALTER TABLE keel_runs ADD COLUMN app_version VARCHAR(64)"))


Migration = list[sa.Table] | Callable[[sa.Connection], None]
MIGRATIONS: list[Migration] = [
    # 1: the run index, the journal, decisions for a person, worker heartbeats
    [runs, steps, approvals, workers_table],
    # 2: the application version that started a run
    _add_run_app_version,
    # 3: the policies' shared counters
    [counters],
    # 4: the HTTP service: API keys (hashed) mapped to tenants; users' feedback on runs; anomaly alerts
    [api_keys, feedback, alerts],
    # 5: eval results (kept under ``keel_eval_schema`` before: created here only where missing)
    [evals, eval_trials],
]
"""Migration N creates these tables (where missing), or alters the schema; append, never edit."""


def migrate(engine: sa.Engine) -> int:
    """Apply the migrations `engine`'s database has not recorded; return the schema version now in force."""
    with engine.begin() as conn:
        schema_version.create(conn, checkfirst=True)
        current = conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0
        for number, migration in enumerate(MIGRATIONS, start=1):
            if number <= current:
                continue
            if callable(migration):
                migration(conn)
            else:
                for table in migration:
                    table.create(conn, checkfirst=True)
            conn.execute(schema_version.insert().values(version=number, applied_at=time.time()))
            current = number
    return int(current)
