"""A durable run whose MCP server died mid-call: a person decides, and the run resumes in a fresh agent."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from mcp_helpers import ServerFiles, kill, stdio_command, wait_for

from keel import Agent, Runtime, ToolCall
from keel.mcp import MCPTools
from keel.messages import ToolMessage
from keel.models import ScriptedModel


def test_a_side_effect_cut_off_by_a_dead_server_waits_for_a_person_then_resumes(
    tmp_path: Path, files: ServerFiles
) -> None:
    from keel.durable import DurableEngine

    files.env["HANG_FILE"] = str(files.hang)
    runtime = Runtime(f"sqlite:///{tmp_path / 'keel.db'}")
    script = [ToolCall("charge", {"account": "A-7", "amount": 12}), "Charged."]

    def killer() -> None:
        wait_for(lambda: files.hang.exists() and files.hang.read_text().strip(), "a call in flight")
        kill(int(files.hang.read_text()))

    first_tools = MCPTools(stdio_command(), env=files.env)
    again_tools = MCPTools(stdio_command(), env=files.env)  # as a process resuming the run would build it
    try:
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        paused = Agent("shop", ScriptedModel(script), tools=[first_tools]).run_sync("charge", runtime=runtime)
        thread.join(5)
        assert (paused.status, paused.error_type) == ("needs_attention", "NeedsAttention")
        assert files.charges() == ["A-7 12"]  # it did take effect, and nothing sent it again
        [request] = runtime.approvals(run_id=paused.run_id)
        assert request.kind == "interrupted" and request.tool == "charge"
        assert "may or may not have taken effect" in request.reason

        # the person checked the ledger: it went through, so record its result instead of charging again
        runtime.resolve(request.id, "skip", by="ops", result="charged A-7 12 (checked)", dispatch=False)
        agent = Agent("shop", ScriptedModel(script), tools=[again_tools])
        done = asyncio.run(runtime.resume(agent, paused.run_id))
        assert (done.status, done.output) == ("done", "Charged.")
        assert files.charges() == ["A-7 12"]
        [result] = [m for m in done.messages if isinstance(m, ToolMessage)]
        assert result.content == "charged A-7 12 (checked)"
    finally:
        first_tools.close()
        again_tools.close()
        DurableEngine.close()


def test_a_retried_call_after_a_dead_server_runs_on_a_new_connection(tmp_path: Path, files: ServerFiles) -> None:
    from keel.durable import DurableEngine

    files.env["HANG_FILE"] = str(files.hang)
    runtime = Runtime(f"sqlite:///{tmp_path / 'keel.db'}")
    script = [ToolCall("charge", {"account": "B-2", "amount": 5}), "Charged."]

    def killer() -> None:
        wait_for(lambda: files.hang.exists() and files.hang.read_text().strip(), "a call in flight")
        kill(int(files.hang.read_text()))

    toolset = MCPTools(stdio_command(), env=files.env)
    try:
        agent = Agent("shop", ScriptedModel(script), tools=[toolset])
        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        paused = agent.run_sync("charge", runtime=runtime)
        thread.join(5)
        assert paused.status == "needs_attention"
        [request] = runtime.approvals(run_id=paused.run_id)
        runtime.resolve(request.id, "retry", by="ops", dispatch=False)  # a person decided to charge again
        done = asyncio.run(runtime.resume(agent, paused.run_id))
        assert done.status == "done", done.error
        assert files.charges() == ["B-2 5", "B-2 5"]
        assert [m.content for m in done.messages if isinstance(m, ToolMessage)] == ["charged B-2 5"]
        assert toolset.connection.opened == 2
    finally:
        toolset.close()
        DurableEngine.close()
