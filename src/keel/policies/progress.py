"""No-progress detection: the same call K times, the same error K times, or M steps with nothing new.

First the model is told, and the call denied; if it goes on, the run pauses for a person with its
progress kept. Like `LoopGuard`, the policy keeps no state of its own beyond an index of the
conversation (rebuilt from the messages), so a resumed run decides exactly as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..exceptions import ConfigError
from ..messages import AssistantMessage, Message, ToolCall, ToolMessage, UserMessage
from ..tools import Tool
from ._base import ALLOW, Decision, Policy, PolicyContext

__all__ = ["NoProgress"]

MARK = "no progress:"


def _key(call: ToolCall) -> tuple[str, str]:
    return call.name, json.dumps(call.arguments, sort_keys=True, default=str)


@dataclass(slots=True)
class _Index:
    """What the run's conversation says about progress (a pure function of its messages)."""

    count: int = 0
    last: Message | None = None
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    ran: dict[tuple[str, str], int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    results: set[str] = field(default_factory=set)
    stale: int = 0
    turn_new: bool | None = None
    warnings: int = 0
    signal: str = ""

    def read(self, messages: list[Message] | tuple[Message, ...]) -> None:
        for message in messages:
            if isinstance(message, AssistantMessage) and message.tool_calls:
                self._end_turn()
                self.turn_new = False
                for call in message.tool_calls:
                    self.keys[call.id] = _key(call)
            elif isinstance(message, ToolMessage):
                self._result(message)
            elif isinstance(message, UserMessage) and self.count > 2:
                self.warnings = 0  # a person (or the loop) said something new
            self.count += 1
        self.last = messages[-1] if messages else self.last

    def _end_turn(self) -> None:
        if self.turn_new is not None:
            self.stale = 0 if self.turn_new else self.stale + 1

    def _result(self, message: ToolMessage) -> None:
        if message.rejected:
            if message.content.startswith(f"denied: {MARK}"):
                self.warnings += 1
                self.signal = message.content.removeprefix(f"denied: {MARK} ").split(". Doing the same")[0]
            return
        key = self.keys.get(message.call_id)
        if key is not None:
            self.ran[key] = self.ran.get(key, 0) + 1
        if message.is_error:
            self.errors[message.content] = self.errors.get(message.content, 0) + 1
        elif message.content not in self.results:
            self.results.add(message.content)
            self.turn_new = True
            self.errors.clear()
            self.warnings = 0
            self.stale = 0


class NoProgress(Policy):
    """Notices a run going round in circles: warns the model by denying the call, then pauses the run.

    Args:
        max_repeats: the K-th call of a tool with the same arguments is denied; default 3.
        max_errors: once one error has come back this many times, calls are denied; default 3.
        max_stale_steps: after this many steps in a row brought no new tool result, calls are denied;
            default 5.
        warnings: denials the model gets before the run pauses for a person; default 1.

    Raises:
        ConfigError: a limit below 1 (2 for `max_repeats`) or negative warnings.
    """

    def __init__(self, max_repeats: int = 3, max_errors: int = 3, max_stale_steps: int = 5, warnings: int = 1) -> None:
        for name, value, low in (
            ("max_repeats", max_repeats, 2),
            ("max_errors", max_errors, 1),
            ("max_stale_steps", max_stale_steps, 1),
            ("warnings", warnings, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"NoProgress: {name} must be a whole number {low} or more, got {value!r}")
        self.max_repeats, self.max_errors, self.max_stale = max_repeats, max_errors, max_stale_steps
        self.warnings = warnings

    def _index(self, ctx: PolicyContext) -> _Index:
        index: _Index | None = ctx.state.get("index")
        messages = ctx.messages
        if (
            index is None
            or index.count > len(messages)
            or (index.count and messages[index.count - 1] is not index.last)
        ):
            index = _Index()
        index.read(list(messages[index.count :]))
        ctx.state["index"] = index
        return index

    async def before_model(self, ctx: PolicyContext) -> Decision:
        """Pause for a person once the model went on after its warnings."""
        index = self._index(ctx)
        if index.warnings > self.warnings:
            return Decision.pause(
                f"the run is making no progress ({index.signal}) and went on after {self.warnings} warning(s); "
                "a person should look at it"
            )
        return ALLOW

    async def before_tool(self, ctx: PolicyContext, call: ToolCall, tool: Tool) -> Decision:
        """Deny a call that would repeat itself, repeat an error, or follow too many steps without news."""
        index = self._index(ctx)
        signal = ""
        times = index.ran.get(_key(call), 0) + 1
        if times >= self.max_repeats:
            signal = f"this would be call {times} of {call.name} with the same arguments"
        elif index.errors and max(index.errors.values()) >= self.max_errors:
            error, n = max(index.errors.items(), key=lambda item: item[1])
            signal = f"the same error came back {n} times: {error[:200]}"
        elif index.stale >= self.max_stale:
            signal = f"{index.stale} steps in a row brought no new information"
        if not signal:
            return ALLOW
        return Decision.deny(
            f"{MARK} {signal}. Doing the same again will not help: answer with what you have, try a different "
            "approach, or give up."
        )
