"""API keys: random secrets mapped to tenants, stored as SHA-256 hashes only."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa

from ..durable._store import api_keys
from ..exceptions import UsageError

__all__ = ["ApiKey", "KeyRing", "create_key", "hash_key", "list_keys", "revoke_key"]

PREFIX = "keel_"
TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key (never its secret).

    Attributes:
        key_id: the public part of the key, shown in lists and recorded as the decider of approvals.
        tenant: the tenant whose runs the key sees.
        name: a label for people.
        created_at: when it was created (seconds since the epoch).
        revoked_at: when it was revoked, if it was.
    """

    key_id: str
    tenant: str
    name: str | None
    created_at: float
    revoked_at: float | None = None


def hash_key(secret: str) -> str:
    """SHA-256 of a whole key, hex: keys are long random secrets, so a fast hash is the right one."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(engine: sa.Engine, tenant: str, name: str | None = None) -> tuple[ApiKey, str]:
    """Create a key for `tenant`; return it and its secret (shown once, stored only as a hash).

    Raises:
        UsageError: the tenant name is malformed.
    """
    if not TENANT_RE.match(tenant or ""):
        raise UsageError(
            f"tenant {tenant!r} is not valid: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    key_id = secrets.token_hex(6)
    secret = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    key = ApiKey(key_id, tenant, name, time.time())
    with engine.begin() as conn:
        conn.execute(
            api_keys.insert().values(
                key_id=key_id, key_hash=hash_key(secret), tenant=tenant, name=name, created_at=key.created_at
            )
        )
    return key, secret


def list_keys(engine: sa.Engine, tenant: str | None = None) -> list[ApiKey]:
    """Stored keys, oldest first, optionally of one tenant."""
    query = sa.select(api_keys).order_by(api_keys.c.created_at)
    if tenant:
        query = query.where(api_keys.c.tenant == tenant)
    with engine.connect() as conn:
        return [
            ApiKey(r["key_id"], r["tenant"], r["name"], float(r["created_at"]), r["revoked_at"])
            for r in conn.execute(query).mappings()
        ]


def revoke_key(engine: sa.Engine, key_id: str) -> None:
    """Revoke a key; requests with it are refused (within `KeyRing.ttl` seconds on running services).

    Raises:
        UsageError: no such key, or already revoked.
    """
    with engine.begin() as conn:
        done = conn.execute(
            api_keys.update()
            .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )
    if done.rowcount != 1:
        raise UsageError(f"API key {key_id!r} does not exist or is already revoked; list keys with `keel keys list`")


class KeyRing:
    """Looks up keys by hash, remembering answers for `ttl` seconds to keep the database off each request."""

    def __init__(self, engine: sa.Engine, ttl: float = 10.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    def lookup(self, secret: str) -> ApiKey | None:
        """The live key with this secret, or None."""
        if not secret.startswith(PREFIX) or len(secret) > 200:
            return None
        digest = hash_key(secret)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.key_hash == digest)).mappings().first()
        key = None
        if row is not None and row["revoked_at"] is None:
            key = ApiKey(row["key_id"], row["tenant"], row["name"], float(row["created_at"]))
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now, key)
        return key
