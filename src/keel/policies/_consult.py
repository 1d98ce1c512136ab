"""`consult`: how the loop asks the policies at each hook, in one place.

Every hook is consulted the same way: each policy in the agent's order, with its own per-run state in
`PolicyContext.state`; an `allow` passes on; any other decision is named after its policy, announced,
and applied by the loop (what each action means at each hook is written in `Decision`'s docstring).
A later policy sees what the earlier ones made of the subject (a modified response, call or result).
In `before_tool`, once the call is refused the later policies are not asked: the call will not run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ..messages import ToolMessage

if TYPE_CHECKING:
    from ..messages import ToolCall
    from ..tools import Tool
    from ._base import Decision, Policy, PolicyContext

__all__ = ["Hook", "consult"]

Hook = Literal["before_model", "after_model", "before_tool", "after_tool"]
"""The hooks the loop consults on the way through a turn (`after_run` only observes)."""

S = TypeVar("S")


async def consult(
    hook: Hook,
    policies: Sequence[Policy],
    ctx: PolicyContext,
    subject: S,
    apply: Callable[[Decision, S], Awaitable[S]],
    announce: Callable[[Decision], None],
    *,
    call: ToolCall | None = None,
    tool: Tool | None = None,
) -> S:
    """Ask every policy at `hook`; return the subject as the decisions left it.

    Args:
        hook: where in the turn the loop is.
        policies: the agent's policies, in its order.
        ctx: the run as the policies see it; its `state` is set to each policy's own in turn.
        subject: what the decisions act on: the tools to offer (`before_model`), the response
            (`after_model`), the call, or its refusal (`before_tool`), the result (`after_tool`).
        apply: the loop's meaning of one decision at this hook; returns the new subject.
        announce: tells the observers of a decision other than `allow`.
        call: the tool call, at `after_tool`.
        tool: the tool, at `before_tool`.
    """
    states = ctx.states
    for policy in policies:
        state = states.get(id(policy))
        if state is None:
            state = states[id(policy)] = {}
        ctx.state = state
        decision = await _ask(hook, policy, ctx, subject, call, tool)
        if decision.action == "allow":
            continue
        if not decision.policy:
            decision = dataclasses.replace(decision, policy=policy.name)
        announce(decision)
        subject = await apply(decision, subject)
        if hook == "before_tool" and isinstance(subject, ToolMessage):
            break  # refused: the call will not run, so there is nothing left to decide
    return subject


def _ask(
    hook: Hook, policy: Policy, ctx: PolicyContext, subject: Any, call: ToolCall | None, tool: Tool | None
) -> Awaitable[Decision]:
    # The hook's own coroutine, awaited by `consult`: no second coroutine per policy and hook.
    if hook == "before_model":
        return policy.before_model(ctx)
    if hook == "after_model":
        return policy.after_model(ctx, subject)
    if hook == "before_tool":
        assert tool is not None
        return policy.before_tool(ctx, subject, tool)
    assert call is not None
    return policy.after_tool(ctx, call, subject)
