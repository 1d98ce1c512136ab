"""The process's observers: one registration that receives every `RunEvent` of every run this process executes.

In memory or durable, started here or taken from a worker's queue, a run's events reach the observers
registered here (`add_observer`, also `Runtime.observe` and `keel.durable.add_observer`), and then the
run's own sinks (a `Runtime`'s ``observers``, a call's ``on_event``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from .events import RunEvent

__all__ = ["Observer", "add_observer", "fan_out", "remove_observer"]

log = logging.getLogger("keel")

Observer = Callable[[RunEvent], None]

_OBSERVERS: list[Observer] = []


def add_observer(observer: Observer) -> Callable[[], None]:
    """Send every `RunEvent` of every run this process executes to `observer`; return a function that stops it."""
    _OBSERVERS.append(observer)
    return lambda: remove_observer(observer)


def remove_observer(observer: Observer) -> None:
    """Stop sending events to `observer` (registered with `add_observer`); unknown ones are ignored."""
    if observer in _OBSERVERS:
        _OBSERVERS.remove(observer)


def fan_out(sinks: Sequence[Observer]) -> Observer:
    """One sink that sends each event to the process's observers, then to `sinks`; a failing one is logged."""

    def emit(event: RunEvent) -> None:
        for sink in (*_OBSERVERS, *sinks):
            try:
                sink(event)
            except Exception:  # an observer must never break a run
                log.exception("observer %r failed on %s", sink, event.kind)

    return emit
