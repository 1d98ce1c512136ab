"""The SQLAlchemy engine of a keel database URL: SQLite (WAL) or PostgreSQL (psycopg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..exceptions import ConfigError

__all__ = ["make_engine", "sqlite_engine"]


def sqlite_engine(url: str) -> sa.Engine:
    """A SQLAlchemy engine for SQLite in WAL mode with synchronous=NORMAL, creating the file's folder."""
    path = url.removeprefix("sqlite:///")
    if path and path != ":memory:":
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine


def make_engine(url: str) -> sa.Engine:
    """Build the database engine for `url`.

    Raises:
        ConfigError: the URL is not a SQLite or PostgreSQL URL.
    """
    if url.startswith("sqlite:///"):
        return sqlite_engine(url)
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        pg = "postgresql+psycopg://" + url.split("://", 1)[1]
        return sa.create_engine(pg, pool_size=20, max_overflow=20, pool_pre_ping=True)
    raise ConfigError(
        f"database URL {url!r} is not supported; use sqlite:///path/to/keel.db, postgresql://user@host/db, "
        "or 'memory' for runs that keep nothing"
    )
