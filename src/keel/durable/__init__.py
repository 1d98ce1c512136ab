"""Durable execution: the only package that imports `dbos`."""

from ..storage import Approval, RunRecord, Store
from ._engine import QUEUE, DurableEngine, add_observer, make_engine, register_agent, remove_observer, run_worker

__all__ = [
    "QUEUE",
    "Approval",
    "DurableEngine",
    "RunRecord",
    "Store",
    "add_observer",
    "make_engine",
    "register_agent",
    "remove_observer",
    "run_worker",
]
