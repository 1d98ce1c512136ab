"""A policy's per-run state: owned by the run, never shared with or evicted by another run, dropped at its end."""

from __future__ import annotations

import asyncio
import gc
import weakref

from keel import Agent, Decision, Policy, PolicyContext, Runtime, ToolCall, tool
from keel.models import ModelProfile, ScriptedModel
from keel.policies.budget import Budget

LIVE = 5000
MEMORY = Runtime.in_memory()


async def test_thousands_of_live_runs_keep_their_own_budget_state() -> None:
    """Every run spends on its first request, all wait together in a tool, then each asks again.

    Each second request could pass its own run's cap only because of what that run spent already:
    a run whose state was dropped or mixed up while it was alive would be let through.
    """
    parked, release = 0, asyncio.Event()
    everyone = asyncio.Event()

    @tool
    async def wait() -> str:
        """Wait for the other runs."""
        nonlocal parked
        parked += 1
        if parked == LIVE:
            everyone.set()
        await release.wait()
        return "ok"

    model = ScriptedModel([ToolCall("wait", {}), "done"], name="priced", profile=ModelProfile(max_output_tokens=1000))
    # a request holds exactly $1 and costs a few cents: the second could pass $1.01 only after the first
    budget = Budget(max_usd=1.01, prices={"priced": (0.0, 1000.0)})
    agent = Agent("calc", model, tools=[wait], policies=[budget])
    runs = [asyncio.ensure_future(agent.run("wait", runtime=MEMORY)) for _ in range(LIVE)]
    await asyncio.wait_for(everyone.wait(), timeout=120)
    release.set()
    results = await asyncio.gather(*runs)
    assert {(r.status, r.error_type, r.steps) for r in results} == {("failed", "BudgetExceeded", 2)}
    assert len({r.run_id for r in results}) == LIVE


class Keeps(Policy):
    """Keeps an object in its per-run state, and remembers it weakly."""

    def __init__(self) -> None:
        self.kept: list[weakref.ref[object]] = []
        self.states: list[dict[str, object]] = []

    async def before_model(self, ctx: PolicyContext) -> Decision:
        if "mine" not in ctx.state:
            thing = ctx.state["mine"] = type("Thing", (), {})()
            self.kept.append(weakref.ref(thing))
            self.states.append(ctx.state)
        return Decision.allow()


class Pauses(Policy):
    async def before_tool(self, ctx: PolicyContext, call: ToolCall, t: object) -> Decision:
        return Decision.pause("a person decides")


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def test_each_policy_has_its_own_state_in_each_run_and_the_run_drops_it_when_it_ends() -> None:
    first, second = Keeps(), Keeps()
    agent = Agent(
        "calc", ScriptedModel([ToolCall("add", {"a": 1, "b": 2}), "3"]), tools=[add], policies=[first, second]
    )
    await asyncio.gather(agent.run("x", runtime=MEMORY), agent.run("y", runtime=MEMORY))
    assert len(first.kept) == len(second.kept) == 2  # two runs, each with its own slot per policy
    assert first.states[0] is not first.states[1] and first.states[0] is not second.states[0]
    gc.collect()
    assert [ref() for ref in first.kept + second.kept] == [None] * 4
    assert all(state == {} for state in first.states + second.states)


async def test_a_paused_segment_drops_its_state_too() -> None:
    keeps = Keeps()
    agent = Agent(
        "calc", ScriptedModel([ToolCall("add", {"a": 1, "b": 2}), "3"]), tools=[add], policies=[keeps, Pauses()]
    )
    result = await agent.run("x", runtime=MEMORY)
    assert result.status == "waiting"
    gc.collect()
    assert [ref() for ref in keeps.kept] == [None]
