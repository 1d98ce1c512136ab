"""``keel serve`` (the API, console and a worker), ``keel keys`` (API keys) and ``keel runs feedback``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from ..exceptions import ConfigError, UsageError
from ._common import console, exits, fail_input, load_target, out, print_json, user_name

__all__ = ["keys_app", "runs_feedback", "serve"]

DbOption = Annotated[str | None, typer.Option("--db", help="database URL (default KEEL_DATABASE_URL)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print plain JSON on standard output")]

keys_app = typer.Typer(no_args_is_help=True, help="API keys of the HTTP service: create, list, revoke.")


def _url(db: str | None) -> str:
    from ..config import settings

    url = db or settings().database_url
    if url == "memory":
        raise UsageError(
            "API keys and feedback live in a database; give --db sqlite:///path/to/keel.db or postgresql://"
        )
    return url


def _store(db: str | None, *, create: bool = False) -> Any:
    """Keel's tables on the database, migrated, without starting the durable engine.

    A missing database is created only with `create` (by the commands that write one).
    """
    import sqlalchemy as sa

    from .._runtime import check_database
    from ..durable._engine import make_engine
    from ..durable._store import Store

    check_database(_url(db), create=create)
    store = Store(make_engine(_url(db)))
    try:
        store.migrate()
    except sa.exc.SQLAlchemyError as exc:
        raise ConfigError(f"cannot open database {_url(db)!r}: {type(exc).__name__}; check the URL") from exc
    return store


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option("--tenant", help="the tenant whose runs the key sees")],
    name: Annotated[str | None, typer.Option("--name", help="a label for people")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key for a tenant; its secret is printed once and stored only as a hash."""
    from ..server._keys import create_key

    with exits():
        store = _store(db, create=True)
        key, secret = create_key(store.engine, tenant, name)
    if as_json:
        print_json({"key_id": key.key_id, "tenant": key.tenant, "name": key.name, "key": secret})
        return
    console.print(f"API key {key.key_id} for tenant [bold]{escape(tenant)}[/] (shown once; keep it secret):")
    out.print(secret)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option("--tenant", help="only this tenant's keys")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List API keys (never their secrets)."""
    from ..server._keys import list_keys

    with exits():
        keys = list_keys(_store(db).engine, tenant)
    if as_json:
        print_json([k.__getstate__() if hasattr(k, "__getstate__") else vars(k) for k in keys])
        return
    for key in keys:
        state = "revoked" if key.revoked_at else "active"
        out.print(f"{key.key_id}  {escape(key.tenant)}  {state}  {escape(key.name or '')}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key's id")], db: DbOption = None) -> None:
    """Revoke an API key."""
    from ..server._keys import revoke_key

    with exits():
        revoke_key(_store(db).engine, key_id)
    console.print(f"API key {key_id} revoked")


def runs_feedback(
    run_id: Annotated[str, typer.Argument(help="the run (see `keel runs list`)")],
    thumbs: Annotated[str | None, typer.Option("--thumbs", help="up or down")] = None,
    score: Annotated[int | None, typer.Option("--score", help="1 (worst) to 5 (best)")] = None,
    comment: Annotated[str | None, typer.Option("--comment", help="what the user said")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record a user's satisfaction with a run: thumbs, a score, or both, and a comment."""
    from ..observe.feedback import record_feedback

    with exits():
        item = record_feedback(_store(db), run_id, thumbs=thumbs, score=score, comment=comment, by=user_name())
    if as_json:
        print_json(item.to_dict())
        return
    console.print(f"feedback {item.id} on run {run_id}: satisfaction {item.satisfaction:.2f}")


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
        from ._worker import _default_worker_id

        agents = agents_by_name([load_target(t) for t in targets], targets)
        url = _url(db)
        _store(db, create=True)  # reject a bad URL with its name before starting
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
            worker_id=worker_id or _default_worker_id(),
            concurrency=concurrency,
            anomaly_window=anomaly_window,
            webhook=webhook,
            trace=trace,
            worker=worker,
            on_ready=ready,
        )
