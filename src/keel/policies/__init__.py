"""Policies: the one seam for rules that govern a run.

Guardrails, approvals, content filters, budgets and loop detection are all `Policy` objects with
the same hooks. Each hook returns a `Decision`. Policies run in the order the agent lists them, and
a tool never starts before every policy has decided about it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .._seam import policy_step

if TYPE_CHECKING:
    from .._seam import AgentSpec, StepRunner
    from ..messages import Message, ModelResponse, ToolCall, ToolMessage, Usage
    from ..models._base import Model
    from ..tools import Tool

__all__ = ["Decision", "Policy", "PolicyContext", "Redaction", "Where", "redact"]

Action = Literal["allow", "deny", "modify", "pause", "stop"]
Where = Literal["task", "tool_results", "output"]
"""What a text is: the run's task, a tool's result, or the model's text."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What a policy decided.

    Attributes:
        action: `allow`; `deny` (the model sees `reason` instead of the result); `modify` (use
            `arguments` or `content` instead); `pause` (wait for a person); `stop` (end the run).
        reason: why; shown to the model on deny, recorded in events always.
        arguments: replacement tool arguments, for `modify` in `before_tool`.
        content: replacement tool result text, for `modify` in `after_tool`.
        tools: the only tools to offer in this request, for `modify` in `before_model` (an empty list
            leaves the model only the final answer or giving up).
        policy: the deciding policy's name (filled in by the loop).
        meta: details for the person or the engine (an approval's expiry, say).
    """

    action: Action = "allow"
    reason: str = ""
    arguments: dict[str, Any] | None = None
    content: str | None = None
    tools: list[str] | None = None
    policy: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def allow(cls) -> Decision:
        """Let the action proceed."""
        return ALLOW

    @classmethod
    def deny(cls, reason: str) -> Decision:
        """Refuse the action; the model is told `reason`."""
        return cls("deny", reason)

    @classmethod
    def modify(
        cls,
        reason: str,
        *,
        arguments: dict[str, Any] | None = None,
        content: str | None = None,
        tools: list[str] | None = None,
    ) -> Decision:
        """Proceed with replaced arguments (before a tool), a replaced result (after it), or fewer tools."""
        return cls("modify", reason, arguments, content, tools)

    @classmethod
    def pause(cls, reason: str, *, meta: dict[str, Any] | None = None) -> Decision:
        """Pause until a person decides: a tool call waits for approval; elsewhere the run waits."""
        return cls("pause", reason, meta=meta or {})

    @classmethod
    def stop(cls, reason: str, *, kind: str = "PolicyStop") -> Decision:
        """End the run now, keeping its state; `kind` becomes the run's `error_type` (`BudgetExceeded`, ...)."""
        return cls("stop", reason, meta={"error_type": kind} if kind != "PolicyStop" else {})


ALLOW = Decision()


@dataclass(slots=True)
class PolicyContext:
    """What a policy may read about the run. Policies must not change it.

    Attributes:
        run_id: the run.
        agent: the agent's name.
        step: the current loop step.
        messages: the conversation so far.
        usage: tokens and cost so far.
        metadata: free-form values the caller attached to the run (tenant, user).
        tools: the agent's tools by name.
        model: the agent's model (a policy may price or count tokens with it, inside `effect`).
        steps: the run's step seam, used by `effect`; None outside a run.
    """

    run_id: str
    agent: str
    step: int
    messages: Sequence[Message]
    usage: Usage
    metadata: dict[str, Any] = field(default_factory=dict)
    tools: Mapping[str, Tool] = field(default_factory=dict)
    model: Model | None = None
    steps: StepRunner | None = field(default=None, repr=False)

    async def effect(self, name: str, fn: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Run `fn` (reading a clock, a shared counter, a database) as a durable step of the run.

        The step runs once; a resumed run gets its journaled result, so the policy decides as before.
        If `fn` raises, nothing is journaled and the exception propagates: a resumed run tries again.
        Only raise when the run then ends (a stop); return a value for anything the run survives.

        Args:
            name: the step's name in the journal (``policy:`` is prefixed); keep it stable across versions.
            fn: the effect; returns a JSON-ready dict.
        """
        if self.steps is None:
            return await fn()
        return await self.steps(policy_step(name), fn)


@dataclass(frozen=True, slots=True)
class Redaction:
    """What a policy hid in a text before anything stored or streamed it.

    Attributes:
        text: the text to keep, store and show.
        reason: what was hidden (``redacted from the task: 1 email``), for the ``policy_decision`` event.
    """

    text: str
    reason: str


class Policy:
    """Base class for policies: override the hooks you need; each defaults to allow.

    Hooks must be deterministic given their inputs (a resumed run replays them); anything that reads
    the outside world belongs in a durable step.
    """

    @property
    def name(self) -> str:
        """The policy's name in events and errors."""
        return type(self).__name__

    def check_agent(self, agent: AgentSpec[object, object]) -> None:
        """Check this policy against the agent it is given to (its model, its tools).

        Raises:
            ConfigError: the policy cannot work with this agent; the message names the fix.
        """

    def redact(self, text: str, where: Where) -> Redaction | None:
        """Hide what must never be stored or streamed, before anything keeps `text`.

        Called inside the step that produced the text (a tool's result, the model's answer), so the
        journal, the events and every reader only ever see what this returns; and on the task before
        the run is indexed. It must be a pure function of `text`: a resumed run replays its result.
        Return None to keep the text as it is.
        """
        return None

    async def before_model(self, ctx: PolicyContext) -> Decision:
        """Decide before each model request.

        A ``modify`` decision may carry `tools` (offer only these) and `content` (the new text of the
        latest user message, the task say, for example redacted).
        """
        return ALLOW

    async def after_model(self, ctx: PolicyContext, response: ModelResponse) -> Decision:
        """Decide on each model response before any of its tool calls is considered.

        A ``modify`` decision with `content` replaces the text of the response (a final answer, redacted).
        """
        return ALLOW

    async def before_tool(self, ctx: PolicyContext, call: ToolCall, tool: Tool) -> Decision:
        """Decide before a tool call runs (arguments already validated)."""
        return ALLOW

    async def after_tool(self, ctx: PolicyContext, call: ToolCall, result: ToolMessage) -> Decision:
        """Decide on a tool's result before the model sees it."""
        return ALLOW

    async def after_run(self, ctx: PolicyContext, status: str) -> None:
        """Observe the end of a run."""


def redact(policies: Sequence[Policy], text: str, where: Where) -> tuple[str, list[tuple[str, str]]]:
    """`text` with every policy's redaction applied in order, and each ``(policy, reason)`` that changed it."""
    done: list[tuple[str, str]] = []
    for policy in policies:
        hidden = policy.redact(text, where)
        if hidden is not None and hidden.text != text:
            text = hidden.text
            done.append((policy.name, hidden.reason))
    return text, done
