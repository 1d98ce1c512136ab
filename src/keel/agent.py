"""`Agent`: the declarative description of an agent, and the ways to run it."""

from __future__ import annotations

import asyncio
import copy
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

import pydantic

from ._seam import RunResult
from ._validate import CONTROL_TOOLS, GIVE_UP_SPEC, final_result_spec
from .exceptions import ConfigError, UsageError
from .messages import RunEvent
from .models import Model, resolve_model
from .planning import PLANNING_MODES, PLANNING_TOOLS
from .policies import Policy
from .tools import Tool, Toolset

if TYPE_CHECKING:
    from ._runtime import Runtime
    from .memory._agent import AgentMemory
    from .memory.long_term import MemoryStore

__all__ = ["Agent"]

AGENT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Agent:
    """An agent: a model, instructions, tools, policies and an optional structured output.

    Args:
        name: a stable name (letters, digits, `_`, `.`, `-`); runs are recorded under it.
        model: a model string (`local`, `openai:gpt-4o-mini`, ...) or a `Model`; default from
            ``KEEL_MODEL``, else `local`.
        instructions: the system prompt.
        tools: `Tool` objects, plain typed functions (wrapped with `tool`), or toolsets such as
            `keel.mcp.MCPTools` (expanded into their tools).
        output_type: a pydantic model the final answer must validate against; default free text.
        max_steps: model requests allowed per run; default 20.
        output_retries: times a malformed answer is sent back before the run fails; default 2.
        policies: rules applied in this order at every model and tool call; default a `LoopGuard`
            (pass ``[]`` for none).
        context_budget: prompt tokens allowed; default the model's window minus its output budget.
        planning: `implicit` acts step by step (the default); `explicit` has the model make a validated
            `Plan` first, follow it, and plan again when a step fails (see `keel.planning`).
        max_replans: with explicit planning, times a failed plan is made again before the run fails;
            default 2.
        memory: long-term memory: an `AgentMemory`, or a `MemoryStore` used with its defaults
            (recall into the context, ``remember`` and ``recall`` tools, end-of-run facts); default none.

    Raises:
        ConfigError: any argument is invalid; the message names it and the fix.
    """

    def __init__(
        self,
        name: str,
        model: str | Model | None = None,
        *,
        instructions: str = "",
        tools: Sequence[Tool | Toolset | Callable[..., Any]] = (),
        output_type: type[pydantic.BaseModel] | None = None,
        max_steps: int = 20,
        output_retries: int = 2,
        policies: Sequence[Policy] | None = None,
        context_budget: int | None = None,
        planning: str = "implicit",
        max_replans: int = 2,
        memory: AgentMemory | MemoryStore | None = None,
    ) -> None:
        if not isinstance(name, str) or not AGENT_NAME.match(name):
            raise ConfigError(f"agent name {name!r} is invalid: use 1-64 letters, digits, '_', '.' or '-'")
        self.name = name
        if model is None:
            from .config import settings

            model = settings().model
        self.model: Model = resolve_model(model)
        self.instructions = instructions
        self.tools = [t if isinstance(t, Tool) else _wrap(t, name) for t in _expand(tools)]
        self.memory: AgentMemory | None = None
        if memory is not None:
            from .memory._agent import AgentMemory

            self.memory = memory if isinstance(memory, AgentMemory) else AgentMemory(memory)
            if self.memory.tools:
                self.tools += self.memory.make_tools(name)
        self.tools_by_name: dict[str, Tool] = {}
        for t in self.tools:
            if t.name in CONTROL_TOOLS or t.name in PLANNING_TOOLS:
                raise ConfigError(
                    f"agent {name!r}: tool name {t.name!r} is reserved by keel; rename it with @tool(name=...)"
                )
            if t.name in self.tools_by_name:
                hints = " or ".join(dict.fromkeys([self.tools_by_name[t.name].rename_hint, t.rename_hint]))
                raise ConfigError(
                    f"agent {name!r}: two tools are named {t.name!r}; tool names must be unique, "
                    f"rename one with {hints}"
                )
            self.tools_by_name[t.name] = t
        if output_type is not None and not (
            isinstance(output_type, type) and issubclass(output_type, pydantic.BaseModel)
        ):
            raise ConfigError(f"agent {name!r}: output_type must be a pydantic BaseModel subclass, got {output_type!r}")
        self.output_type = output_type
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"agent {name!r}: max_steps must be a positive integer, got {max_steps!r}")
        if not isinstance(output_retries, int) or output_retries < 0:
            raise ConfigError(f"agent {name!r}: output_retries must be 0 or more, got {output_retries!r}")
        if context_budget is not None and (not isinstance(context_budget, int) or context_budget < 1):
            raise ConfigError(f"agent {name!r}: context_budget must be a positive number of tokens or None")
        if planning not in PLANNING_MODES:
            raise ConfigError(
                f"agent {name!r}: planning must be 'implicit' (act step by step, the default) or 'explicit' "
                f"(make a plan first, then follow it), got {planning!r}"
            )
        if not isinstance(max_replans, int) or isinstance(max_replans, bool) or max_replans < 0:
            raise ConfigError(f"agent {name!r}: max_replans must be 0 or more, got {max_replans!r}")
        if policies is None:
            from .policies.loops import LoopGuard

            policies = [LoopGuard()]
        policies = list(policies)
        from .policies.approvals import RequireApproval

        reachable = [*self.tools]  # a tool, and every tool it falls back to: each passes the same gate
        for t in reachable:
            if t.fallback is not None and t.fallback not in reachable:
                reachable.append(t.fallback)
        needing = [t.name for t in reachable if t.requires_approval]
        covered = [p for p in policies if isinstance(p, RequireApproval)]
        if needing and not any(p.tools is None or set(needing) <= p.tools for p in covered):
            policies.append(RequireApproval())  # tools declared requires_approval always wait for a person
        for p in policies:
            if not isinstance(p, Policy):
                raise ConfigError(f"agent {name!r}: policies must be Policy objects, got {type(p).__name__}")
        self.max_steps = max_steps
        self.output_retries = output_retries
        self.policies: list[Policy] = list(policies)
        self.context_budget = context_budget
        self.planning = planning
        self.max_replans = max_replans
        for p in self.policies:
            p.check_agent(self)
        self.tool_specs: list[dict[str, Any]] = [t.spec() for t in self.tools] + [GIVE_UP_SPEC]
        if output_type is not None:
            self.tool_specs.append(final_result_spec(output_type))

    def with_model(self, model: str | Model) -> Agent:
        """A copy of this agent on another model."""
        clone = copy.copy(self)
        clone.model = resolve_model(model)
        for p in clone.policies:
            p.check_agent(clone)
        return clone

    @property
    def system_prompt(self) -> str:
        """The system message every run starts with."""
        return self.instructions

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, model={self.model.name!r}, tools={[t.name for t in self.tools]})"

    async def run(
        self,
        task: str,
        *,
        runtime: Runtime | None = None,
        run_id: str | None = None,
        on_event: Callable[[RunEvent], None] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> RunResult:
        """Run the agent on `task` and return how the run ended.

        Args:
            task: what to do.
            runtime: where to run; default the durable runtime on ``KEEL_DATABASE_URL``.
            run_id: an id for the run (default a new one); a durable run with a known id resumes.
            on_event: called with every `RunEvent` as it happens.
            metadata: values attached to the run (tenant, user), visible to policies.

        Raises:
            UsageError: the task is empty.
        """
        from ._runtime import Runtime

        rt = runtime or Runtime.default()
        return await rt.run(self, task, run_id=run_id, on_event=on_event, metadata=metadata)

    def run_sync(
        self,
        task: str,
        *,
        runtime: Runtime | None = None,
        run_id: str | None = None,
        on_event: Callable[[RunEvent], None] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> RunResult:
        """Run the agent to completion from synchronous code (not from inside an event loop).

        Raises:
            UsageError: called from a running event loop (use `await agent.run(...)` there).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(task, runtime=runtime, run_id=run_id, on_event=on_event, metadata=metadata))
        raise UsageError("run_sync() was called inside a running event loop; use `await agent.run(...)` instead")

    async def stream(
        self, task: str, *, runtime: Runtime | None = None, metadata: dict[str, Any] | None = None
    ) -> AsyncIterator[RunEvent]:
        """Run the agent and yield each `RunEvent` as it happens; the last is `run_finished`."""
        queue: asyncio.Queue[RunEvent | None] = asyncio.Queue()
        job = asyncio.ensure_future(self.run(task, runtime=runtime, on_event=queue.put_nowait, metadata=metadata))
        job.add_done_callback(lambda _: queue.put_nowait(None))
        while (event := await queue.get()) is not None:
            yield event
        job.result()


def _expand(tools: Sequence[Tool | Toolset | Callable[..., Any]]) -> list[Tool | Callable[..., Any]]:
    """Replace each toolset by its tools."""
    out: list[Tool | Callable[..., Any]] = []
    for t in tools:
        if not isinstance(t, Tool) and isinstance(t, Toolset):
            out.extend(t.tools())
        else:
            out.append(t)
    return out


def _wrap(func: Callable[..., Any], agent: str) -> Tool:
    if not callable(func):
        raise ConfigError(f"agent {agent!r}: tools must be functions or Tool objects, got {func!r}")
    return Tool(func)
