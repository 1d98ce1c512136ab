"""How planning and memory join the loop: a `Participant`'s hooks, and what it may use of the run.

The loop calls each hook in one place, for every participant of the run in order (agent memory, then
the explicit planner): `on_start` before the first turn, `before_turn` at the top of each turn,
`offer` and `context` on each action request, `progress` on the plan-progress calls of a response,
`observe` on each tool result, `on_final` when a final answer validated, and `snapshot` for the
result. A participant changes the run only through `RunView`; its I/O goes through the step seam.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._seam import AgentSpec, StepRunner
    from .events import EventKind
    from .memory.short_term import ShortTermMemory
    from .messages import Message, ModelResponse, ToolCall, ToolMessage, Usage

__all__ = ["Participant", "RunEnds", "RunView"]


class RunEnds(Exception):  # noqa: N818 - a participant ends the run, with the error type to report
    """Raised by a participant's hook to end the run ``failed`` with `kind` as its error type."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class RunView(Protocol):
    """What a participant may read and do of the run the loop drives."""

    run_id: str
    agent: AgentSpec[Any, Any]
    metadata: dict[str, Any]
    steps: StepRunner
    memory: ShortTermMemory  # the short-term window the model requests go through

    @property
    def messages(self) -> Sequence[Message]:
        """The conversation so far."""
        ...

    def event(self, kind: EventKind, /, **data: Any) -> None:
        """Announce a happening (replayed when an earlier segment announced it already)."""

    def set_system(self, text: str) -> None:
        """Replace the system message's text."""

    def next_step(self) -> int:
        """Count one more step of the run (a model request of the participant's own); return its number."""
        ...

    def add_usage(self, usage: Usage) -> None:
        """Add a request's tokens and cost to the run's usage."""

    async def request(self, messages: list[Message], offered: list[dict[str, Any]], doing: str) -> ModelResponse:
        """A model request as a step of the run: it counts towards max_steps and the policies decide first.

        Args:
            messages: the request's messages.
            offered: the tool specs to offer.
            doing: what the request is for, in the error when max_steps is reached (``planning``).
        """
        ...


class Participant:
    """Base class of the loop's participants: override the hooks you need; each does nothing by default."""

    async def on_start(self, run: RunView) -> None:
        """Before the first turn of a segment (a resumed run replays its steps)."""

    async def before_turn(self, run: RunView) -> None:
        """At the top of each turn, before the step limit is checked.

        Raises:
            RunEnds: the run cannot go on.
        """

    def offer(self, offered: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The tool specs of the next action request, after the policies decided."""
        return offered

    def context(self, messages: list[Message]) -> list[Message]:
        """The messages of the next action request."""
        return messages

    def progress(self, calls: Sequence[ToolCall]) -> list[ToolMessage]:
        """Answer a response's plan-progress calls (the messages to add after it)."""
        return []

    def observe(self, result: ToolMessage) -> None:
        """See a tool's result as the model will."""

    async def on_final(self, run: RunView) -> None:
        """A final answer validated; the run is about to end ``done``."""

    def snapshot(self) -> dict[str, Any] | None:
        """What the participant adds to the run's result (the plan), or None."""
        return None
