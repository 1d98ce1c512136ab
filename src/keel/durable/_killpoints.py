"""Named instants at which the chaos suite kills a process, to test what a SIGKILL there leaves behind.

A process whose environment sets ``KEEL_KILL_POINT`` to one of `POINTS` sends itself SIGKILL when it
reaches that point; anywhere else (and in every process without the variable) `kill_point` does nothing.
The points sit where a crash is hardest to survive: inside a transaction that must be all-or-nothing,
and between a commit and the queueing that follows it.
"""

from __future__ import annotations

import os
import signal

__all__ = ["KILL_POINT_ENV", "POINTS", "kill_point"]

KILL_POINT_ENV = "KEEL_KILL_POINT"
POINTS = (
    "fork:indexed",  # the fork's run row is written, its history not yet
    "fork:committed",  # the fork is stored, not yet queued
    "decide:recorded",  # a decision is written, the run not yet claimed
    "decide:claimed",  # the decision and the claim of the run's next segment are stored, not yet queued
    "cancel:recorded",  # a cancelled run's pending requests are rejected, the run not yet marked cancelled
)


def kill_point(name: str) -> None:
    """Die here, at once and without cleanup, when ``KEEL_KILL_POINT`` names this point."""
    if os.environ.get(KILL_POINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
