"""What a ContentFilter redacts is never stored: the journal, the run index and the events, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from keel import Agent, RunEvent, Runtime, ToolCall, tool
from keel.models import ScriptedModel
from keel.policies.filters import ContentFilter
from keel.storage._tables import runs, steps

TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@example.com"
RAW = (TOKEN, CARD, EMAIL)


def vault_agent(refunds: list[str]) -> Agent:
    @tool
    def read_config() -> str:
        """Read the deployment config."""
        return f"GITHUB_TOKEN={TOKEN} region=eu"

    @tool(side_effects=True, requires_approval=True)
    def refund(order_id: str) -> str:
        """Refund an order."""
        refunds.append(order_id)
        return f"refunded {order_id}"

    script = [ToolCall("read_config", {}), ToolCall("refund", {"order_id": "A-1"}), f"Refunded to card {CARD}."]
    return Agent("vault", ScriptedModel(script), tools=[read_config, refund], policies=[ContentFilter()])


def stored(database_url: str, run_id: str) -> str:
    """Every journal row and the run's index row, as the database holds them."""
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(steps).where(steps.c.run_id == run_id)).mappings().all()
            index = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).mappings().one()
    finally:
        engine.dispose()
    return json.dumps([dict(r) for r in rows] + [dict(index)], default=str)


async def test_redacted_text_is_never_journaled_indexed_or_emitted_and_replays_the_same(database_url: str) -> None:
    refunds: list[str] = []
    runtime = Runtime(database_url)
    events: list[RunEvent] = []
    paused = await vault_agent(refunds).run(
        f"Refund A-1 and mail {EMAIL} the config", runtime=runtime, on_event=events.append
    )
    assert paused.status == "waiting"
    [approval] = runtime.approvals(run_id=paused.run_id)
    runtime.approve(approval.id, by="ops", dispatch=False)
    done = await runtime.resume(vault_agent(refunds), paused.run_id, on_event=events.append)  # replays the journal
    assert (done.status, refunds) == ("done", ["A-1"])
    assert done.output == "Refunded to card [REDACTED CARD]."
    seen: list[Any] = [m.to_dict() for m in done.messages]
    assert "GITHUB_TOKEN=[REDACTED SECRET] region=eu" in [m["content"] for m in seen]
    assert runtime.get(paused.run_id).task == "Refund A-1 and mail [REDACTED EMAIL] the config"

    everything = stored(database_url, paused.run_id) + json.dumps([e.to_dict() for e in events], default=str)
    everything += json.dumps(seen)
    for secret in RAW:
        assert secret not in everything
    assert "[REDACTED SECRET]" in everything and "[REDACTED CARD]" in everything
    decisions = [e.data["reason"] for e in events if e.kind == "policy_decision" and e.data["action"] == "modify"]
    assert any("1 GitHub token" in reason for reason in decisions)


async def test_a_blocking_filter_still_blocks_what_it_redacted_before_storing(database_url: str) -> None:
    @tool
    def read_config() -> str:
        """Read the deployment config."""
        return f"GITHUB_TOKEN={TOKEN}"

    script = [ToolCall("read_config", {}), "done"]
    agent = Agent("vault", ScriptedModel(script), tools=[read_config], policies=[ContentFilter(on_secret="block")])
    result = await agent.run("read the config", runtime=Runtime(database_url))
    [answer] = [m for m in result.messages if m.role == "tool"]
    assert answer.content == "withheld: the tool result contains secrets (1 secret)"
    assert TOKEN not in stored(database_url, result.run_id)


async def test_a_crashing_tool_s_error_is_redacted_before_the_run_keeps_it(database_url: str) -> None:
    @tool
    def deploy() -> str:
        """Deploy."""
        raise RuntimeError(f"push rejected for token {TOKEN}")

    agent = Agent("vault", ScriptedModel([ToolCall("deploy", {}), "done"]), tools=[deploy], policies=[ContentFilter()])
    events: list[RunEvent] = []
    result = await agent.run("deploy", runtime=Runtime(database_url), on_event=events.append)
    assert result.error_type == "ToolFailed" and "[REDACTED SECRET]" in (result.error or "")
    kept = stored(database_url, result.run_id) + json.dumps([e.to_dict() for e in events], default=str)
    assert TOKEN not in kept
