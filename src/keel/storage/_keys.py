"""API keys of the HTTP service (``keel_api_keys``): each stored as the SHA-256 of its secret only."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from ._tables import api_keys

__all__ = ["ApiKey", "insert_key", "key_by_hash", "select_keys", "set_key_revoked"]


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


def insert_key(engine: sa.Engine, key: ApiKey, key_hash: str) -> None:
    """Store a new key under the hash of its secret."""
    with engine.begin() as conn:
        conn.execute(
            api_keys.insert().values(
                key_id=key.key_id, key_hash=key_hash, tenant=key.tenant, name=key.name, created_at=key.created_at
            )
        )


def select_keys(engine: sa.Engine, tenant: str | None = None) -> list[ApiKey]:
    """Stored keys, oldest first, optionally of one tenant."""
    query = sa.select(api_keys).order_by(api_keys.c.created_at)
    if tenant:
        query = query.where(api_keys.c.tenant == tenant)
    with engine.connect() as conn:
        return [
            ApiKey(r["key_id"], r["tenant"], r["name"], float(r["created_at"]), r["revoked_at"])
            for r in conn.execute(query).mappings()
        ]


def set_key_revoked(engine: sa.Engine, key_id: str) -> bool:
    """Revoke a live key; False if there is no such key or it is already revoked."""
    with engine.begin() as conn:
        done = conn.execute(
            api_keys.update()
            .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )
    return bool(done.rowcount == 1)


def key_by_hash(engine: sa.Engine, key_hash: str) -> ApiKey | None:
    """The key stored under this hash (revoked or not), or None."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(api_keys).where(api_keys.c.key_hash == key_hash)).mappings().first()
    if row is None:
        return None
    return ApiKey(row["key_id"], row["tenant"], row["name"], float(row["created_at"]), row["revoked_at"])
