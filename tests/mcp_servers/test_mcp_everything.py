"""keel against the reference MCP server, `@modelcontextprotocol/server-everything` (Node, from npm).

`make npm-deps` (a prerequisite of `make test`) installs the pinned version into tests/.npm.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from mcp_helpers import kill, listening_port, wait_for

from keel import Agent, Runtime, ToolCall
from keel._tool_exec import tool_step
from keel.mcp import ElicitationRequest, MCPTool, MCPTools
from keel.messages import Message, ToolMessage
from keel.models import ScriptedModel
from keel.tools import ToolContext

MEMORY = Runtime.in_memory()
PACKAGE = Path(__file__).parents[1] / ".npm" / "node_modules" / "@modelcontextprotocol" / "server-everything"
ENTRY = PACKAGE / "dist" / "index.js"


def everything_command(*args: str) -> list[str]:
    if not ENTRY.exists():
        pytest.fail(f"the reference MCP server is not installed at {PACKAGE}; run `make npm-deps`")
    return ["node", str(ENTRY), *args]


def server_pids() -> list[int]:
    """This process's children running the reference server (found through /proc; never another test run's)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                parent = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("PPid:"))
            except (OSError, StopIteration):
                continue
            if str(ENTRY).encode() in cmdline and int(parent.split()[1]) == os.getpid():
                pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def everything() -> Iterator[MCPTools]:
    toolset = MCPTools(everything_command("stdio"), name="everything")
    yield toolset
    toolset.close()


def tool_messages(messages: Sequence[Message]) -> list[ToolMessage]:
    return [m for m in messages if isinstance(m, ToolMessage)]


def test_the_reference_servers_tools_are_listed(everything: MCPTools) -> None:
    tools = {t.name: t for t in everything.tools()}
    assert {"echo", "get-sum", "get-tiny-image", "get-structured-content"} <= set(tools)
    get_sum = tools["get-sum"]
    assert isinstance(get_sum, MCPTool)
    assert get_sum.parameters["properties"]["a"]["type"] == "number"
    assert get_sum.parameters["required"] == ["a", "b"]
    assert "sum of two numbers" in get_sum.description


async def test_an_agent_uses_the_reference_server(everything: MCPTools) -> None:
    model = ScriptedModel(
        [
            [ToolCall("get-sum", {"a": 2, "b": 3}), ToolCall("echo", {"message": "hi"})],
            [ToolCall("get-structured-content", {"location": "Chicago"}), ToolCall("get-tiny-image", {})],
            "done",
        ]
    )
    result = await Agent("ref", model, tools=[everything]).run("use the tools", runtime=MEMORY)
    assert result.status == "done", result.error
    contents = {m.name: m.content for m in tool_messages(result.messages)}
    assert "5" in contents["get-sum"]
    assert contents["echo"] == "Echo: hi"
    assert '"temperature"' in contents["get-structured-content"]
    assert "[image image/png," in contents["get-tiny-image"]
    assert not any(m.is_error for m in tool_messages(result.messages))


async def test_arguments_the_schema_rejects_never_reach_the_server(everything: MCPTools) -> None:
    model = ScriptedModel([ToolCall("get-structured-content", {"location": "Paris"}), "ok"])
    events: list[Any] = []
    await Agent("ref", model, tools=[everything]).run("weather", runtime=MEMORY, on_event=events.append)
    problems = [p for e in events if e.kind == "output_rejected" for p in e.data["problems"]]
    assert len(problems) == 1 and problems[0].startswith("get-structured-content: argument 'location' 'Paris' is not")


async def test_the_servers_own_validation_error_is_a_tool_error(everything: MCPTools) -> None:
    # keel validates against the schema first; calling the step directly shows what the server says itself
    tool = next(t for t in everything.tools() if t.name == "get-sum")
    out = await tool_step(tool, {"a": "two", "b": 3}, ToolContext("run_x", "c1", 1, "run_x/1/0"))
    assert out["is_error"] is True
    assert "Input validation error" in out["content"] and "expected number, received string" in out["content"]


async def test_the_reference_server_killed_mid_run_is_reconnected() -> None:
    toolset = MCPTools(everything_command("stdio"), name="everything")
    try:
        killed: list[int] = []

        def script(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> Any:
            done = tool_messages(messages)
            if len(done) == 1:
                mine = set(server_pids()) - others
                assert len(mine) == 1
                kill(mine.pop())
                killed.append(1)
            return ToolCall("echo", {"message": f"call {len(done)}"}) if len(done) < 2 else "done"

        others = set(server_pids())  # the module's shared server, if it runs
        agent = Agent("ref", ScriptedModel(script), tools=[toolset], policies=[])
        assert set(server_pids()) - others  # listing the tools started this toolset's server
        result = await agent.run("echo twice", runtime=MEMORY)
        assert result.status == "done", result.error
        assert [m.content for m in tool_messages(result.messages)] == ["Echo: call 0", "Echo: call 1"]
        assert killed and toolset.connection.opened == 2
    finally:
        toolset.close()


async def test_the_reference_server_over_streamable_http() -> None:
    import subprocess

    proc = subprocess.Popen(
        everything_command("streamableHttp"),
        env={**os.environ, "PORT": "0"},  # the system picks a free port; the server does not say which
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    found: list[int] = []

    def listening() -> bool:
        assert proc.poll() is None, "the reference server exited"
        port = listening_port(proc.pid)
        if port is not None:
            found.append(port)
        return bool(found)

    toolset: MCPTools | None = None
    try:
        wait_for(listening, "the reference server on HTTP")
        toolset = MCPTools(f"http://127.0.0.1:{found[0]}/mcp")
        model = ScriptedModel([ToolCall("get-sum", {"a": 20, "b": 22}), "42"])
        result = await Agent("ref", model, tools=[toolset]).run("sum", runtime=MEMORY)
        assert result.status == "done", result.error
        assert "42" in tool_messages(result.messages)[0].content
    finally:
        if toolset is not None:
            toolset.close()
        proc.kill()
        proc.wait(10)


async def test_the_reference_servers_elicitation_is_answered_by_a_handler() -> None:
    asked: list[ElicitationRequest] = []

    def answer(request: ElicitationRequest) -> dict[str, Any]:
        asked.append(request)
        return {"name": "Ada Lovelace", "check": True, "email": "ada@example.org"}

    toolset = MCPTools(everything_command("stdio"), name="everything", elicit=answer)
    try:
        model = ScriptedModel([ToolCall("trigger-elicitation-request", {}), "done"])
        result = await Agent("ref", model, tools=[toolset]).run("ask me", runtime=MEMORY)
        assert result.status == "done", result.error
        [request] = asked
        assert request.schema is not None and {"name", "check", "email"} <= set(request.schema["properties"])
        content = tool_messages(result.messages)[0].content
        assert '"action": "accept"' in content and "Ada Lovelace" in content
    finally:
        toolset.close()
