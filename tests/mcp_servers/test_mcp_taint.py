"""MCP results are content from outside: after one, a charge with a value only the server gave waits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp_helpers import ServerFiles, stdio_command

from keel import Agent, Runtime, ToolCall
from keel.mcp import MCPTools
from keel.models import ScriptedModel
from keel.policies.taint import TaintPolicy

MEMORY = Runtime.in_memory()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[MCPTools, ServerFiles]]:
    files = ServerFiles(tmp_path / "ledger.txt", tmp_path / "hang.pid", {"LEDGER": str(tmp_path / "ledger.txt")})
    toolset = MCPTools(stdio_command(), env=files.env)
    yield toolset, files
    toolset.close()


async def test_a_charge_to_an_account_only_the_server_named_waits_and_the_persons_own_runs(
    server: tuple[MCPTools, ServerFiles],
) -> None:
    toolset, files = server
    assert all(t.untrusted for t in toolset.tools())
    steered = [
        ToolCall("lookup", {"key": "ACC-7731"}),
        ToolCall("charge", {"account": "value-of-ACC-7731", "amount": 5}),
        "Charged.",
    ]
    agent = Agent("billing", ScriptedModel(steered), tools=[toolset], policies=[TaintPolicy()])
    waiting = await agent.run("Look up ACC-7731 and charge what it says.", runtime=MEMORY)
    assert waiting.status == "waiting" and "value-of-ACC-7731" in (waiting.error or "")
    assert files.charges() == []

    own = [ToolCall("lookup", {"key": "ACC-7731"}), ToolCall("charge", {"account": "ACC-1", "amount": 5}), "Charged."]
    agent = Agent("billing", ScriptedModel(own), tools=[toolset], policies=[TaintPolicy()])
    done = await agent.run("Look up ACC-7731, then charge 5 to my account ACC-1.", runtime=MEMORY)
    assert done.status == "done", done.error
    assert files.charges() == ["ACC-1 5"]
