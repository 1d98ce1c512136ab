"""Durable execution: the only package that imports `dbos`."""

from ._engine import QUEUE, DurableEngine, add_observer, make_engine, register_agent, run_worker
from ._store import Approval, RunRecord, Store

__all__ = [
    "QUEUE",
    "Approval",
    "DurableEngine",
    "RunRecord",
    "Store",
    "add_observer",
    "make_engine",
    "register_agent",
    "run_worker",
]
