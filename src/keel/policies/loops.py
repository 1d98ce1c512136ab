"""Loop detection: a model that repeats the same call is told so, then made to answer or stopped."""

from __future__ import annotations

import json
from typing import Literal

from ..exceptions import ConfigError
from ..messages import AssistantMessage, ToolCall, ToolMessage
from ..tools import Tool
from . import ALLOW, Decision, Policy, PolicyContext

__all__ = ["LoopGuard"]

REPEAT = "repeated call"
MAX_QUOTE = 600


def _key(call: ToolCall) -> tuple[str, str]:
    return call.name, json.dumps(call.arguments, sort_keys=True, default=str)


class LoopGuard(Policy):
    """Denies a tool call identical to an earlier one, then withholds tools or pauses the run.

    An identical call (same tool, same arguments) is allowed again once a side-effecting tool has run
    since, because the world may have changed. The guard keeps no state of its own: it reads the
    conversation, so a resumed run decides exactly as before.

    Args:
        max_denials: repeated calls denied in a row before the guard acts; default 1.
        then: ``withhold`` offers the model no tools for its next reply, so it must answer or give up
            (default); ``pause`` pauses the run for a person, its progress kept.
    """

    def __init__(self, max_denials: int = 1, then: Literal["withhold", "pause"] = "withhold") -> None:
        if max_denials < 1:
            raise ConfigError(f"LoopGuard: max_denials must be 1 or more, got {max_denials}")
        if then not in ("withhold", "pause"):
            raise ConfigError(f"LoopGuard: then must be 'withhold' or 'pause', got {then!r}")
        self.max_denials = max_denials
        self.then = then

    async def before_model(self, ctx: PolicyContext) -> Decision:
        """Act once the latest tool results are `max_denials` repeated-call denials in a row."""
        denials = 0
        for message in reversed(ctx.messages):
            if isinstance(message, ToolMessage):
                if not (message.is_error and REPEAT in message.content[:40]):
                    break
                denials += 1
            elif isinstance(message, AssistantMessage):
                continue
            else:
                break
        if denials < self.max_denials:
            return ALLOW
        reason = f"the model repeated identical tool calls {denials} times"
        if self.then == "pause":
            return Decision.pause(reason)
        return Decision.modify(reason + "; tools withheld so it answers", tools=[])

    async def before_tool(self, ctx: PolicyContext, call: ToolCall, tool: Tool) -> Decision:
        """Deny a call identical to one made since the last side-effecting call."""
        key = _key(call)
        rejected = {m.call_id for m in ctx.messages if isinstance(m, ToolMessage) and m.rejected}
        for message in reversed(ctx.messages):
            if not isinstance(message, AssistantMessage):
                continue
            for earlier in message.tool_calls:
                if earlier.id == call.id or earlier.id in rejected:
                    continue
                if _key(earlier) == key:
                    previous = next(
                        (m.content for m in ctx.messages if isinstance(m, ToolMessage) and m.call_id == earlier.id),
                        "",
                    )
                    if len(previous) > MAX_QUOTE:
                        previous = previous[:MAX_QUOTE] + "..."
                    return Decision.deny(
                        f"{REPEAT}: {call.name} already returned this for the same arguments: {previous}\n"
                        "Use that result to answer, or call a different tool."
                    )
                earlier_tool = ctx.tools.get(earlier.name)
                if earlier_tool is not None and earlier_tool.side_effects:
                    return ALLOW
        return ALLOW
