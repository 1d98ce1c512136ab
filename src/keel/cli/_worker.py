"""``keel worker``: serve the run queue with the given agents until SIGINT or SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .._runtime import Runtime
from ..exceptions import ConfigError, UsageError
from ._common import console, exits, fail_input, load_target

if TYPE_CHECKING:
    from ..agent import Agent
    from ..durable import DurableEngine

__all__ = ["default_worker_id", "worker"]

DbOption = Annotated[str | None, typer.Option("--db", help="database URL (default KEEL_DATABASE_URL)")]


def default_worker_id() -> str:
    """This worker's id: ``KEEL_WORKER_ID``, else ``worker-HOSTNAME``."""
    from ..config import settings

    return settings().worker_id or f"worker-{socket.gethostname()}"


def _safe_url(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _serve(url: str, agents: list[Agent], worker_id: str, concurrency: int) -> None:
    """Run the worker on a thread until SIGINT or SIGTERM; the main thread only waits and handles signals."""
    from ..durable import run_worker

    stop = threading.Event()
    failures: list[BaseException] = []

    def ready(engine: DurableEngine) -> None:
        names = ", ".join(a.name for a in agents)
        console.print(
            f"[bold]keel worker[/] {worker_id} on {_safe_url(url)}  agents {names}  concurrency {concurrency}"
            "  (Ctrl-C to stop)",
            soft_wrap=True,
        )

    def serve() -> None:
        try:
            run_worker(url, agents, worker_id=worker_id, concurrency=concurrency, stop=stop, ready=ready)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second signal: stop now; segments left behind are recovered on restart
            os._exit(130)
        console.print(f"{signal.Signals(signum).name}: stopping the worker (again to force)")
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=serve, name="keel-worker", daemon=True)
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.5)  # a timed join keeps the main thread responsive to signals everywhere
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if failures:
        raise failures[0]
    console.print(f"worker {worker_id} stopped")


def worker(
    targets: Annotated[
        list[str] | None,
        typer.Argument(help="the agents to serve: FILE.py:agent or module:agent", show_default=False),
    ] = None,
    db: DbOption = None,
    worker_id: Annotated[
        str | None, typer.Option("--id", help="a stable worker id (default KEEL_WORKER_ID, else worker-HOSTNAME)")
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="runs served at once")] = 100,
    trace: Annotated[
        str | None,
        typer.Option("--trace", help="OpenTelemetry spans to 'console' or 'otlp' (OTEL_EXPORTER_OTLP_ENDPOINT)"),
    ] = None,
) -> None:
    """Serve queued runs of the given agents until SIGINT or SIGTERM."""
    if not targets:
        raise fail_input("missing TARGET: name the agents this worker serves, as in: keel worker path/to/file.py:agent")
    if trace not in (None, "console", "otlp"):
        raise fail_input(f"--trace must be 'console' or 'otlp', got {trace!r}")
    with exits():
        agents = [load_target(t) for t in targets]
        seen: dict[str, str] = {}
        for target, agent in zip(targets, agents, strict=True):
            if agent.name in seen:
                raise ConfigError(
                    f"{seen[agent.name]} and {target} are both named {agent.name!r}; runs find their agent by "
                    "name, so give each agent a distinct name"
                )
            seen[agent.name] = target
        from ..config import settings

        url = db or settings().database_url
        if url == "memory":
            raise UsageError(
                "a worker needs a database shared with the processes that start runs; "
                "give --db sqlite:///path/to/keel.db or postgresql://..."
            )
        Runtime(url)  # reject a bad URL with its name before starting
        provider = _tracing(trace)
        try:
            _serve(url, agents, worker_id or default_worker_id(), concurrency)
        finally:
            if provider is not None:
                provider.shutdown()  # flushes the spans still batched


def _tracing(trace: str | None) -> Any:
    """Trace the runs this process carries, when asked (needs the otel extra)."""
    if trace is None:
        return None
    try:
        from ..observe.tracing import RunTracer, configure_tracing
    except ImportError as exc:
        raise ConfigError(f"--trace needs the otel extra: pip install 'keel[otel]' ({exc})") from None
    from ..durable import add_observer

    provider = configure_tracing("console" if trace == "console" else "otlp")
    add_observer(RunTracer(provider))
    return provider
