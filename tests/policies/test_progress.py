"""NoProgress: a run going round in circles is told (the call denied), then paused for a person."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel import Agent, ConfigError, RunEvent, Runtime, ToolCall, ToolError, tool
from keel.models import ScriptedModel
from keel.policies.progress import NoProgress

MEMORY = Runtime.in_memory()


def lookup_tool(log: list[str]) -> object:
    @tool
    def lookup(order_id: str) -> str:
        """Look up an order."""
        log.append(order_id)
        return f"order {order_id}: processing"

    return lookup


async def test_a_repeated_call_loop_is_denied_then_escalated_to_a_person(tmp_path: Path) -> None:
    log: list[str] = []
    loop = [ToolCall("lookup", {"order_id": "A-1"})] * 6
    events: list[RunEvent] = []
    rt = Runtime(f"sqlite:///{tmp_path / 'keel.db'}")
    agent = Agent("s", ScriptedModel([*loop, "it is processing"]), tools=[lookup_tool(log)], policies=[NoProgress()])
    paused = await agent.run("where is A-1?", runtime=rt, on_event=events.append)
    assert paused.status == "needs_attention"
    assert "this would be call 3 of lookup with the same arguments" in (paused.error or "")
    assert log == ["A-1", "A-1"]  # the third and fourth calls were denied, never run
    denials = [e.data for e in events if e.kind == "policy_decision" and e.data["action"] == "deny"]
    assert len(denials) == 2 and all(d["policy"] == "NoProgress" for d in denials)
    tool_messages = [m for m in paused.messages if m.role == "tool"]
    assert [m.content for m in tool_messages][:2] == ["order A-1: processing"] * 2  # progress kept
    assert tool_messages[2].content.startswith("denied: no progress:")

    [request] = rt.approvals(run_id=paused.run_id)
    assert request.kind == "pause"
    rt.resolve(
        request.id, "continue", by="ops", note="It is stuck in the warehouse; tell the customer.", dispatch=False
    )
    script = [*loop[:4], "It is stuck in the warehouse."]
    agent = Agent("s", ScriptedModel(script), tools=[lookup_tool(log)], policies=[NoProgress()])
    done = await rt.resume(agent, paused.run_id)
    assert (done.status, done.output) == ("done", "It is stuck in the warehouse.")
    assert log == ["A-1", "A-1"]


async def test_the_same_error_again_and_again_is_denied() -> None:
    attempts: list[int] = []

    @tool
    def charge(amount: int) -> str:
        """Charge."""
        attempts.append(amount)
        raise ToolError("the payment service is unavailable")

    script = [ToolCall("charge", {"amount": n}) for n in range(1, 6)]
    agent = Agent("p", ScriptedModel(script), tools=[charge], policies=[NoProgress(max_errors=2)])
    result = await agent.run("pay", runtime=MEMORY)
    assert attempts == [1, 2]
    assert result.status == "needs_attention" and "the same error came back 2 times" in (result.error or "")


async def test_steps_that_bring_nothing_new_are_noticed() -> None:
    log: list[str] = []
    script = [ToolCall("lookup", {"order_id": f"A-{n % 2}"}) for n in range(8)]
    agent = Agent(
        "s", ScriptedModel(script), tools=[lookup_tool(log)], policies=[NoProgress(max_repeats=10, max_stale_steps=2)]
    )
    result = await agent.run("x", runtime=MEMORY)
    assert result.status == "needs_attention" and "3 steps in a row brought no new information" in (result.error or "")
    assert log == ["A-0", "A-1", "A-0", "A-1"]


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="max_repeats must be a whole number 2 or more"):
        NoProgress(max_repeats=1)
    with pytest.raises(ConfigError, match="warnings must be a whole number 0 or more"):
        NoProgress(warnings=-1)
