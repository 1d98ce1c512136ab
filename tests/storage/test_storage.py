"""keel's tables: one metadata, one migration ledger, old databases opened as they are, and one owner."""

from __future__ import annotations

import ast
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import keel
from keel import storage
from keel.storage._tables import metadata

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SRC = Path(keel.__file__).parent

# Modules outside storage/ and durable/ allowed to import a table: none (the journal's readers live in
# `keel.storage._journal_events`).
JOURNAL_READERS: dict[str, set[str]] = {}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'keel.db'}"
        return
    name = f"keel_storage_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_one_migration_list_creates_every_keel_table(url: str) -> None:
    engine = storage.make_engine(url)
    try:
        assert storage.migrate(engine) == len(storage.MIGRATIONS)
        created = {t for t in sa.inspect(engine).get_table_names() if t.startswith("keel_")}
        assert created == set(metadata.tables)
        assert {"keel_runs", "keel_counters", "keel_evals", "keel_eval_trials", "keel_alerts"} <= created
        assert storage.migrate(engine) == len(storage.MIGRATIONS)  # nothing left to do
    finally:
        engine.dispose()


# What the releases before one ledger wrote: keel's ledger at migration 4, the eval tables under their own.
OLD_LAYOUT = [
    "CREATE TABLE keel_schema (version INTEGER PRIMARY KEY, applied_at FLOAT NOT NULL)",
    "CREATE TABLE keel_eval_schema (version INTEGER PRIMARY KEY, applied_at FLOAT NOT NULL)",
    "INSERT INTO keel_eval_schema VALUES (1, 1.0)",
    "CREATE TABLE keel_evals (eval_id VARCHAR(64) PRIMARY KEY, evalset VARCHAR(200) NOT NULL,"
    " agent VARCHAR(64) NOT NULL, model VARCHAR(200) NOT NULL, keel_version VARCHAR(40) NOT NULL,"
    " agent_version VARCHAR(64) NOT NULL, config_hash VARCHAR(64) NOT NULL, trials INTEGER NOT NULL,"
    " seed INTEGER NOT NULL, pass_rate FLOAT NOT NULL, pass_hat_k FLOAT NOT NULL, cost_usd FLOAT NOT NULL,"
    " started_at FLOAT NOT NULL, report TEXT NOT NULL)",
    "CREATE TABLE keel_eval_trials (eval_id VARCHAR(64), case_id VARCHAR(80), trial INTEGER,"
    " run_id VARCHAR(64) NOT NULL, passed BOOLEAN NOT NULL, status VARCHAR(20) NOT NULL, steps INTEGER NOT NULL,"
    " cost_usd FLOAT NOT NULL, latency_s FLOAT NOT NULL, checks TEXT NOT NULL, PRIMARY KEY (eval_id, case_id, trial))",
]


def test_a_database_with_the_eval_tables_under_their_own_ledger_opens_and_keeps_its_evals(url: str) -> None:
    from keel.evals import ResultStore

    engine = storage.make_engine(url)
    for table in metadata.sorted_tables:
        if table.name not in ("keel_schema", "keel_evals", "keel_eval_trials"):
            table.create(engine)
    with engine.begin() as conn:
        for statement in OLD_LAYOUT:
            conn.execute(sa.text(statement))
        for number in (1, 2, 3, 4):
            conn.execute(sa.text("INSERT INTO keel_schema VALUES (:n, 1.0)"), {"n": number})
        conn.execute(
            sa.text(
                "INSERT INTO keel_evals VALUES ('eval_old', 'support', 'support', 'scripted', '0.1', 'v1', 'abc', 1, 0,"
                " 1.0, 1.0, 0.0, 5.0, :report)"
            ),
            {"report": json.dumps({"evalset": "support"})},
        )
    engine.dispose()

    results = ResultStore(url)
    try:
        assert results.migrate() == len(storage.MIGRATIONS)
        assert [row["eval_id"] for row in results.history()] == ["eval_old"]
        with results.engine.connect() as conn:  # keel's ledger now records the eval tables' migration
            assert conn.execute(sa.text("SELECT max(version) FROM keel_schema")).scalar() == len(storage.MIGRATIONS)
            assert conn.execute(sa.text("SELECT version FROM keel_eval_schema")).scalars().all() == [1]
    finally:
        results.close()


def test_the_durable_package_shares_the_stores_records() -> None:
    from keel import durable

    assert durable.Store is storage.Store and durable.Approval is storage.Approval
    assert durable.RunRecord is storage.RunRecord and durable.make_engine is storage.make_engine
    for dead in ("finish_segment", "record_step", "mark_started", "complete_started"):
        assert not hasattr(storage.Store, dead), f"Store.{dead} has no callers"


def _imports(path: Path) -> set[str]:
    """The keel modules `path` imports (relative imports resolved, type-only and lazy ones included)."""
    package = path.relative_to(SRC.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m.removeprefix("keel.") for m in found if m.startswith("keel.") or m == "keel"}


def test_no_module_outside_storage_and_durable_imports_a_table_or_a_private_durable_module() -> None:
    offenders = {}
    for path in sorted(SRC.rglob("*.py")):
        name = path.relative_to(SRC).as_posix()
        if name.startswith(("storage/", "durable/")):
            continue
        reached = {
            m
            for m in _imports(path)
            if m.startswith(("storage._tables", "durable._")) and m not in JOURNAL_READERS.get(name, set())
        }
        if reached:
            offenders[name] = sorted(reached)
    assert offenders == {}
