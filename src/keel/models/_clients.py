"""`LoopClients`: one SDK client per event loop, closed when its loop shuts down.

Pooled connections belong to the event loop that opened them, and `asyncio.run` (hence `run_sync`)
makes a new loop each time. A client is therefore made per loop, and a small async generator is
started beside it: the loop finalizes unfinished async generators as it shuts down
(`loop.shutdown_asyncgens`, called by `asyncio.run` and `asyncio.Runner`), which closes the client
while the loop can still run the close.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["LoopClients"]

C = TypeVar("C")


class LoopClients(Generic[C]):
    """Clients keyed by event loop.

    Args:
        make: builds a client (called inside the loop that will use it).
        close: closes a client.
    """

    def __init__(self, make: Callable[[], C], close: Callable[[C], Awaitable[object]]) -> None:
        self._make = make
        self._close = close
        self._clients: dict[asyncio.AbstractEventLoop, C] = {}
        self._keepers: dict[asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = {}

    def __len__(self) -> int:
        return len(self._clients)

    async def get(self) -> C:
        """The running loop's client, made on first use."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._make()
            keeper = self._keep(loop, client)
            self._keepers[loop] = keeper
            await keeper.__anext__()
        return client

    async def _keep(self, loop: asyncio.AbstractEventLoop, client: C) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            self._clients.pop(loop, None)
            self._keepers.pop(loop, None)
            await self._close(client)

    async def aclose(self) -> None:
        """Close the running loop's client now, if there is one."""
        keeper = self._keepers.get(asyncio.get_running_loop())
        if keeper is not None:
            await keeper.aclose()
