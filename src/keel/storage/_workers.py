"""Worker heartbeats (``keel_workers``): who is alive, for the sweeper that hands a dead worker's runs on."""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

from ._tables import workers

__all__ = ["WorkerRows"]


class WorkerRows:
    """Worker heartbeats, through `engine` (part of `Store`)."""

    engine: sa.Engine

    def heartbeat(self, worker_id: str, info: dict[str, Any]) -> None:
        """Record that a worker is alive."""
        now = time.time()
        with self.engine.begin() as conn:
            updated = conn.execute(
                workers.update().where(workers.c.worker_id == worker_id).values(heartbeat_at=now, info=json.dumps(info))
            )
            if updated.rowcount == 0:
                conn.execute(
                    workers.insert().values(
                        worker_id=worker_id, started_at=now, heartbeat_at=now, info=json.dumps(info)
                    )
                )

    def workers_seen(self) -> dict[str, float]:
        """Every known worker and its last heartbeat."""
        with self.engine.connect() as conn:
            return {w: float(h) for w, h in conn.execute(sa.select(workers.c.worker_id, workers.c.heartbeat_at))}

    def worker_info(self, worker_id: str) -> dict[str, Any] | None:
        """What a worker recorded about itself (host, pid), or None if unknown."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(workers.c.info).where(workers.c.worker_id == worker_id)).first()
        return None if row is None else dict(json.loads(row[0] or "{}"))

    def forget_worker(self, worker_id: str, seen: float | None = None) -> bool:
        """Remove a worker's row; True if this call removed it (only one sweeper wins).

        With `seen`, only while its last heartbeat is still that one: a worker restarted under the same id
        since it was judged dead keeps its row.
        """
        query = workers.delete().where(workers.c.worker_id == worker_id)
        if seen is not None:
            query = query.where(workers.c.heartbeat_at == seen)
        with self.engine.begin() as conn:
            return conn.execute(query).rowcount == 1
