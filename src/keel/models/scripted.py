"""`ScriptedModel`: a test double that answers from a script instead of a language model.

It is named as what it is: a scripted model for tests of the loop's logic, examples and outside
checks. It makes no network call.

Example:
    >>> from keel.models import ScriptedModel, ToolCall
    >>> model = ScriptedModel([ToolCall("add", {"a": 1, "b": 2}), "The sum is 3."])
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from ..exceptions import ModelError
from ..messages import AssistantMessage, Message, ModelResponse, ToolCall, Usage
from ._base import ModelProfile, estimate_tokens, message_text, request_number

__all__ = ["ScriptedModel", "ScriptItem"]

ScriptItem: TypeAlias = str | ToolCall | list[ToolCall] | AssistantMessage | ModelResponse
ScriptFunction: TypeAlias = Callable[[Sequence[Message], Sequence[dict[str, Any]]], ScriptItem]


class ScriptedModel:
    """A model that replays a script: a list of answers, or a function from the conversation to one.

    Each answer is a `str` (a text reply), a `ToolCall` or list of them, an `AssistantMessage`, or a
    full `ModelResponse`. Usage is estimated from the text, so token budgets can be tested.

    Args:
        script: the answers in order, or a function `(messages, tools) -> answer`.
        name: the model's name in traces.
        profile: context window and output budget to report.
    """

    def __init__(
        self,
        script: Sequence[ScriptItem] | ScriptFunction,
        *,
        name: str = "scripted",
        profile: ModelProfile | None = None,
    ) -> None:
        self.name = name
        self.profile = profile or ModelProfile(tool_mode="native", context_window=128_000, max_output_tokens=1024)
        self._function: ScriptFunction | None = script if callable(script) else None
        self._items: list[ScriptItem] = [] if callable(script) else list(script)
        self.calls = 0
        self._prefixes: dict[int, tuple[list[Message], list[int]]] = {}

    async def request(
        self,
        messages: Sequence[Message],
        tools: Sequence[dict[str, Any]],
        *,
        max_tokens: int | None = None,
    ) -> ModelResponse:
        """Return the next scripted answer.

        Raises:
            ModelError: the script has no answer left.
        """
        # Inside a run the answer is chosen by the run's request number, so a resumed run (whose earlier
        # requests replay from the journal) gets the same answers as the first attempt.
        index = (request_number.get() or self.calls + 1) - 1
        if self._function is not None:
            item = self._function(messages, tools)
        else:
            if index >= len(self._items):
                raise ModelError(
                    f"ScriptedModel: the script has {len(self._items)} answers and a request asked for "
                    f"answer {index + 1}; add answers to the script"
                )
            item = self._items[index]
        self.calls += 1
        if isinstance(item, ModelResponse):
            return item
        message = self._to_message(item, index)
        usage = Usage(
            input_tokens=self._prompt_tokens(messages),
            output_tokens=estimate_tokens(message_text(message)),
            requests=1,
        )
        return ModelResponse(message, usage, self.name, "tool_calls" if message.tool_calls else "stop")

    def _prompt_tokens(self, messages: Sequence[Message]) -> int:
        # A conversation only grows between requests: estimate just the messages not seen before. One
        # model may serve many runs at once, so each conversation (keyed by its task message) has its own.
        key = id(messages[1]) if len(messages) > 1 else 0
        prefix, counts = self._prefixes.get(key, ([], []))
        known = len(prefix)
        if known > len(messages) or list(messages[:known]) != prefix:  # identity first, in C: cheap
            known -= 1  # the last message may not be history (the loop's current plan): keep the rest
            if known <= 0 or known > len(messages) or list(messages[:known]) != prefix[:known]:
                known = 0
            del prefix[known:], counts[known:]
        for message in messages[known:]:
            prefix.append(message)
            counts.append(estimate_tokens(message_text(message)))
        if len(self._prefixes) > 1024:
            self._prefixes.clear()
        self._prefixes[key] = (prefix, counts)
        return sum(counts)

    def _to_message(self, item: ScriptItem, index: int) -> AssistantMessage:
        if isinstance(item, AssistantMessage):
            return item
        if isinstance(item, str):
            return AssistantMessage(content=item)
        if isinstance(item, ModelResponse):
            return item.message
        calls = [item] if isinstance(item, ToolCall) else list(item)
        return AssistantMessage(
            tool_calls=[
                ToolCall(c.name, dict(c.arguments), c.id or f"call_{index + 1}_{k}") for k, c in enumerate(calls)
            ]
        )

    async def count_tokens(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> int:
        """Estimate prompt tokens conservatively."""
        return sum(estimate_tokens(message_text(m)) + 4 for m in messages) + sum(
            estimate_tokens(json.dumps(t)) for t in tools
        )
