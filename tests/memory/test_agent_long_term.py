"""Long-term memory in the agent: recall into the context, remember/recall tools, end-of-run facts, replay."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from keel import Agent, ConfigError, RunEvent, Runtime, ToolCall, tool
from keel.memory import AgentMemory, Namespace, SqliteVecStore
from keel.messages import Message, SystemMessage, ToolMessage
from keel.models import ScriptedModel


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteVecStore]:
    s = SqliteVecStore(tmp_path / "memory.db")
    s.add(Namespace("acme", "support"), "Refunds reach the original card within five business days.")
    s.add(Namespace("acme", "support"), "International parcels take ten to fifteen days.")
    yield s
    s.close()


def system_of(messages: Sequence[Message]) -> str:
    assert isinstance(messages[0], SystemMessage)
    return messages[0].content or ""


def test_memories_carry_across_sessions_and_never_across_users(store: SqliteVecStore) -> None:
    events: list[RunEvent] = []
    customer = {"tenant": "acme", "user": "C-1"}
    first = Agent(
        "support",
        ScriptedModel(
            [
                ToolCall("remember", {"fact": "The customer wants to be contacted by email, never by phone."}),
                "Noted: we will only email you.",
                "- The customer lives in Porto, Portugal.",  # the end-of-run facts
            ]
        ),
        instructions="You help customers.",
        memory=store,
    )
    done = first.run_sync(
        "Please only email me from now on.", runtime=Runtime.in_memory(), metadata=customer, on_event=events.append
    )
    assert done.status == "done" and done.output == "Noted: we will only email you."
    assert done.steps == 3  # two requests, and the one asking for the facts learned
    mine = Namespace("acme", "support", "C-1")
    texts = {h.memory.text: h.memory.source for h in store.search(mine, "contact preferences and address", k=5)}
    assert set(texts) == {
        "The customer wants to be contacted by email, never by phone.",
        "The customer lives in Porto, Portugal.",
    }
    assert texts["The customer wants to be contacted by email, never by phone."].run_id == done.run_id
    assert texts["The customer wants to be contacted by email, never by phone."].step == 1
    assert (
        texts["The customer lives in Porto, Portugal."].kind,
        texts["The customer lives in Porto, Portugal."].step,
    ) == (
        "summary",
        3,
    )
    written = [e for e in events if e.kind == "memory_written"]
    assert [m["text"] for m in written[0].data["memories"]] == ["The customer lives in Porto, Portugal."]

    seen: list[str] = []

    def answer(messages: Sequence[Message], tools: Any) -> str:
        seen.append(system_of(messages))
        return "NONE" if len(seen) > 1 else "We will send the tracking link by email."

    second = Agent("support", ScriptedModel(answer), instructions="You help customers.", memory=store)
    events.clear()
    result = second.run_sync(
        "How will you contact me about my order?",
        runtime=Runtime.in_memory(),
        metadata=customer,
        on_event=events.append,
    )
    assert result.status == "done"
    assert seen[0].startswith("You help customers.\n\nMemories from earlier conversations")
    assert "email, never by phone." in seen[0]
    assert f"run {done.run_id} step 1]" in seen[0]  # the source
    assert "[score 0." in seen[0]
    [recalled] = [e for e in events if e.kind == "memory_recalled"]
    assert 0 < recalled.data["tokens"] <= recalled.data["budget"] <= 400
    assert all(m["score"] >= 0.25 for m in recalled.data["memories"])
    assert store.count(mine) == 2  # "NONE": nothing new was written

    other: list[str] = []
    third = Agent("support", ScriptedModel(lambda m, t: other.append(system_of(m)) or "NONE"), memory=store)
    third.run_sync(
        "How will you let me know my parcel has shipped? I also want a refund.",
        runtime=Runtime.in_memory(),
        metadata={"tenant": "acme", "user": "C-2"},
    )
    assert "email" not in other[0] and "Porto" not in other[0]  # another customer's memories stay theirs
    assert "Refunds reach the original card" in other[0]  # the agent's shared knowledge is for everyone
    fourth: list[str] = []
    Agent("support", ScriptedModel(lambda m, t: fourth.append(system_of(m)) or "NONE"), memory=store).run_sync(
        "Please only email me. Refunds?", runtime=Runtime.in_memory(), metadata={"tenant": "globex", "user": "C-1"}
    )
    assert fourth[0] == ""  # another tenant: nothing recalled at all


def test_the_recall_tool_searches_the_users_and_the_shared_memories(store: SqliteVecStore) -> None:
    store.add(Namespace("acme", "support", "C-7"), "The customer is a gold tier member since 2021.")
    model = ScriptedModel([ToolCall("recall", {"query": "membership level"}), "You are gold tier."])
    agent = Agent("support", model, memory=AgentMemory(store, recall_k=0, summarize=False))
    result = agent.run_sync("What tier am I?", runtime=Runtime.in_memory(), metadata={"tenant": "acme", "user": "C-7"})
    assert result.status == "done"
    tool_result = next(m for m in result.messages if isinstance(m, ToolMessage))
    found = json.loads(tool_result.content)["memories"]
    assert found[0] == {
        "text": "The customer is a gold tier member since 2021.",
        "score": found[0]["score"],
        "source": "import",
    }
    assert found[0]["score"] >= 0.25 and all(m["score"] >= 0.25 for m in found)  # the unrelated ones are left out
    assert system_of(result.messages) == ""  # recall_k=0: nothing recalled automatically
    assert {s["name"] for s in agent.tool_specs} >= {"remember", "recall"}


def test_recall_stays_inside_its_token_budget(store: SqliteVecStore) -> None:
    ns = Namespace("acme", "support", "C-9")
    for text in [
        "The customer wants parcels delivered early in the morning, before eight, on weekdays only.",
        "Deliveries should go to the back door of the house, next to the garden shed.",
        "The customer asks couriers to ring twice because the doorbell is quiet.",
        "Parcels must never be left with the neighbours at number twelve.",
        "On Saturdays the customer is away, so deliveries should wait for Monday.",
    ]:
        store.add(ns, text)
    assert store.count(ns) == 5
    events: list[RunEvent] = []
    agent = Agent(
        "support",
        ScriptedModel(["ok"]),
        memory=AgentMemory(store, recall_k=5, recall_tokens=60, summarize=False, min_score=0.0),
    )
    agent.run_sync(
        "When should parcels be delivered?",
        runtime=Runtime.in_memory(),
        metadata={"tenant": "acme", "user": "C-9"},
        on_event=events.append,
    )
    [recalled] = [e for e in events if e.kind == "memory_recalled"]
    assert recalled.data["budget"] == 60
    assert 1 <= len(recalled.data["memories"]) < 5 and recalled.data["tokens"] <= 60


def test_bad_memory_configuration_is_refused(store: SqliteVecStore) -> None:
    with pytest.raises(ConfigError, match="memory.recall_k must be an integer from 0 to 50"):
        AgentMemory(store, recall_k=-1)
    with pytest.raises(ConfigError, match="memory.store must be a MemoryStore"):
        AgentMemory("sqlite")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="memory.tenant"):
        AgentMemory(store, tenant="a b")
    with pytest.raises(ConfigError, match="'remember' .*reserved|two tools are named 'remember'"):

        @tool
        def remember(fact: str) -> str:
            """Remember."""
            return fact

        Agent("x", ScriptedModel(["ok"]), tools=[remember], memory=store)


def test_a_resumed_run_replays_its_memory_steps(store: SqliteVecStore, tmp_path: Path) -> None:
    from keel.policies.approvals import RequireApproval

    refunds: list[str] = []

    @tool(side_effects=True)
    def refund(order_id: str) -> str:
        """Refund an order."""
        refunds.append(order_id)
        return "refunded"

    script = [
        ToolCall("remember", {"fact": "The customer asked for refunds to go to store credit."}),
        ToolCall("refund", {"order_id": "A-1"}),
        "Refunded as store credit.",
        "NONE",
    ]
    agent = Agent(
        "support", ScriptedModel(script), tools=[refund], memory=store, policies=[RequireApproval(tools={"refund"})]
    )
    url = f"sqlite:///{tmp_path / 'keel.db'}"
    runtime = Runtime(url)
    customer = {"tenant": "acme", "user": "C-3"}
    first = agent.run_sync("Refund A-1 as store credit please", runtime=runtime, metadata=customer)
    assert first.status == "waiting"
    mine = Namespace("acme", "support", "C-3")
    assert store.count(mine) == 1
    # A memory written now would be recalled by a new run; the resumed run replays its journaled recall.
    store.add(Namespace("acme", "support"), "Store credit refunds are instant and never expire.")
    [approval] = runtime.approvals(run_id=first.run_id)
    runtime.approve(approval.id, by="lead", arguments_hash=approval.arguments_hash)
    done = asyncio.run(runtime.resume(agent, first.run_id))
    assert (done.status, done.output) == ("done", "Refunded as store credit.")
    assert refunds == ["A-1"]
    assert store.count(mine) == 1  # remember was not run again
    assert "never expire" not in system_of(done.messages)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        names = [
            r[0]
            for r in conn.execute(
                sa.text("SELECT name FROM keel_steps WHERE run_id = :r ORDER BY seq"), {"r": first.run_id}
            )
        ]
    engine.dispose()
    assert names[0] == "memory:recall" and names[-1] == "memory:summary" and "tool:remember" in names


def test_a_run_without_a_user_writes_nothing(store: SqliteVecStore) -> None:
    model = ScriptedModel([ToolCall("remember", {"fact": "The customer likes tea."}), "Noted."])  # no summary asked
    result = Agent("support", model, memory=store).run_sync(
        "I like tea", runtime=Runtime.in_memory(), metadata={"tenant": "acme"}
    )
    assert (result.status, result.steps) == ("done", 2)
    refused = next(m for m in result.messages if isinstance(m, ToolMessage))
    assert refused.is_error and "no known user" in refused.content
    assert store.count(Namespace("acme", "support")) == 2  # only the two shared memories of the fixture


def test_the_live_view_shows_recalled_memories(store: SqliteVecStore) -> None:
    import io

    from rich.console import Console

    from keel.cli._common import LiveView

    buffer = io.StringIO()
    view = LiveView(Console(file=buffer, width=200, color_system=None))
    Agent("support", ScriptedModel(["ok"]), memory=store).run_sync(
        "How long do refunds take?", runtime=Runtime.in_memory(), metadata={"tenant": "acme"}, on_event=view
    )
    assert "recalled (0." in buffer.getvalue()
    assert "Refunds reach the original card within five business days." in buffer.getvalue()
