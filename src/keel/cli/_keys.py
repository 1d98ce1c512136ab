"""``keel keys``: create, list and revoke the API keys of the HTTP service."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from ._common import console, exits, open_store, out, print_json

__all__ = ["keys_app"]

DbOption = Annotated[str | None, typer.Option("--db", help="database URL (default KEEL_DATABASE_URL)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print plain JSON on standard output")]

keys_app = typer.Typer(no_args_is_help=True, help="API keys of the HTTP service: create, list, revoke.")


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
        store = open_store(db, create=True)
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
        keys = list_keys(open_store(db).engine, tenant)
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
        revoke_key(open_store(db).engine, key_id)
    console.print(f"API key {key_id} revoked")
