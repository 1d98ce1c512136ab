"""One MCP server connection, owned by a background event loop and reopened when it breaks.

An MCP session is an async context manager bound to the task that entered it, while keel runs tools
in whatever loop the run happens to use (a fresh one per `run_sync`, DBOS's own for durable segments).
So every connection lives on one process-wide background loop: a keeper task enters the session and
holds it; calls from any loop are handed over with `run_coroutine_threadsafe`. The session opens on
first use and reopens after the server dies or restarts, so one `Agent` serves many runs, in any
process that resumes them.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import tempfile
import threading
import weakref
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import IO, Any, TextIO, TypeVar, cast

import httpx2
import mcp_types
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.session import ElicitationFnT
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

__all__ = [
    "CallLost",
    "Connection",
    "ServerSpec",
    "Unreachable",
    "describe",
    "is_session_gone",
    "is_transport_error",
    "on_loop",
    "to_loop",
]

T = TypeVar("T")

ElicitFn = ElicitationFnT


class Unreachable(Exception):  # noqa: N818 - names what happened
    """The server could not be reached; nothing was sent."""


class CallLost(Exception):  # noqa: N818 - names what happened
    """The connection broke after the request was sent: the call may or may not have taken effect."""


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """Where an MCP server is and how to reach it."""

    label: str
    url: str | None = None
    command: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    cwd: str | None = None
    headers: dict[str, str] | None = None
    connect_timeout: float = 30.0
    reconnect_within: float = 15.0


class _LoopThread:
    """The process's background event loop for MCP connections (restarted in a forked child)."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _pid: int | None = None
    connections: weakref.WeakSet[Connection] = weakref.WeakSet()

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._pid != os.getpid():
                if cls._pid is None:
                    atexit.register(cls.close_all)
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="keel-mcp", daemon=True)
                thread.start()
                cls._loop, cls._pid = loop, os.getpid()
            return cls._loop

    @classmethod
    def close_all(cls) -> None:
        """At exit: close the sessions still open, so stdio servers are stopped rather than orphaned."""
        if cls._loop is None or cls._pid != os.getpid() or not cls._loop.is_running():
            return
        live = [c for c in list(cls.connections) if c.client is not None]

        async def close(connections: list[Connection]) -> None:
            await asyncio.wait([asyncio.ensure_future(c.close()) for c in connections], timeout=5)

        if live:
            with contextlib.suppress(Exception):
                on_loop(close(live)).result(10)


def on_loop(coro: Coroutine[Any, Any, T]) -> Future[T]:
    """Schedule `coro` on the MCP loop."""
    return asyncio.run_coroutine_threadsafe(coro, _LoopThread.get())


async def to_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` run on the MCP loop from any other loop; cancelling this cancels it there."""
    return await asyncio.wrap_future(on_loop(coro))


def is_transport_error(exc: BaseException) -> bool:
    """The connection itself failed (closed, refused, reset), as opposed to an answer from the server."""
    if isinstance(exc, MCPError):
        return exc.code == mcp_types.CONNECTION_CLOSED
    if isinstance(exc, BaseExceptionGroup):
        return any(is_transport_error(e) for e in exc.exceptions)
    import anyio

    return isinstance(
        exc,
        OSError
        | EOFError
        | anyio.ClosedResourceError
        | anyio.BrokenResourceError
        | anyio.EndOfStream
        | httpx2.TransportError,
    )


def is_session_gone(exc: BaseException) -> bool:
    """A streamable-HTTP server no longer knows the session (it restarted): the request was refused unread."""
    return (
        isinstance(exc, MCPError)
        and exc.code in (mcp_types.INVALID_REQUEST, mcp_types.METHOD_NOT_FOUND)
        and "session" in exc.message.lower()
    )


def describe(exc: BaseException) -> str:
    """One line naming the innermost causes of an error (task groups wrap them in groups)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(dict.fromkeys(describe(e) for e in exc.exceptions))
    if isinstance(exc, MCPError):
        return f"MCP error {exc.code}: {exc.message}"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Connection:
    """A lazily opened, self-healing session with one MCP server. Methods run on the MCP loop."""

    def __init__(self, spec: ServerSpec, elicit: ElicitFn | None = None) -> None:
        self.spec = spec
        self.elicit = elicit
        self.client: Client | None = None
        self.opened = 0  # sessions opened so far (the first, then one per reconnect)
        self._stop: asyncio.Event | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._errlog: IO[str] | None = None
        self._pid = os.getpid()
        _LoopThread.connections.add(self)

    def stderr_tail(self, chars: int = 600) -> str:
        """The end of what a stdio server wrote to stderr, for error messages."""
        if self._errlog is None:
            return ""
        try:
            self._errlog.flush()
            self._errlog.seek(0, os.SEEK_END)
            size = self._errlog.tell()
            self._errlog.seek(max(0, size - chars))
            return self._errlog.read().strip()
        except (OSError, ValueError):
            return ""

    def _transport(self) -> Any:
        spec = self.spec
        if spec.url is not None:
            http = httpx2.AsyncClient(headers=spec.headers, timeout=httpx2.Timeout(spec.connect_timeout, read=None))
            return contextlib.AsyncExitStack(), http, streamable_http_client(spec.url, http_client=http)
        if self._errlog is None:
            self._errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        params = StdioServerParameters(command=spec.command[0], args=spec.command[1:], env=spec.env, cwd=spec.cwd)
        return contextlib.AsyncExitStack(), None, stdio_client(params, errlog=cast(TextIO, self._errlog))

    async def session(self, patience: float = 0.0) -> Client:
        """The open session, opening one if there is none.

        Args:
            patience: seconds to keep trying (with backoff) while the server cannot be reached, as when
                it is restarting.

        Raises:
            Unreachable: the server could not be started or reached, or did not answer the handshake.
        """
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + patience, 0.05
        while True:
            try:
                return await self._session()
            except Unreachable:
                if loop.time() + pause > deadline:
                    raise
            await asyncio.sleep(pause)  # backoff while a restarting server comes back
            pause = min(pause * 2, 1.0)

    async def _session(self) -> Client:
        if self._pid != os.getpid():  # a forked child: the parent's session is not ours to use
            self.client, self._stop, self._keeper, self._lock, self._pid = None, None, None, None, os.getpid()
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.client is not None:
                return self.client
            ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
            self._stop = asyncio.Event()
            self._keeper = asyncio.ensure_future(self._keep(ready, self._stop))
            try:
                client = await asyncio.wait_for(asyncio.shield(ready), self.spec.connect_timeout)
            except TimeoutError:
                ready.cancel()
                await self._stop_keeper(graceful=False)
                raise Unreachable(
                    f"MCP server {self.spec.label} did not complete the MCP handshake within "
                    f"{self.spec.connect_timeout} s{self._stderr_note()}; check that it is an MCP server "
                    "speaking the transport configured (stdio command or streamable-HTTP URL)"
                ) from None
            except Exception as exc:
                await self._stop_keeper(graceful=False)
                raise Unreachable(
                    f"cannot connect to MCP server {self.spec.label}: {describe(exc)}{self._stderr_note()}"
                ) from exc
            self.client = client
            self.opened += 1
            return client

    def _stderr_note(self) -> str:
        tail = self.stderr_tail()
        return f" (its stderr ends: {tail!r})" if tail else ""

    async def _keep(self, ready: asyncio.Future[Client], stop: asyncio.Event) -> None:
        """Enter the session, hand it over, hold it until told to stop (or until it breaks)."""
        stack, http, transport = self._transport()
        try:
            async with stack:
                if http is not None:
                    await stack.enter_async_context(http)
                client = Client(transport, elicitation_callback=self.elicit, mode="legacy")
                await stack.enter_async_context(client)
                ready.set_result(client)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else ConnectionError(describe(exc)))
            if not isinstance(exc, Exception):
                raise

    async def drop(self, client: Client | None = None) -> None:
        """Close the session (if it is still `client`), so the next call opens a fresh one."""
        if client is not None and client is not self.client:
            return
        self.client = None
        await self._stop_keeper()

    async def _stop_keeper(self, graceful: bool = True) -> None:
        """Let the keeper leave the session (closing the transport); cancel it if it does not in time."""
        stop, keeper = self._stop, self._keeper
        self._stop = self._keeper = None
        if stop is not None:
            stop.set()
        if keeper is not None:
            _, pending = await asyncio.wait([keeper], timeout=10 if graceful else 0)
            if pending:
                keeper.cancel()
                await asyncio.wait([keeper], timeout=5)

    async def close(self) -> None:
        """Close the session and forget the stderr log."""
        await self.drop()
        if self._errlog is not None:
            self._errlog.close()
            self._errlog = None
