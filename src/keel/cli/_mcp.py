"""``keel mcp serve``: expose an agent (and/or its tools) to MCP clients over stdio or streamable HTTP."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal, cast

import typer

from ._common import console, exits, fail_input, load_target

__all__ = ["mcp_app"]

mcp_app = typer.Typer(no_args_is_help=True, help="Model Context Protocol: serve keel agents to MCP clients.")

TRANSPORTS = ("stdio", "http")
EXPOSE = ("agent", "tools", "both")


@mcp_app.command("serve")
def serve(
    target: Annotated[
        str | None, typer.Argument(help="the agent: path/to/file.py:agent or package.module:agent", show_default=False)
    ] = None,
    transport: Annotated[str, typer.Option(help="stdio (for a client that starts this command) or http")] = "stdio",
    host: Annotated[str, typer.Option(help="address to listen on (http)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on (http); 0 picks a free one")] = 8000,
    path: Annotated[str, typer.Option(help="URL path of the MCP endpoint (http)")] = "/mcp",
    expose: Annotated[str, typer.Option(help="agent (a tool that runs a task), tools, or both")] = "both",
    db: Annotated[
        str | None, typer.Option(help="database URL for the agent's runs (default KEEL_DATABASE_URL); 'memory'")
    ] = None,
) -> None:
    """Serve an agent over MCP: the agent as a tool that runs a task, and its tools."""
    if not target:
        raise fail_input("missing TARGET: name the agent, as in: keel mcp serve path/to/file.py:agent")
    if transport not in TRANSPORTS:
        raise fail_input(f"--transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    if expose not in EXPOSE:
        raise fail_input(f"--expose must be one of {', '.join(EXPOSE)}, got {expose!r}")
    with exits():
        from .. import Runtime
        from ..mcp import serve as serve_mcp

        agent = load_target(target)
        runtime = Runtime(db)

        def ready(bound: int) -> None:
            console.print(f"[bold]keel mcp[/] serving {agent.name!r} on http://{host}:{bound}{path}", soft_wrap=True)

        asyncio.run(
            serve_mcp(
                agent,
                transport=cast(Literal["stdio", "http"], transport),
                host=host,
                port=port,
                path=path,
                expose=cast(Literal["agent", "tools", "both"], expose),
                runtime=runtime,
                on_ready=ready,
            )
        )
