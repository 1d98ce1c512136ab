"""The cost of a call to an MCP server's tool through keel, beside the same call made with the SDK alone.

    .venv/bin/python bench/mcp_calls.py                  # 200 calls per row, stdio server
    .venv/bin/python bench/mcp_calls.py --calls 500

Server: tests/mcp_servers/mcp_test_server.py (the SDK's MCPServer) as a stdio subprocess; the tool is
``add`` (read-only). Rows, each the median wall time per call over ``--calls`` calls after 20 warm-up
calls, in one process:

- ``sdk``: ``await client.call_tool("add", ...)`` on an open ``mcp.Client`` session (the floor);
- ``keel tool``: ``MCPTool.func`` (validation against the server's schema, the hand-over to keel's MCP
  event loop and back, result rendering) -- what a keel tool step adds to the SDK call;
- ``keel loop``: whole agent steps on the in-memory runtime with ScriptedModel (one model step and one
  MCP tool call per step, policies off), divided by the number of tool calls.

Prints the load average, as the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "mcp_servers" / "mcp_test_server.py"


async def sdk_row(calls: int) -> float:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=[str(SERVER), "stdio"])
    async with Client(params, mode="legacy") as client:
        for _ in range(20):
            await client.call_tool("add", {"a": 1, "b": 2})
        times = []
        for i in range(calls):
            t = time.perf_counter()
            await client.call_tool("add", {"a": i, "b": 2})
            times.append(time.perf_counter() - t)
    return statistics.median(times)


async def keel_tool_row(calls: int) -> float:
    from keel.mcp import MCPTools

    toolset = MCPTools([sys.executable, str(SERVER), "stdio"])
    add = next(t for t in toolset.tools() if t.name == "add")
    try:
        for _ in range(20):
            await add.func(**add.validate({"a": 1, "b": 2}))
        times = []
        for i in range(calls):
            t = time.perf_counter()
            await add.func(**add.validate({"a": i, "b": 2}))
            times.append(time.perf_counter() - t)
    finally:
        await asyncio.to_thread(toolset.close)
    return statistics.median(times)


async def keel_loop_row(calls: int) -> float:
    from keel import Agent, Runtime, ToolCall
    from keel.mcp import MCPTools
    from keel.models import ScriptedModel

    toolset = MCPTools([sys.executable, str(SERVER), "stdio"])
    script = [ToolCall("add", {"a": i, "b": 2}) for i in range(calls)] + ["done"]
    agent = Agent("bench", ScriptedModel(script), tools=[toolset], policies=[], max_steps=calls + 1)
    warm = Agent(
        "warm",
        ScriptedModel([ToolCall("add", {"a": 1, "b": 2})] * 20 + ["done"]),
        tools=[toolset],
        policies=[],
        max_steps=21,
    )
    try:
        await warm.run("warm up", runtime=Runtime.in_memory())
        t = time.perf_counter()
        result = await agent.run("add", runtime=Runtime.in_memory())
        elapsed = time.perf_counter() - t
        assert result.status == "done", result.error
    finally:
        await asyncio.to_thread(toolset.close)
    return elapsed / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    print(
        f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}, "
        f"{os.cpu_count()} cores, {args.calls} calls per row"
    )
    for name, row in (("sdk", sdk_row), ("keel tool", keel_tool_row), ("keel loop", keel_loop_row)):
        per_call = asyncio.run(row(args.calls))
        print(f"{name:<10} {per_call * 1000:8.3f} ms per call")


if __name__ == "__main__":
    main()
