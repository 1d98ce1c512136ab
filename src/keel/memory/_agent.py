"""Long-term memory in a run: the `remember` and `recall` tools, recall into the context, end-of-run facts.

`AgentMemory` configures it: ``Agent(..., memory=AgentMemory(store))`` (or just ``memory=store``).
A run's namespace is the tenant and user from the run's metadata (``metadata={"tenant": ..., "user":
...}``, default tenant `AgentMemory.tenant`, no user) and the agent's name. Searches read the user's
memories and the agent's shared ones (user ``""``, e.g. a knowledge base); writes go to the user's. A
run without a user writes nothing: its agent's shared memories are loaded by code, never by a run.

Every search and write happens inside a step of the loop (ARCHITECTURE.md, rule 1), so a resumed run
replays the journaled results instead of searching or writing again:

- ``memory:recall`` at the start of a run: the task is the query; the best memories (at least
  `min_score`, at most `recall_k`, inside `recall_tokens`) are added to the system message, each with
  its score and source.
- the ``remember`` and ``recall`` tools run as tool steps; ``remember`` is idempotent (the memory's id
  comes from the call's idempotency key).
- ``memory:summary`` and ``memory:write`` when a run finishes, if `summarize`: the model lists the
  lasting facts it learned, and each is stored (near-duplicates merge into what is already known).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.resources
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._participant import Participant
from .._seam import memory_step
from ..exceptions import ConfigError, ToolError, UsageError
from ..messages import SystemMessage, UserMessage
from ..tools import Tool, ToolContext, tool
from .long_term import Hit, MemoryStore, Namespace, Source

if TYPE_CHECKING:
    from .._participant import RunView

__all__ = ["AgentMemory", "MemoryParticipant"]

MAX_FACTS = 10
MAX_FACT_CHARS = 500


@functools.cache
def _prompts() -> dict[str, str]:
    text = importlib.resources.files("keel").joinpath("prompts", "memory.md").read_text("utf-8")
    sections: dict[str, str] = {}
    for block in text.split("## ")[1:]:
        name, _, body = block.partition("\n")
        sections[name.strip()] = body.strip()
    return sections


@dataclass
class AgentMemory:
    """How an agent uses long-term memory.

    Attributes:
        store: where memories live (`SqliteVecStore`, `PgVectorStore`, or any `MemoryStore`).
        tenant: the tenant when a run's metadata names none; default ``"default"``.
        recall_k: memories recalled into the context at the start of a run, from the user's and
            from the agent's shared memories each; 0 turns automatic recall off; default 3.
        min_score: the least similarity a memory needs to be recalled (automatically or by the
            ``recall`` tool); default 0.25.
        recall_tokens: tokens the recalled memories may take (never more than a quarter of the
            model's prompt budget); default 400.
        tools: offer the model the ``remember`` and ``recall`` tools; default True.
        summarize: when a run finishes, ask the model for the lasting facts it learned and store
            them; default True.
        ttl: seconds a written memory lives; default None (kept until deleted).
    """

    store: MemoryStore
    tenant: str = "default"
    recall_k: int = 3
    min_score: float = 0.25
    recall_tokens: int = 400
    tools: bool = True
    summarize: bool = True
    ttl: float | None = None

    def __post_init__(self) -> None:
        if not hasattr(self.store, "search") or not hasattr(self.store, "add"):
            raise ConfigError(f"memory.store must be a MemoryStore (SqliteVecStore, PgVectorStore), got {self.store!r}")
        if not isinstance(self.recall_k, int) or not 0 <= self.recall_k <= 50:
            raise ConfigError(f"memory.recall_k must be an integer from 0 to 50, got {self.recall_k!r}")
        if not -1 <= self.min_score <= 1:
            raise ConfigError(f"memory.min_score must be a similarity between -1 and 1, got {self.min_score!r}")
        if not isinstance(self.recall_tokens, int) or self.recall_tokens < 1:
            raise ConfigError(f"memory.recall_tokens must be a positive number of tokens, got {self.recall_tokens!r}")
        try:
            Namespace(self.tenant)
        except UsageError as exc:
            raise ConfigError(f"memory.tenant: {exc}") from None

    # Namespaces.

    def namespace(self, agent: str, metadata: dict[str, Any] | Any) -> Namespace:
        """The namespace a run writes to: its tenant and user (from its metadata) and the agent.

        Raises:
            UsageError: the metadata's tenant or user is not a valid name.
        """
        tenant = str(metadata.get("tenant") or self.tenant)
        user = str(metadata.get("user") or "")
        return Namespace(tenant, agent, user)

    def search(self, agent: str, metadata: Any, query: str, k: int, min_score: float | None = None) -> list[Hit]:
        """The best `k` memories for `query` of the run's user, then the best `k` of the agent's shared ones.

        A user's own memories come first: they are about the person asking, and a shared knowledge base
        would otherwise crowd them out.
        """
        own = self.namespace(agent, metadata)
        spaces = [own] if not own.user else [own, Namespace(own.tenant, agent, "")]
        hits: list[Hit] = []
        for ns in spaces:
            hits.extend(self.store.search(ns, query, k=k, min_score=min_score, missing_ok=True))
        return hits

    # Tools.

    def make_tools(self, agent: str) -> list[Tool]:
        """The ``remember`` and ``recall`` tools of `agent`."""
        memory = self

        @tool(name="remember", side_effects=True, idempotent=True)
        def remember(fact: str, ctx: ToolContext) -> str:
            """Save a lasting fact for later conversations: a preference or detail the user gave.

            Args:
                fact: the fact, as one short self-contained sentence.
                ctx: the call's context (the run's tenant and user).
            """
            ns = memory.namespace(agent, ctx.metadata)
            if not ns.user:
                raise ToolError(
                    "not remembered: this conversation has no known user to remember it for "
                    "(the run was started without metadata={'user': ...})"
                )
            # A repeated call (a retried step) must not store the fact twice: merging near-duplicates
            # takes care of it, or, with merging off, the id derived from the idempotency key.
            key = None
            if memory.store.merge_threshold is None:
                key = hashlib.sha256(ctx.idempotency_key.encode()).hexdigest()[:32]
            try:
                saved = memory.store.add(
                    ns, fact, source=Source(ctx.run_id, ctx.step, "remember"), ttl=memory.ttl, id=key
                )
            except UsageError as exc:
                raise ToolError(f"not remembered: {exc}") from None
            return f"remembered (id {saved.id})"

        @tool(name="recall", untrusted=True)
        def recall(query: str, ctx: ToolContext) -> dict[str, Any]:
            """Search long-term memory: facts saved in earlier conversations, and the shared knowledge.

            Args:
                query: what to look for, in a few words.
                ctx: the call's context (the run's tenant and user).
            """
            try:
                hits = memory.search(agent, ctx.metadata, query, 5, memory.min_score)
            except UsageError as exc:
                raise ToolError(f"recall failed: {exc}") from None
            return {"memories": [_line(h) for h in hits]}

        return [remember, recall]


def _line(hit: Hit) -> dict[str, Any]:
    return {"text": hit.memory.text, "score": round(hit.score, 3), "source": str(hit.memory.source)}


# What the participant does in a run; each search and write happens inside a step.


def split_recalled(system: str) -> tuple[str, str]:
    """A system message's own text and the recalled memories `recall_into_context` appended to it."""
    header = _prompts()["recalled"].partition("\n")[0]
    own, found, recalled = system.partition(header)
    return (own, found + recalled) if found else (system, "")


class MemoryParticipant(Participant):
    """Agent memory in the loop: recall into the context at the start, the run's facts at the end."""

    async def on_start(self, run: RunView) -> None:
        """Recall the memories the task calls for into the system message."""
        await recall_into_context(run)

    async def on_final(self, run: RunView) -> None:
        """Store the lasting facts of the finished run."""
        await remember_run_facts(run)


async def recall_into_context(run: RunView) -> None:
    """Search memories for the task and add the best to the system message (a ``memory:recall`` step)."""
    agent, memory = run.agent, run.agent.memory
    if memory is None or memory.recall_k == 0:
        return
    task = run.messages[1].content or ""

    async def step() -> dict[str, Any]:
        hits = await asyncio.to_thread(memory.search, agent.name, run.metadata, task, memory.recall_k, memory.min_score)
        budget = min(memory.recall_tokens, run.memory.prompt_budget(agent.model) // 4)
        lines: list[str] = []
        chosen: list[dict[str, Any]] = []
        tokens = 0
        for hit in hits:
            line = f"- [score {hit.score:.2f}, {hit.memory.source}] {hit.memory.text}"
            cost = await agent.model.count_tokens([SystemMessage(line)], [])
            if tokens + cost > budget:
                break
            lines.append(line)
            chosen.append({"id": hit.memory.id, **_line(hit)})
            tokens += cost
        return {"memories": chosen, "block": "\n".join(lines), "tokens": tokens, "budget": budget}

    out = await run.steps(memory_step("recall"), step)
    if out["memories"]:
        block = _prompts()["recalled"].format(memories=out["block"])
        system = run.messages[0].content or ""
        run.set_system(f"{system}\n\n{block}" if system else block)
    run.event("memory_recalled", memories=out["memories"], tokens=out["tokens"], budget=out["budget"])


async def remember_run_facts(run: RunView) -> None:
    """Ask the model for the lasting facts of the finished run and store them (two steps)."""
    from .._tool_exec import model_step

    agent, memory = run.agent, run.agent.memory
    if memory is None or not memory.summarize or not memory.namespace(agent.name, run.metadata).user:
        return  # no summary for a run without a user: there is no one to remember the facts for
    step = run.next_step()
    messages = [*run.messages, UserMessage(_prompts()["summary"])]
    raw = await run.steps(memory_step("summary"), functools.partial(model_step, agent.model, run.memory, messages, []))
    from ..messages import ModelResponse

    response = ModelResponse.from_dict(raw["response"])
    run.add_usage(response.usage)
    facts = _facts(response.message.content or "")
    if not facts:
        run.event("memory_written", memories=[], source="summary")
        return
    ns = memory.namespace(agent.name, run.metadata)
    source = Source(run.run_id, step, "summary")

    async def write() -> dict[str, Any]:
        def add_all() -> list[dict[str, Any]]:
            saved = []
            for fact in facts:
                m = memory.store.add(ns, fact, source=source, ttl=memory.ttl)
                saved.append({"id": m.id, "text": m.text, "merged": m.created_at != m.updated_at})
            return saved

        started = time.perf_counter()
        saved = await asyncio.to_thread(add_all)
        return {"memories": saved, "duration_ms": round((time.perf_counter() - started) * 1000, 3)}

    out = await run.steps(memory_step("write"), write)
    run.event("memory_written", memories=out["memories"], source="summary")


def _facts(text: str) -> list[str]:
    """The ``- fact`` lines of the model's summary (none for ``NONE``)."""
    facts = []
    for line in text.splitlines():
        line = line.strip()
        if line[:1] in "-*•" and line[1:].strip():
            fact = line[1:].strip()
            if fact.upper().rstrip(".") != "NONE":
                facts.append(fact[:MAX_FACT_CHARS])
    return facts[:MAX_FACTS]
