"""Shared counters: spend per day, requests and tokens per minute.

Every process that runs runs of one database shares them: `Ledger` keeps them in the keel database
(``keel_counters``, declared and migrated in `keel.storage`), `RedisLedger` in Redis. A reservation takes
every scope or none, so two workers can never both take the last of a cap.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ..exceptions import ConfigError
from ..storage import Counters

__all__ = ["Ledger", "RedisLedger"]


class Ledger(Counters):
    """Counters in one database, shared by every process that opens it.

    Args:
        url: the keel database URL (SQLite or PostgreSQL); its migrations are applied.
    """


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
