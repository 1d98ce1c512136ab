"""Chaos fixtures: a keel database and a separate side-effect ledger database, on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: crash and fault injection (workers killed with SIGKILL)")


@dataclass(frozen=True)
class ChaosDatabases:
    backend: str
    keel_url: str
    ledger_url: str


@pytest.fixture(params=["sqlite", "postgresql"])
def chaos_databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChaosDatabases]:
    from keel.durable import DurableEngine

    if request.param == "sqlite":
        yield ChaosDatabases("sqlite", f"sqlite:///{tmp_path / 'keel.db'}", f"sqlite:///{tmp_path / 'ledger.db'}")
        DurableEngine.close()
        return
    names = [f"keel_chaos_{uuid.uuid4().hex[:10]}", f"keel_ledger_{uuid.uuid4().hex[:10]}"]
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        keel_url, ledger_url = (f"postgresql://postgres@127.0.0.1:5432/{name}" for name in names)
        yield ChaosDatabases("postgresql", keel_url, ledger_url)
    finally:
        DurableEngine.close()
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
