"""`Store`: keel's tables read and written through one SQLAlchemy engine (SQLite or PostgreSQL)."""

from __future__ import annotations

import sqlalchemy as sa

from ._approvals import ApprovalRows
from ._migrations import migrate
from ._runs import RunIndex
from ._workers import WorkerRows

__all__ = ["Store"]


class Store(RunIndex, ApprovalRows, WorkerRows):
    """The run index, the journal, approvals and worker heartbeats of one database.

    Args:
        engine: the database (see `make_engine`).
        app_version: the application version recorded on the runs this store creates.
    """

    def __init__(self, engine: sa.Engine, app_version: str | None = None) -> None:
        self.engine = engine
        self.app_version = app_version
        """The application version recorded on the runs this store creates."""
        RunIndex.__init__(self)

    def migrate(self) -> int:
        """Apply pending migrations; return the schema version now in force."""
        return migrate(self.engine)

    def ping(self) -> None:
        """Reach the database once.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: it cannot be reached.
        """
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
