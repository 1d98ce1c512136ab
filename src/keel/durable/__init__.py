"""Durable execution: the only package that imports `dbos`."""

from ._engine import DurableEngine, JournalSteps, make_engine, register_agent

__all__ = ["DurableEngine", "JournalSteps", "make_engine", "register_agent"]
