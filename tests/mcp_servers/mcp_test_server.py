"""An MCP server for keel's tests, on the official SDK: `python mcp_test_server.py stdio|http PORT|malformed`.

Environment:
    LEDGER: a file `charge` appends one line to per charge (its side effect).
    HANG_FILE: when set and the file does not exist yet, the first `charge` or `lookup` writes this
        process's pid there and never answers, so the test can kill the server mid-call.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.stdio import stdio_server
from pydantic import BaseModel

server = MCPServer("keel-test")


class Quote(BaseModel):
    sku: str
    price: float


async def _hang_once() -> None:
    hang = os.environ.get("HANG_FILE")
    if hang and not Path(hang).exists():
        Path(hang).write_text(str(os.getpid()))
        await asyncio.Event().wait()


@server.tool(annotations=types.ToolAnnotations(read_only_hint=True))
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool(annotations=types.ToolAnnotations(read_only_hint=True))
def server_pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool(annotations=types.ToolAnnotations(read_only_hint=True))
def divide(a: float, b: float) -> float:
    """Divide a by b."""
    if b == 0:
        raise ToolError("b must not be zero; pass a non-zero divisor")
    return a / b


@server.tool(annotations=types.ToolAnnotations(read_only_hint=True))
def quote(sku: str) -> Quote:
    """The price of an item."""
    return Quote(sku=sku, price=9.5)


@server.tool(annotations=types.ToolAnnotations(read_only_hint=True))
async def lookup(key: str) -> str:
    """Look a key up."""
    await _hang_once()
    return f"value-of-{key}"


@server.tool(annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False))
async def charge(account: str, amount: int) -> str:
    """Charge an account (a side effect that must not repeat)."""
    with open(os.environ["LEDGER"], "a") as f:
        f.write(f"{account} {amount}\n")
    await _hang_once()
    return f"charged {account} {amount}"


class Confirm(BaseModel):
    confirm: bool
    seat: str = "any"


@server.tool(annotations=types.ToolAnnotations(read_only_hint=False, idempotent_hint=True))
async def book(date: str, ctx: Context) -> str:
    """Book a table; the server asks the user to confirm first (MCP elicitation)."""
    answer = await ctx.elicit(f"Confirm the booking on {date}?", schema=Confirm)
    if answer.action == "accept" and answer.data.confirm:
        return f"booked {date}, seat {answer.data.seat}"
    return f"not booked ({answer.action})"


def malformed() -> Server:
    """A server whose tool listing has a schema that is not valid JSON Schema."""

    async def list_tools(ctx: object, params: object) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name="broken",
                    description="A tool with a broken schema.",
                    input_schema={"type": "object", "properties": {"n": {"type": "integer", "minimum": "zero"}}},
                ),
                types.Tool(name="fine", description="A fine tool.", input_schema={"type": "object"}),
                types.Tool(name="files.read", description="A name providers refuse.", input_schema={"type": "object"}),
            ]
        )

    async def call_tool(ctx: object, params: types.CallToolRequestParams) -> types.CallToolResult:
        return types.CallToolResult(content=[types.TextContent(text=f"called {params.name}")])

    return Server("malformed", on_list_tools=list_tools, on_call_tool=call_tool)  # type: ignore[arg-type]


async def serve_http(port: int) -> None:
    """Streamable HTTP on `port` (0: one the system picks), printing ``listening on PORT`` once it listens."""
    import uvicorn

    class Announcing(uvicorn.Server):
        async def startup(self, sockets: object = None) -> None:
            await super().startup(sockets)  # type: ignore[arg-type]
            if self.started:
                print(f"listening on {self.servers[0].sockets[0].getsockname()[1]}", flush=True)

    app = server.streamable_http_app(host="127.0.0.1")
    await Announcing(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")).serve()


async def run_lowlevel(low: Server) -> None:
    async with stdio_server() as (read, write):
        await low.run(read, write, low.create_initialization_options())


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "stdio":
        server.run("stdio")
    elif mode == "http":
        asyncio.run(serve_http(int(sys.argv[2])))
    elif mode == "malformed":
        asyncio.run(run_lowlevel(malformed()))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
