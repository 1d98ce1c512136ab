"""API keys: random secrets mapped to tenants, stored as SHA-256 hashes only."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time

import sqlalchemy as sa

from ..exceptions import UsageError
from ..storage import ApiKey, insert_key, key_by_hash, select_keys, set_key_revoked

__all__ = ["ApiKey", "KeyRing", "create_key", "hash_key", "list_keys", "revoke_key"]

PREFIX = "keel_"
TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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
    insert_key(engine, key, hash_key(secret))
    return key, secret


def list_keys(engine: sa.Engine, tenant: str | None = None) -> list[ApiKey]:
    """Stored keys, oldest first, optionally of one tenant."""
    return select_keys(engine, tenant)


def revoke_key(engine: sa.Engine, key_id: str) -> None:
    """Revoke a key; requests with it are refused (within `KeyRing.ttl` seconds on running services).

    Raises:
        UsageError: no such key, or already revoked.
    """
    if not set_key_revoked(engine, key_id):
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
        stored = key_by_hash(self.engine, digest)
        key = None
        if stored is not None and stored.revoked_at is None:
            key = ApiKey(stored.key_id, stored.tenant, stored.name, stored.created_at)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now, key)
        return key
