"""`keel mcp serve`: a keel agent served over MCP, called by the official `mcp` client."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp_helpers import announced_port

HERE = Path(__file__).parent
TARGET = f"{HERE / 'served_agent.py'}:agent"
KEEL = [sys.executable, "-m", "keel.cli"]


@pytest.fixture
def served_http(tmp_path: Path) -> Iterator[str]:
    log = tmp_path / "mcp-serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*KEEL, "mcp", "serve", TARGET, "--transport", "http", "--port", "0", "--db", "memory"],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        port = announced_port(log, proc, "keel mcp serve on HTTP")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait(10)


async def test_an_agent_served_over_http_is_called_by_the_mcp_client(served_http: str) -> None:
    async with Client(served_http) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert set(listed) == {"adder", "add"}  # refund needs a person's approval: not served directly
        assert listed["adder"].input_schema["required"] == ["task"]
        assert listed["add"].input_schema["properties"]["a"]["type"] == "integer"
        assert listed["add"].annotations is not None and listed["add"].annotations.read_only_hint is True

        result = await client.call_tool("adder", {"task": "add 2 and 40"})
        assert not result.is_error
        assert result.content[0].text == "The sum is 42."  # type: ignore[union-attr]
        assert result.structured_content is not None
        assert result.structured_content["status"] == "done"
        assert result.structured_content["run_id"].startswith("run_")

        direct = await client.call_tool("add", {"a": 1, "b": 2})
        assert (direct.is_error, direct.content[0].text) == (False, "3")  # type: ignore[union-attr]
        bad = await client.call_tool("add", {"a": "one", "b": 2})
        assert bad.is_error and "add: argument 'a'" in bad.content[0].text  # type: ignore[union-attr]


async def test_an_agent_run_that_waits_for_approval_says_so(served_http: str) -> None:
    async with Client(served_http) as client:
        result = await client.call_tool("adder", {"task": "refund my order"})
        assert result.is_error
        assert result.structured_content is not None and result.structured_content["status"] == "waiting"
        assert "approval" in result.content[0].text  # type: ignore[union-attr]


async def test_an_agent_served_over_stdio_is_called_by_the_mcp_client() -> None:
    params = StdioServerParameters(
        command=KEEL[0], args=[*KEEL[1:], "mcp", "serve", TARGET, "--expose", "agent", "--db", "memory"]
    )
    async with Client(params) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["adder"]
        result = await client.call_tool("adder", {"task": "what is 5 plus 6"})
        assert not result.is_error
        assert result.content[0].text == "The sum is 11."  # type: ignore[union-attr]


def test_bad_options_are_refused_with_the_fix() -> None:
    from typer.testing import CliRunner

    from keel.cli import app

    runner = CliRunner()
    done = runner.invoke(app, ["mcp", "serve", TARGET, "--transport", "pigeon"])
    assert done.exit_code == 2 and "--transport must be one of stdio, http" in done.stderr
    done = runner.invoke(app, ["mcp", "serve", TARGET, "--expose", "everything"])
    assert done.exit_code == 2 and "--expose must be one of agent, tools, both" in done.stderr
    done = runner.invoke(app, ["mcp", "serve", "nowhere.py:agent"])
    assert done.exit_code == 2 and "does not exist" in done.stderr


async def test_a_served_tool_never_falls_back_to_a_tool_that_needs_approval() -> None:
    from keel import Agent, tool
    from keel.mcp import build_server
    from keel.models import ScriptedModel

    refunds: list[int] = []

    @tool(side_effects=True, requires_approval=True)
    def refund_by_hand(amount: int) -> str:
        """Refund through the back office."""
        refunds.append(amount)
        return "refunded by hand"

    @tool(fallback=refund_by_hand)
    def refund(amount: int) -> str:
        """Refund through the payment service."""
        raise ConnectionError("payment service down")

    agent = Agent("pay", ScriptedModel(["done"]), tools=[refund])
    async with Client(build_server(agent, expose="tools")) as client:
        result = await client.call_tool("refund", {"amount": 5})
    assert result.is_error and refunds == []
    assert "refund_by_hand needs a person's approval" in result.content[0].text  # type: ignore[union-attr]
