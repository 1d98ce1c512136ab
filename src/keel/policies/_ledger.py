"""Shared counters in the keel database: spend per day, requests and tokens per minute.

Every process that runs runs of one database shares them. A reservation is one conditional
``UPDATE ... WHERE used + amount <= cap`` per scope, all scopes in one transaction, so two workers
can never both take the last of a cap: PostgreSQL re-checks the condition on the locked row, and
SQLite serialises writers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import sqlalchemy as sa

from ..exceptions import ConfigError

__all__ = ["Ledger", "RedisLedger", "counters"]

_meta = sa.MetaData()

counters = sa.Table(
    "keel_counters",
    _meta,
    sa.Column("scope", sa.String(200), primary_key=True),
    sa.Column("window", sa.String(32), primary_key=True),
    sa.Column("used", sa.Float, nullable=False, default=0.0),
    sa.Column("updated_at", sa.Float, nullable=False),
)

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


class Ledger:
    """Counters in one database, shared by every process that opens it.

    Args:
        url: the keel database URL (SQLite or PostgreSQL); its migrations are applied.
    """

    _open: dict[str, Ledger] = {}
    _lock = threading.Lock()

    def __init__(self, url: str) -> None:
        from ..durable import Store, make_engine

        self.url = url
        self.engine = make_engine(url)
        Store(self.engine).migrate()
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        self._ensure = insert(counters).on_conflict_do_nothing()

    @classmethod
    def for_url(cls, url: str) -> Ledger:
        """The process's ledger on `url` (one engine per database)."""
        with cls._lock:
            ledger = cls._open.get(url)
            if ledger is None:
                ledger = cls._open[url] = cls(url)
            return ledger

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


_TAKE_LUA = """
-- ARGV: n amounts, then n caps, then the ttl
local n = #KEYS
local ttl = tonumber(ARGV[2 * n + 1])
for i, key in ipairs(KEYS) do
  local used = tonumber(redis.call('GET', key) or '0')
  if used + tonumber(ARGV[i]) > tonumber(ARGV[n + i]) then return i end
end
for i, key in ipairs(KEYS) do
  redis.call('INCRBYFLOAT', key, ARGV[i])
  redis.call('EXPIRE', key, ttl)
end
return 0
"""


class RedisLedger:
    """The same counters in Redis: one Lua script takes every scope atomically.

    Args:
        url: a Redis URL, e.g. ``redis://127.0.0.1:6379/0``.
        ttl: seconds a counter lives after its last change; default one day.
    """

    _open: dict[str, RedisLedger] = {}
    _lock = threading.Lock()

    def __init__(self, url: str, ttl: int = 86_400) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - the extra is in dev
            raise ConfigError("Redis counters need the 'redis' extra: pip install 'keel[redis]'") from exc
        self.url, self.ttl = url, ttl
        self.client = redis.Redis.from_url(url)
        self._take = self.client.register_script(_TAKE_LUA)

    @classmethod
    def for_url(cls, url: str) -> RedisLedger:
        """The process's client for `url`."""
        with cls._lock:
            ledger = cls._open.get(url)
            if ledger is None:
                ledger = cls._open[url] = cls(url)
            return ledger

    @staticmethod
    def _key(scope: str, window: str) -> str:
        return f"keel:{scope}:{window}"

    def take(
        self, window: str, amount: float, caps: Sequence[tuple[str, float]], amounts: Sequence[float] | None = None
    ) -> str | None:
        """As `Ledger.take`."""
        keys = [self._key(scope, window) for scope, _ in caps]
        each = list(amounts) if amounts is not None else [amount] * len(caps)
        over = int(self._take(keys=keys, args=[*each, *(cap for _, cap in caps), self.ttl]))
        return None if over == 0 else caps[over - 1][0]

    def adjust(self, window: str, amount: float, scopes: Sequence[str]) -> None:
        """As `Ledger.adjust`."""
        with self.client.pipeline() as pipe:
            for scope in scopes:
                pipe.incrbyfloat(self._key(scope, window), amount)
            pipe.execute()

    def used(self, scope: str, window: str) -> float:
        """As `Ledger.used`."""
        value = self.client.get(self._key(scope, window))
        return float(value) if value is not None else 0.0
