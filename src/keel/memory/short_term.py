"""Short-term memory: the window of the conversation sent to the model, kept inside a token budget.

The system prompt and the task stay pinned. When the conversation outgrows the budget, the oldest
tool results are shortened first, each with a marker saying so; if that is not enough, the oldest
turns are left out, with a note in their place. The full history is never changed: only the window.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..exceptions import ModelError
from ..messages import AssistantMessage, Message, ToolMessage, UserMessage
from ..models._base import Model

__all__ = ["ShortTermMemory", "Window"]

SHORTENED_MARKER = "\n[... shortened by keel to fit the context window: {removed} of {total} characters left out]"
OMITTED_NOTE = "[keel left out {count} earlier messages to fit the context window]"
MIN_KEEP_CHARS = 200
PINNED = 2  # the system prompt and the task


@dataclass(slots=True)
class Window:
    """The messages to send and what was done to fit them.

    Attributes:
        messages: the messages for this request.
        tokens: the prompt's token count (tools included).
        budget: the prompt budget it had to fit.
        shortened: how many tool results were shortened.
        omitted: how many messages were left out.
    """

    messages: list[Message]
    tokens: int
    budget: int
    shortened: int = 0
    omitted: int = 0


class ShortTermMemory:
    """Fits a conversation into a model's prompt budget.

    Args:
        budget: prompt tokens allowed; None uses the model's context window minus its output budget.
    """

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget
        self._counts: dict[tuple[str, str, tuple[str, ...]], int] = {}
        # The history only grows, so the counts of its prefix seen last time are reused as they are.
        self._prefix: list[Message] = []
        self._prefix_counts: list[int] = []
        self._tools_ref: Sequence[dict[str, Any]] | None = None
        self._tools_tokens = 0

    def prompt_budget(self, model: Model) -> int:
        """Tokens the prompt may use: never more than the window minus the reserved completion."""
        window = model.profile.context_window - model.profile.max_output_tokens
        return min(window, self.budget) if self.budget else window

    async def _count(self, model: Model, message: Message) -> int:
        calls = tuple(c.id for c in message.tool_calls) if isinstance(message, AssistantMessage) else ()
        key = (message.role, message.content or "", calls)
        cached = self._counts.get(key)
        if cached is None:
            cached = await model.count_tokens([message], [])
            if len(self._counts) > 10_000:
                self._counts.clear()
            self._counts[key] = cached
        return cached

    async def _counts_of(self, model: Model, messages: list[Message]) -> list[int]:
        known = len(self._prefix)
        if known > len(messages) or messages[:known] != self._prefix:  # identity first, in C: cheap
            # The loop may end a request with a message that is not history (the current plan): the
            # counts of what came before it still hold.
            known -= 1
            if known <= 0 or known > len(messages) or messages[:known] != self._prefix[:known]:
                known = 0
            del self._prefix[known:], self._prefix_counts[known:]
        for message in messages[known:]:
            self._prefix.append(message)
            self._prefix_counts.append(await self._count(model, message))
        return list(self._prefix_counts)

    async def fit(self, messages: Sequence[Message], model: Model, tools: Sequence[dict[str, Any]]) -> Window:
        """Return the window of `messages` that fits the model's prompt budget.

        Raises:
            ModelError: the pinned messages and tools alone exceed the budget.
        """
        budget = self.prompt_budget(model)
        if tools is not self._tools_ref:
            self._tools_ref, self._tools_tokens = tools, (await model.count_tokens([], tools) if tools else 0)
        window = list(messages)
        counts = await self._counts_of(model, window)
        total = self._tools_tokens + sum(counts)
        if total <= budget:
            return Window(window, total, budget)

        shortened = 0
        # Oldest tool results first; shrink each to what the overflow needs, never below MIN_KEEP_CHARS.
        for i, msg in enumerate(window):
            if total <= budget:
                break
            if i < PINNED or not isinstance(msg, ToolMessage) or len(msg.content) <= MIN_KEEP_CHARS:
                continue
            over = total - budget
            keep = max(MIN_KEEP_CHARS, len(msg.content) - over * 4 - 200)
            new = dataclasses.replace(msg, content=_shorten(msg.content, keep), truncated=True)
            new_count = await self._count(model, new)
            while new_count >= counts[i] and keep > MIN_KEEP_CHARS:  # estimate was off: halve until it helps
                keep = max(MIN_KEEP_CHARS, keep // 2)
                new = dataclasses.replace(msg, content=_shorten(msg.content, keep), truncated=True)
                new_count = await self._count(model, new)
            total += new_count - counts[i]
            window[i], counts[i] = new, new_count
            shortened += 1

        omitted = 0
        if total > budget:
            # Leave out the oldest turns after the pinned ones (an assistant message goes with its
            # results), and keep the latest turn whatever happens.
            note_tokens = await self._count(model, UserMessage(OMITTED_NOTE.format(count=10**6)))
            cut = PINNED
            while total + note_tokens > budget:
                end = cut + 1
                while end < len(window) and isinstance(window[end], ToolMessage):
                    end += 1
                if end >= len(window):
                    break
                total -= sum(counts[cut:end])
                cut = end
            omitted = cut - PINNED
            if omitted:
                note = UserMessage(OMITTED_NOTE.format(count=omitted))
                window = window[:PINNED] + [note] + window[cut:]
                total += note_tokens
        if total > budget:
            raise ModelError(
                f"the prompt needs {total} tokens after shortening but {model.name} allows {budget}; "
                "shorten the instructions or the task, offer fewer tools, or use a model with a larger window"
            )
        return Window(window, total, budget, shortened, omitted)


def _shorten(text: str, keep: int) -> str:
    total = len(text)
    return text[:keep] + SHORTENED_MARKER.format(removed=total - keep, total=total)
