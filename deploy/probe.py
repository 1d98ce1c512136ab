"""Kubernetes probe for a keel worker: exit 0 while this worker's heartbeat in the database is fresh.

Every keel process records a heartbeat in the ``keel_workers`` table every 5 seconds. Other workers'
sweepers treat a worker whose heartbeat is older than 30 seconds as dead and hand its runs to the
queue, so the probe fails past the same age: a worker the others have given up on is restarted.

Usage (inside the worker's container, same KEEL_DATABASE_URL and KEEL_WORKER_ID):
    python deploy/probe.py [MAX_AGE_SECONDS]
"""

from __future__ import annotations

import sys
import time

from keel.config import settings
from keel.durable import Store, make_engine

DEFAULT_MAX_AGE = 30.0


def main(argv: list[str]) -> int:
    """Print the heartbeat's age and return the exit code: 0 fresh, 1 stale or missing."""
    max_age = float(argv[0]) if argv else DEFAULT_MAX_AGE
    config = settings()
    if not config.worker_id:
        print("KEEL_WORKER_ID is not set; a worker probe needs the worker's stable id", file=sys.stderr)
        return 1
    engine = make_engine(config.database_url)
    try:
        beat = Store(engine).workers_seen().get(config.worker_id)
    finally:
        engine.dispose()
    if beat is None:
        print(f"worker {config.worker_id} has no heartbeat in the database yet", file=sys.stderr)
        return 1
    age = time.time() - beat
    print(f"worker {config.worker_id}: last heartbeat {age:.1f}s ago (limit {max_age:.0f}s)")
    return 0 if age <= max_age else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
