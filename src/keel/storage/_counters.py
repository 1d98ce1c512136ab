"""Shared counters (``keel_counters``): spend per day, requests and tokens per minute, per scope.

A reservation is one conditional ``UPDATE ... WHERE used + amount <= cap`` per scope, all scopes in one
transaction, so two workers can never both take the last of a cap: PostgreSQL re-checks the condition
on the locked row, and SQLite serialises writers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa

from ._database import make_engine
from ._migrations import migrate
from ._tables import counters

__all__ = ["Counters"]

C = TypeVar("C", bound="Counters")

_TAKE = (
    counters.update()
    .where(
        counters.c.scope == sa.bindparam("p_scope"),
        counters.c.window == sa.bindparam("p_window"),
        counters.c.used + sa.bindparam("p_amount") <= sa.bindparam("p_cap"),
    )
    .values(used=counters.c.used + sa.bindparam("p_amount"), updated_at=sa.bindparam("p_now"))
)
_ADJUST = (
    counters.update()
    .where(counters.c.scope == sa.bindparam("p_scope"), counters.c.window == sa.bindparam("p_window"))
    .values(used=counters.c.used + sa.bindparam("p_amount"), updated_at=sa.bindparam("p_now"))
)


class Counters:
    """Counters in one database, shared by every process that opens it.

    Args:
        url: the keel database URL (SQLite or PostgreSQL); its migrations are applied.
    """

    _open: ClassVar[dict[str, Any]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        migrate(self.engine)
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        self._ensure = insert(counters).on_conflict_do_nothing()

    @classmethod
    def for_url(cls: type[C], url: str) -> C:
        """The process's counters on `url` (one engine per database)."""
        with cls._lock:
            found = cls._open.get(url)
            if not isinstance(found, cls):
                found = cls._open[url] = cls(url)
            return found

    def take(
        self, window: str, amount: float, caps: Sequence[tuple[str, float]], amounts: Sequence[float] | None = None
    ) -> str | None:
        """Add `amount` (or each scope's entry of `amounts`) to each scope's counter unless one goes over.

        Returns:
            None when taken; else the first scope that would go over (nothing is taken then).
        """
        now = time.time()
        each = list(amounts) if amounts is not None else [amount] * len(caps)
        with self.engine.begin() as conn:
            for (scope, cap), value in zip(caps, each, strict=True):
                conn.execute(self._ensure, {"scope": scope, "window": window, "used": 0.0, "updated_at": now})
                done = conn.execute(
                    _TAKE, {"p_scope": scope, "p_window": window, "p_amount": value, "p_cap": cap, "p_now": now}
                )
                if done.rowcount != 1:
                    conn.rollback()
                    return scope
        return None

    def adjust(self, window: str, amount: float, scopes: Sequence[str]) -> None:
        """Add `amount` (negative to give back) to each scope's counter in `window`."""
        now = time.time()
        with self.engine.begin() as conn:
            for scope in scopes:
                conn.execute(_ADJUST, {"p_scope": scope, "p_window": window, "p_amount": amount, "p_now": now})

    def used(self, scope: str, window: str) -> float:
        """The counter's value (0 when never touched)."""
        query = sa.select(counters.c.used).where(counters.c.scope == scope, counters.c.window == window)
        with self.engine.connect() as conn:
            return float(conn.execute(query).scalar() or 0.0)
