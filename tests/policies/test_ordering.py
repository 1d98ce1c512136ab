"""Ordering: policies decide in their configured order, and a side-effecting tool never starts before all have."""

from __future__ import annotations

import asyncio

from keel import Agent, Decision, Policy, PolicyContext, Runtime, ToolCall, tool
from keel.models import ScriptedModel
from keel.tools import Tool

MEMORY = Runtime.in_memory()


class SlowGuard(Policy):
    """A guardrail that takes its time (until the test lets it answer), then trips."""

    def __init__(self, verdict: Decision, log: list[str]) -> None:
        self.entered, self.release, self.verdict, self.log = asyncio.Event(), asyncio.Event(), verdict, log

    async def before_tool(self, ctx: PolicyContext, call: ToolCall, tool: Tool) -> Decision:
        self.log.append(f"guard:{call.name}")
        self.entered.set()
        await self.release.wait()
        return self.verdict


class Recorder(Policy):
    def __init__(self, name: str, log: list[str]) -> None:
        self._name, self.log = name, log

    @property
    def name(self) -> str:
        return self._name

    async def before_tool(self, ctx: PolicyContext, call: ToolCall, tool: Tool) -> Decision:
        self.log.append(f"{self._name}:{call.name}")
        return Decision.allow()


def charging(log: list[str]) -> Tool:
    @tool(side_effects=True)
    async def charge(amount: int) -> str:
        """Charge the card (fast)."""
        log.append(f"charged {amount}")
        return "charged"

    return charge


async def race(verdict: Decision) -> tuple[list[str], str, object]:
    log: list[str] = []
    guard = SlowGuard(verdict, log)
    script = [[ToolCall("charge", {"amount": 5}), ToolCall("charge", {"amount": 7})], "done"]
    agent = Agent("pay", ScriptedModel(script), tools=[charging(log)], policies=[Recorder("first", log), guard])
    run = asyncio.ensure_future(agent.run("pay", runtime=MEMORY))
    await asyncio.wait_for(guard.entered.wait(), 10)
    for _ in range(50):  # give a racing tool every chance to start while the guard deliberates
        await asyncio.sleep(0)
    during = list(log)
    guard.release.set()
    result = await asyncio.wait_for(run, 10)
    return during, result.status, log


async def test_a_tripping_slow_guardrail_means_the_fast_tool_ran_zero_times() -> None:
    during, status, log = await race(Decision.stop("card looks stolen"))
    assert during == ["first:charge", "guard:charge"]  # in the configured order; nothing charged meanwhile
    assert status == "failed"
    assert [e for e in log if e.startswith("charged")] == []  # neither call of the response ran


async def test_a_denying_slow_guardrail_blocks_each_call_and_the_run_goes_on() -> None:
    during, status, log = await race(Decision.deny("over the limit"))
    assert during == ["first:charge", "guard:charge"]
    assert status == "done"
    assert [e for e in log if e.startswith("charged")] == []


async def test_an_allowing_slow_guardrail_lets_each_call_run_only_after_it_decided() -> None:
    during, status, log = await race(Decision.allow())
    assert during == ["first:charge", "guard:charge"]
    assert (status, log[2:]) == ("done", ["charged 5", "first:charge", "guard:charge", "charged 7"])
