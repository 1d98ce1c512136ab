"""Loop detection: a model that repeats the same call is told so, then made to answer or stopped."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

from ..exceptions import ConfigError
from ..messages import AssistantMessage, Message, ToolCall, ToolMessage
from ..tools import Tool
from ._base import ALLOW, Decision, Policy, PolicyContext

__all__ = ["LoopGuard"]

REPEAT = "repeated call"
MAX_QUOTE = 600
MAX_REREADS = 2
"""Identical calls that may run between two side effects, when other calls ran in between."""


def _key(call: ToolCall) -> tuple[str, str]:
    return call.name, json.dumps(call.arguments, sort_keys=True, default=str)


class LoopGuard(Policy):
    """Denies a tool call that repeats itself, then withholds tools or pauses the run.

    A call identical to one that ran (same tool, same arguments) is a loop when it repeats the call
    that ran last, with nothing in between, or when it already ran twice since the last side-effecting
    call. Reading again after other calls is not a loop (a task re-reads an order before acting on
    it: the state may have changed), and any repeat is fine again once a side-effecting tool has run.
    The guard keeps no state of its own: it reads the conversation, so a resumed run decides exactly
    as before. A run whose tools were withheld ends ``failed`` with error type ``ToolsWithheld`` (its
    answer kept), never as plain success.

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
        """Deny a call that repeats the one that ran last, or one that ran twice since the last side effect."""
        seen = self._index(ctx)
        key = _key(call)
        earlier = [i for i in seen.calls.get(key, ()) if i != call.id and i in seen.results]
        if not earlier or (seen.latest != key and len(earlier) < MAX_REREADS):
            return ALLOW
        previous = seen.results.get(earlier[0], "")
        if len(previous) > MAX_QUOTE:
            previous = previous[:MAX_QUOTE] + "..."
        return Decision.deny(
            f"{REPEAT}: {call.name} already returned this for the same arguments: {previous}\n"
            "Use that result to answer, or call a different tool."
        )

    def _index(self, ctx: PolicyContext) -> _Seen:
        """The run's calls since its last side effect, brought up to date with the messages added since."""
        seen: _Seen | None = ctx.state.get("seen")  # read incrementally: each message is indexed once per run
        messages = ctx.messages
        if seen is None or seen.count > len(messages) or (seen.count and messages[seen.count - 1] is not seen.last):
            seen = _Seen()
        for message in messages[seen.count :]:
            if isinstance(message, AssistantMessage):
                for c in message.tool_calls:
                    key = _key(c)
                    seen.keys[c.id] = key
                    seen.calls.setdefault(key, []).append(c.id)
            elif isinstance(message, ToolMessage):
                if message.rejected:  # never ran: it does not count as an earlier call
                    ids = seen.calls.get(seen.keys.get(message.call_id, ("", "")))
                    if ids and message.call_id in ids:
                        ids.remove(message.call_id)
                    continue
                seen.results[message.call_id] = message.content
                seen.latest = seen.keys.get(message.call_id)
                ran = ctx.tools.get(message.name)
                if ran is not None and ran.side_effects:  # the world may have changed: repeats are fine again
                    seen.calls.clear()
                    seen.latest = None
        seen.count = len(messages)
        seen.last = messages[-1] if messages else None
        ctx.state["seen"] = seen
        return seen


@dataclass(slots=True)
class _Seen:
    """What the guard has read of one run's conversation (a pure function of its messages)."""

    count: int = 0
    last: Message | None = None
    calls: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)
    latest: tuple[str, str] | None = None  # the call that ran last
