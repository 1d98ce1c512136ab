"""The policy seam's types: `Decision`, `PolicyContext`, `Policy`, `Redaction`, and `redact`.

Re-exported by `keel.policies`; they live here so `_consult` and the policies can import them
without importing the package that imports `_consult`.
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

__all__ = ["ALLOW", "Action", "Decision", "Policy", "PolicyContext", "Redaction", "Where", "redact"]

Action = Literal["allow", "deny", "modify", "pause", "stop"]
Where = Literal["task", "tool_results", "output"]
"""What a text is: the run's task, a tool's result, or the model's text."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What a policy decided, and what the loop does with it at each hook.

    `allow` lets the turn go on unchanged at every hook. The others:

    ``before_model`` (before each request; planning requests too)
        - `deny`, `stop`: the run ends ``failed`` (``error_type`` from `stop`'s `kind`, else ``PolicyStop``).
        - `modify`: `tools` narrows the tools offered in this request (when none of the agent's own tools
          is left, the run can no longer end ``done``: a final answer ends it ``failed``/``ToolsWithheld``);
          `content` replaces the latest user message. Neither: only announced.
        - `pause`: the run waits for a person; their note goes to the model as a user message, or they
          end the run ``failed``.

    ``after_model`` (on each response, before any of its tool calls is considered)
        - `deny`, `stop`: the run ends ``failed``, as above.
        - `modify`: `content` replaces the response's text. Without it: only announced.
        - `pause`: as in ``before_model``.

    ``before_tool`` (on each validated call, before it runs)
        - `deny`: the call does not run; the model gets ``denied: <reason>`` as the call's error result,
          and the later policies are not asked.
        - `modify`: `arguments` replace the call's (validated again; invalid ones refuse the call).
          Without them: only announced.
        - `pause`: once every policy has decided, a person approves, edits or rejects this exact call
          (the first pause's reason and `meta`, an expiry say, go with the request).
        - `stop`: the run ends ``failed`` and the call does not run (``not run: <reason>``).

    ``after_tool`` (on each result, before the model sees it)
        - `deny`: the result is withheld: the model gets ``withheld: <reason>`` as an error result, and
          the later policies see that instead.
        - `modify`: `content` replaces the result's text. Without it: only announced.
        - `pause`: a person reviews the result; their note is added to it, or they end the run ``failed``.
        - `stop`: the run ends ``failed``, the result kept in its messages.

    Attributes:
        action: `allow`, `deny`, `modify`, `pause` or `stop`, meaning the above.
        reason: why; shown to the model on a tool's deny, recorded in events always.
        arguments: replacement tool arguments, for `modify` in `before_tool`.
        content: replacement text, for `modify` in `before_model` (the latest user message),
            `after_model` (the response) and `after_tool` (the result).
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
        """Refuse: a call does not run, a result is withheld (the model is told `reason`), a request ends the run."""
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
        state: the deciding policy's own state for this run, a dict it may keep anything in. The run
            creates it when it starts and drops it when it ends (or its segment does: a resumed run
            replays from its first step, so a policy rebuilds it as before). Never shared between runs.
        states: every policy's state of this run, by policy; the loop's, for `consult`.
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
    state: dict[str, Any] = field(default_factory=dict, repr=False)
    states: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)

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
