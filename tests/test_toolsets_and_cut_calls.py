"""The two seams MCP tools use, without MCP: toolsets in `tools=`, and calls cut off mid-flight."""

from __future__ import annotations

import pytest

from keel import Agent, ConfigError, Runtime, Tool, ToolCall, tool
from keel.exceptions import CallInterrupted
from keel.messages import ToolMessage
from keel.models import ScriptedModel
from keel.tools import Toolset

MEMORY = Runtime.in_memory()


class Pair:
    """A toolset of two tools."""

    def __init__(self, prefix: str = "") -> None:
        @tool(name=f"{prefix}double")
        def double(x: int) -> int:
            """Double x."""
            return 2 * x

        @tool(name=f"{prefix}half")
        def half(x: int) -> float:
            """Halve x."""
            return x / 2

        self._tools = [double, half]

    def tools(self) -> list[Tool]:
        return list(self._tools)


def test_a_toolset_is_expanded_into_its_tools_in_order() -> None:
    assert isinstance(Pair(), Toolset)

    @tool
    def first(x: int) -> int:
        """Identity."""
        return x

    agent = Agent("set", ScriptedModel(["-"]), tools=[first, Pair(), Pair("b_")])
    assert [t.name for t in agent.tools] == ["first", "double", "half", "b_double", "b_half"]
    assert [s["name"] for s in agent.tool_specs][:5] == ["first", "double", "half", "b_double", "b_half"]


def test_a_clash_between_toolsets_names_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"two tools are named 'double'.*@tool\(name=\.\.\.\)"):
        Agent("set", ScriptedModel(["-"]), tools=[Pair(), Pair()])


async def test_a_guarded_call_cut_off_mid_flight_asks_a_person() -> None:
    calls: list[int] = []

    @tool(side_effects=True)
    async def transfer(amount: int) -> str:
        """Move money."""
        calls.append(amount)
        raise CallInterrupted("transfer: the bank's server went away mid-call; it may or may not have taken effect")

    model = ScriptedModel([ToolCall("transfer", {"amount": 5}), "never"])
    result = await Agent("bank", model, tools=[transfer]).run("pay", runtime=MEMORY)
    assert (result.status, result.error_type) == ("needs_attention", "NeedsAttention")
    assert "the bank's server went away mid-call" in (result.error or "")
    assert "retry it, skip it" in (result.error or "")
    assert calls == [5]  # not repeated
    assert not [m for m in result.messages if isinstance(m, ToolMessage)]
