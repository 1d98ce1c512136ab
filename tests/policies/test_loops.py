"""LoopGuard: repeated identical calls are denied, then tools are withheld or the run pauses."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel import Agent, ConfigError, RunEvent, Runtime, ToolCall, tool
from keel.messages import ToolMessage
from keel.models import ScriptedModel
from keel.policies.loops import LoopGuard

MEMORY = Runtime.in_memory()


def make_tools() -> tuple[list[object], list[str]]:
    log: list[str] = []

    @tool
    def lookup(order_id: str) -> str:
        """Look up an order."""
        log.append(f"lookup {order_id}")
        return f"order {order_id} shipped"

    @tool(side_effects=True)
    def cancel(order_id: str) -> str:
        """Cancel an order."""
        log.append(f"cancel {order_id}")
        return "cancelled"

    return [lookup, cancel], log


async def test_a_repeated_call_is_denied_then_tools_are_withheld() -> None:
    tools, log = make_tools()
    offered: list[list[str]] = []

    def script(messages: object, specs: list[dict[str, object]]) -> object:
        offered.append(sorted(str(s["name"]) for s in specs))
        if len(offered) <= 2:
            return ToolCall("lookup", {"order_id": "A-1"})
        if len(offered) == 3:
            return ToolCall("lookup", {"order_id": "A-1"})  # not offered any more: rejected, never run
        return "Order A-1 has shipped."

    events: list[RunEvent] = []
    agent = Agent("support", ScriptedModel(script), tools=tools)  # LoopGuard is on by default
    result = await agent.run("where is A-1?", runtime=MEMORY, on_event=events.append)
    assert (result.status, result.error_type, result.output) == ("failed", "ToolsWithheld", "Order A-1 has shipped.")
    assert "withheld" in (result.error or "")
    assert [e.data["policy"] for e in events if e.kind == "tools_withheld"] == ["LoopGuard"]
    assert log == ["lookup A-1"]  # executed once
    assert offered[0] == ["cancel", "give_up", "lookup"]
    assert offered[2] == ["give_up"]  # tools withheld after the denial
    denial = [m for m in result.messages if isinstance(m, ToolMessage) and m.is_error][0]
    assert "repeated call" in denial.content
    assert [e.data["policy"] for e in events if e.kind == "policy_decision"] == ["LoopGuard", "LoopGuard"]


async def test_a_read_repeated_after_other_calls_is_not_a_loop() -> None:
    tools, log = make_tools()

    @tool
    def customer(email: str) -> str:
        """Find a customer."""
        log.append(f"customer {email}")
        return "customer C-7 owns A-1"

    script = [
        ToolCall("lookup", {"order_id": "A-1"}),
        ToolCall("customer", {"email": "a@example.com"}),
        ToolCall("lookup", {"order_id": "A-1"}),  # re-read before acting: the state may have changed
        ToolCall("cancel", {"order_id": "A-1"}),
        "cancelled",
    ]
    result = await Agent("support", ScriptedModel(script), tools=[*tools, customer]).run("cancel A-1", runtime=MEMORY)
    assert (result.status, result.error_type) == ("done", None)
    assert log == ["lookup A-1", "customer a@example.com", "lookup A-1", "cancel A-1"]


async def test_a_cycle_of_reads_is_still_a_loop() -> None:
    tools, log = make_tools()

    @tool
    def customer(email: str) -> str:
        """Find a customer."""
        log.append(f"customer {email}")
        return "customer C-7"

    a, b = ToolCall("lookup", {"order_id": "A-1"}), ToolCall("customer", {"email": "a@example.com"})
    script = [a, b, a, b, a, "A-1 shipped"]
    result = await Agent("support", ScriptedModel(script), tools=[*tools, customer]).run("x", runtime=MEMORY)
    assert log == ["lookup A-1", "customer a@example.com"] * 2  # the third lookup was denied
    assert (result.status, result.error_type) == ("failed", "ToolsWithheld")


async def test_a_run_answered_with_tools_withheld_is_recorded_as_such(tmp_path: Path) -> None:
    tools, _ = make_tools()
    script = [ToolCall("lookup", {"order_id": "A-1"})] * 2 + ["Order A-1 has shipped."]
    runtime = Runtime(f"sqlite:///{tmp_path / 'keel.db'}")
    result = await Agent("support", ScriptedModel(script), tools=tools).run("where is A-1?", runtime=runtime)
    record = runtime.get(result.run_id)
    assert (record.status, record.error_type) == ("failed", "ToolsWithheld")


async def test_a_repeat_after_a_side_effect_is_allowed() -> None:
    tools, log = make_tools()
    script = [
        ToolCall("lookup", {"order_id": "A-1"}),
        ToolCall("cancel", {"order_id": "A-1"}),
        ToolCall("lookup", {"order_id": "A-1"}),
        "cancelled",
    ]
    result = await Agent("support", ScriptedModel(script), tools=tools).run("cancel A-1", runtime=MEMORY)
    assert result.status == "done"
    assert log == ["lookup A-1", "cancel A-1", "lookup A-1"]


async def test_pause_mode_pauses_the_run_with_progress_kept() -> None:
    tools, log = make_tools()
    script = [ToolCall("lookup", {"order_id": "A-1"})] * 3
    agent = Agent("support", ScriptedModel(script), tools=tools, policies=[LoopGuard(then="pause")])
    result = await agent.run("x", runtime=MEMORY)
    assert result.status == "needs_attention" and "repeated identical tool calls" in (result.error or "")
    assert log == ["lookup A-1"] and len(result.messages) == 6


def test_bad_configuration() -> None:
    with pytest.raises(ConfigError, match="max_denials"):
        LoopGuard(max_denials=0)
    with pytest.raises(ConfigError, match="withhold"):
        LoopGuard(then="explode")  # type: ignore[arg-type]
