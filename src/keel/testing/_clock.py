"""`FakeClock`: time that moves only when something waits on it, so tests never sleep."""

from __future__ import annotations

import asyncio

__all__ = ["FakeClock"]


class FakeClock:
    """A clock whose `sleep` returns at once and moves the time forward by the time asked.

    Args:
        start: the starting time, in seconds since the epoch.

    Attributes:
        sleeps: every wait asked for, in order (to check backoff and Retry-After).
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = float(start)
        self.sleeps: list[float] = []

    def time(self) -> float:
        """The fake time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Record the wait, move time forward, and yield to the event loop once."""
        seconds = max(0.0, float(seconds))
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        """Move time forward without a wait."""
        self.now += seconds
