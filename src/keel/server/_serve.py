"""``keel serve``: the API and console, with an in-process worker for the given agents."""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigError

if TYPE_CHECKING:
    from ..agent import Agent
    from ..durable import DurableEngine
    from ._app import ServiceConfig

__all__ = ["serve"]

log = logging.getLogger("keel.server")


def serve(
    config: ServiceConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    worker_id: str,
    concurrency: int = 100,
    anomaly_window: float = 60.0,
    webhook: str | None = None,
    trace: str | None = None,
    worker: bool = True,
    on_ready: Any = None,
) -> None:
    """Run the service until SIGINT or SIGTERM.

    `on_ready` is called with the port listened on once the API accepts connections (with `port` 0
    the system picks a free one, so that nothing else can take it between choosing and listening).

    The worker starts first (on its own thread) and the API once the worker's engine has launched, so
    the two share one durable engine: runs started through the API are served by this process, and by
    any other worker on the same database. With `worker` False the process serves the API only, and
    `keel worker` processes on the same database run the runs.

    Raises:
        ConfigError: the worker failed to start.
    """
    import uvicorn

    from ..durable import run_worker
    from ._app import create_app

    provider = None
    if trace:
        from .._runtime import Runtime

        try:
            from ..observe.tracing import RunTracer, configure_tracing
        except ImportError as exc:
            raise ConfigError(f"--trace needs the otel extra: pip install 'keel[otel]' ({exc})") from None

        provider = configure_tracing("console" if trace == "console" else "otlp")
        Runtime.observe(RunTracer(provider))  # every run of this process: the API's and the worker's
    stop = threading.Event()
    launched = threading.Event()
    failures: list[BaseException] = []

    def ready(engine: DurableEngine) -> None:
        launched.set()

    def work() -> None:
        try:
            run_worker(
                config.database_url, config.agents, worker_id=worker_id, concurrency=concurrency, stop=stop, ready=ready
            )
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)
            launched.set()

    thread = threading.Thread(target=work, name="keel-worker", daemon=True)
    if worker:
        thread.start()
        launched.wait()
    if failures:
        raise ConfigError(f"the worker could not start: {failures[0]}") from failures[0]
    from ..observe.anomaly import DatabaseAlerts, WindowWatcher, default_sinks
    from ..storage import Store, make_engine

    # the console shows the alerts of every process on the database, whether or not this one detects
    config.alerts = config.alerts or DatabaseAlerts(Store(make_engine(config.database_url)))
    watcher = None
    if anomaly_window > 0:
        watcher = WindowWatcher(config.database_url, config.alerts, default_sinks(webhook), window=anomaly_window)
        watcher.start()
    app = create_app(config)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started and on_ready is not None:
                on_ready(_bound_port(self))

    # Idle keep-alive connections are kept 30 s (uvicorn's default is 5): a client reusing one just as the
    # server closes it sees a dropped connection, which long-lived console and API clients would hit.
    server = Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, timeout_keep_alive=30)
    )
    # uvicorn handles SIGINT and SIGTERM, then raises the signal again once it has stopped; with these
    # benign handlers in place that second signal does not kill the process before the cleanup below.
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        if watcher is not None:
            watcher.stop()
        stop.set()
        if worker:
            thread.join(timeout=30)
        if provider is not None:
            provider.shutdown()  # flushes the spans still batched
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _bound_port(server: Any) -> int:
    """The port a started uvicorn server listens on."""
    bound = [sock.getsockname()[1] for listener in server.servers for sock in listener.sockets]
    return int(bound[0]) if bound else int(server.config.port)


def _ignore(signum: int, frame: Any) -> None:
    return None


def agents_by_name(agents: list[Agent], targets: list[str]) -> list[Agent]:
    """The agents, refusing two with one name (runs find their agent by name).

    Raises:
        ConfigError: two agents share a name.
    """
    seen: dict[str, str] = {}
    for target, agent in zip(targets, agents, strict=True):
        if agent.name in seen:
            raise ConfigError(
                f"{seen[agent.name]} and {target} are both named {agent.name!r}; give each agent a distinct name"
            )
        seen[agent.name] = target
    return agents
