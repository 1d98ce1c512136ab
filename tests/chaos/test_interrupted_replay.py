"""Crashes around a person's decision on an interrupted call, made deterministic in one process.

A tool raises `Crash` (a BaseException, which nothing in keel catches) right after its side effect:
the run stops where a SIGKILL would stop it, with the call journaled as started and not finished, and
`Runtime.resume` replays it as a restarted worker would. The chaos suite found both cases below.
"""

from __future__ import annotations

import asyncio

import pytest

from keel import Agent, Runtime, ToolCall, tool
from keel.models import ScriptedModel

from .conftest import ChaosDatabases


class Crash(BaseException):
    """The process dies here."""


def crashing_agent(plan: list[str]) -> tuple[Agent, list[str]]:
    """An agent that emails, then looks something up; `plan` pops 'crash' or 'ok' before each tool call."""
    sent: list[str] = []

    @tool(side_effects=True)
    async def email(text: str) -> str:
        """Email the customer."""
        sent.append(text)
        if plan and plan.pop(0) == "crash":
            raise Crash
        return "sent"

    @tool
    async def lookup(order_id: str) -> str:
        """Look an order up."""
        if plan and plan.pop(0) == "crash":
            raise Crash
        return "delivered"

    script = [ToolCall("email", {"text": "refunded"}), ToolCall("lookup", {"order_id": "A-1"}), "All done."]
    return Agent("mailer", ScriptedModel(script), tools=[email, lookup]), sent


def crash(runtime: Runtime, agent: Agent, run_id: str, *, first: bool = False) -> None:
    with pytest.raises(Crash):
        if first:
            asyncio.run(runtime.run(agent, "email the customer", run_id=run_id))
        else:
            asyncio.run(runtime.resume(agent, run_id))


@pytest.mark.chaos
def test_a_retry_cut_off_in_turn_asks_again_instead_of_repeating(chaos_databases: ChaosDatabases) -> None:
    runtime = Runtime(chaos_databases.keel_url)
    agent, sent = crashing_agent(["crash", "crash", "ok"])
    crash(runtime, agent, "run_retry_cut", first=True)
    assert asyncio.run(runtime.resume(agent, "run_retry_cut")).status == "needs_attention"

    [request] = runtime.approvals(run_id="run_retry_cut")
    runtime.resolve(request.id, "retry", by="ops", dispatch=False)
    crash(runtime, agent, "run_retry_cut")  # the retried email went out, and the worker died again
    assert len(sent) == 2

    # the old "retry" decision does not send a third email: the run asks again
    status = asyncio.run(runtime.resume(agent, "run_retry_cut")).status
    assert len(sent) == 2
    assert status == "needs_attention"
    [again] = runtime.approvals(run_id="run_retry_cut")
    assert again.id != request.id and again.kind == "interrupted"
    runtime.resolve(again.id, "skip", by="ops", result="sent (checked with the mail server)", dispatch=False)
    result = asyncio.run(runtime.resume(agent, "run_retry_cut"))
    assert (result.status, result.output, len(sent)) == ("done", "All done.", 2)


@pytest.mark.chaos
def test_a_run_replays_past_a_resolved_interruption(chaos_databases: ChaosDatabases) -> None:
    runtime = Runtime(chaos_databases.keel_url)
    agent, sent = crashing_agent(["crash", "crash", "ok"])
    crash(runtime, agent, "run_resolved", first=True)
    assert asyncio.run(runtime.resume(agent, "run_resolved")).status == "needs_attention"
    [request] = runtime.approvals(run_id="run_resolved")
    runtime.resolve(request.id, "skip", by="ops", result="sent", dispatch=False)
    crash(runtime, agent, "run_resolved")  # the email is settled; the lookup after it dies

    # the replay finds the email done and steps past the decision journaled after it
    result = asyncio.run(runtime.resume(agent, "run_resolved"))
    assert (result.status, result.output, len(sent)) == ("done", "All done.", 1)
    assert runtime.approvals(run_id="run_resolved") == []
