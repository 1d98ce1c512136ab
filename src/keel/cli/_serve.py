"""``keel serve``: the HTTP API, the web console and a worker for the given agents."""

from __future__ import annotations

from typing import Annotated

import typer

from ..exceptions import ConfigError
from ._common import console, database_url, exits, fail_input, load_target, open_store

__all__ = ["serve"]

DbOption = Annotated[str | None, typer.Option("--db", help="database URL (default KEEL_DATABASE_URL)")]


def serve(
    targets: Annotated[
        list[str] | None,
        typer.Argument(help="the agents to serve: FILE.py:agent or module:agent", show_default=False),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="the address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="the port to listen on")] = 8000,
    db: DbOption = None,
    worker_id: Annotated[str | None, typer.Option("--id", help="a stable worker id (default KEEL_WORKER_ID)")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="runs served at once")] = 100,
    rate: Annotated[float, typer.Option("--rate", min=0.001, help="requests a second per API key")] = 50.0,
    burst: Annotated[int, typer.Option("--burst", min=1, help="requests at once per API key")] = 100,
    max_body: Annotated[int, typer.Option("--max-body", min=1, help="largest request body, in bytes")] = 1 << 20,
    anomaly_window: Annotated[
        float, typer.Option("--anomaly-window", min=0, help="seconds per anomaly-detection window; 0 turns it off")
    ] = 60.0,
    webhook: Annotated[str | None, typer.Option("--webhook", help="POST anomaly alerts to this URL")] = None,
    trace: Annotated[
        str | None,
        typer.Option("--trace", help="OpenTelemetry spans to 'console' or 'otlp' (OTEL_EXPORTER_OTLP_ENDPOINT)"),
    ] = None,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="run the runs here too, or leave them to `keel worker`s")
    ] = True,
) -> None:
    """Serve the HTTP API and web console, with a worker for the given agents."""
    if not targets:
        raise fail_input("missing TARGET: name the agents to serve, as in: keel serve path/to/file.py:agent")
    if trace not in (None, "console", "otlp"):
        raise fail_input(f"--trace must be 'console' or 'otlp', got {trace!r}")
    with exits():
        try:
            from ..server import ServiceConfig
            from ..server import serve as run_service
            from ..server._serve import agents_by_name
        except ImportError as exc:
            raise ConfigError(f"`keel serve` needs the server extra: pip install 'keel[server]' ({exc})") from None
        from ._worker import default_worker_id

        agents = agents_by_name([load_target(t) for t in targets], targets)
        url = database_url(db)
        open_store(db, create=True)  # reject a bad URL with its name before starting
        config = ServiceConfig(url, agents, max_body_bytes=max_body, rate_per_second=rate, burst=burst)
        names = ", ".join(a.name for a in agents)

        def ready(bound: int) -> None:
            console.print(
                f"[bold]keel serve[/] http://{host}:{bound}  agents {names}  (console at /, API docs at /docs; "
                "Ctrl-C to stop)",
                soft_wrap=True,
            )

        run_service(
            config,
            host=host,
            port=port,
            worker_id=worker_id or default_worker_id(),
            concurrency=concurrency,
            anomaly_window=anomaly_window,
            webhook=webhook,
            trace=trace,
            worker=worker,
            on_ready=ready,
        )
