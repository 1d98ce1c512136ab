"""The typed event vocabulary: one kind per happening of a run, the same in every process.

In the process that runs the loop, observers receive each `RunEvent` as it happens (``Runtime(observers=...)``,
``agent.run(on_event=...)``). A run resumed in a new segment replays its journal; what the loop does again
on the way is announced once more only with ``replayed=True``, so an observer that counts, traces or prints
happenings skips those (``if event.replayed: return``). Every other process reads the same kinds back from
the run's journal (`keel.storage` produces them: the SSE stream, the console, metrics and anomaly
detection read those), each with the journal sequence number as ``seq``.

Each kind's ``data`` has the keys of its payload type below (`PAYLOADS`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypedDict

__all__ = [
    "JOURNAL_KINDS",
    "PAYLOADS",
    "EventKind",
    "RunEvent",
]

EventKind: TypeAlias = Literal[
    "run_started",
    "model_request",
    "model_response",
    "output_rejected",
    "tool_call",
    "tool_started",
    "tool_result",
    "policy_decision",
    "tools_withheld",
    "context_trimmed",
    "approval_requested",
    "approval_decided",
    "attention_requested",
    "attention_decided",
    "plan_created",
    "plan_updated",
    "plan_rejected",
    "plan_step_done",
    "plan_step_failed",
    "memory_recalled",
    "memory_written",
    "run_finished",
    "status",
]

JOURNAL_KINDS: frozenset[str] = frozenset(
    {
        "model_response",
        "tool_started",
        "tool_result",
        "approval_requested",
        "approval_decided",
        "attention_requested",
        "attention_decided",
    }
)
"""The kinds read back from the journal by other processes (plus ``status``, from the run's index entry)."""


class RunStarted(TypedDict):
    """A segment of the run began (replayed when it continues a run begun earlier)."""

    agent: str
    task: str
    model: str
    tenant: str | None


class ModelRequest(TypedDict):
    """A model request is about to be made."""

    messages: int
    tools: int


class ModelResponse(TypedDict, total=False):
    """The model answered (in-process events carry `window`; journal-derived ones `model`, `finish_reason`)."""

    content: str | None
    tool_calls: list[dict[str, Any]]
    usage: dict[str, Any]
    duration_ms: float | None
    window: dict[str, Any]
    model: str | None
    finish_reason: str | None


class OutputRejected(TypedDict):
    """The model's output was malformed; it is re-asked."""

    problems: list[str]
    attempt: int


class ToolCallEvent(TypedDict):
    """Every policy allowed a tool call: it runs now."""

    name: str
    arguments: dict[str, Any]
    call_id: str


class ToolStarted(TypedDict):
    """A guarded call (side effects, not idempotent) is journaled as begun and not yet finished."""

    name: str
    arguments: dict[str, Any] | None


class ToolResult(TypedDict, total=False):
    """A tool call ended; a fallback's result says why in `fallback`."""

    name: str
    arguments: dict[str, Any] | None
    call_id: str | None
    content: str
    is_error: bool
    duration_ms: float | None
    fallback: dict[str, Any]


class PolicyDecisionEvent(TypedDict):
    """A policy decided something other than allow."""

    policy: str
    action: str
    reason: str
    tool: str | None


class ToolsWithheld(TypedDict):
    """A policy withheld every tool from a request."""

    policy: str
    reason: str


class ContextTrimmed(TypedDict):
    """The conversation was shortened to fit the model's window."""

    tokens: int
    budget: int
    shortened: bool
    omitted: int


class Requested(TypedDict, total=False):
    """A person is asked to decide (``approval_requested``, ``attention_requested``)."""

    id: str | None
    kind: str
    tool: str | None
    arguments: dict[str, Any] | None
    arguments_hash: str | None
    reason: str | None
    status: str
    requested_at: float
    expires_at: float | None


class Decided(TypedDict, total=False):
    """A person decided (``approval_decided``, ``attention_decided``)."""

    id: str | None
    kind: str
    decision: str | None
    by: str | None
    note: str | None
    edited: bool
    arguments: dict[str, Any] | None
    decided_at: float | None


class PlanEvent(TypedDict, total=False):
    """The plan was made, changed, rejected, or one of its steps done or failed."""

    version: int
    plan: dict[str, Any]
    reason: str
    problems: str
    attempt: int
    plan_step: int
    note: str


class MemoryEvent(TypedDict, total=False):
    """Long-term memories were recalled into the context or written."""

    memories: list[dict[str, Any]]
    tokens: int
    budget: int
    source: str


class RunFinished(TypedDict):
    """A segment of the run ended: done, failed, or waiting for a person."""

    status: str
    error: str | None
    error_type: str | None
    usage: dict[str, Any]
    report: dict[str, Any] | None


class Status(TypedDict):
    """The run's status from its index entry (journal-derived streams only)."""

    status: str
    steps: int
    usage: dict[str, Any]
    error: str | None
    output: Any


PAYLOADS: dict[str, type] = {
    "run_started": RunStarted,
    "model_request": ModelRequest,
    "model_response": ModelResponse,
    "output_rejected": OutputRejected,
    "tool_call": ToolCallEvent,
    "tool_started": ToolStarted,
    "tool_result": ToolResult,
    "policy_decision": PolicyDecisionEvent,
    "tools_withheld": ToolsWithheld,
    "context_trimmed": ContextTrimmed,
    "approval_requested": Requested,
    "approval_decided": Decided,
    "attention_requested": Requested,
    "attention_decided": Decided,
    "plan_created": PlanEvent,
    "plan_updated": PlanEvent,
    "plan_rejected": PlanEvent,
    "plan_step_done": PlanEvent,
    "plan_step_failed": PlanEvent,
    "memory_recalled": MemoryEvent,
    "memory_written": MemoryEvent,
    "run_finished": RunFinished,
    "status": Status,
}
"""The payload type of each kind's ``data``."""


@dataclass(slots=True)
class RunEvent:
    """One happening of a run.

    Attributes:
        kind: what happened (`EventKind`).
        run_id: the run.
        step: the loop step (0 before the first model call).
        data: details of the event (JSON-ready), shaped as `PAYLOADS[kind]`.
        at: wall-clock time the event was emitted (observation only; never read by the loop).
        seq: the journal sequence number of the step the event belongs to (its last step so far, for a
            happening between steps); 0 before the first step, and for ``status``.
        replayed: True when an earlier segment of the run announced this happening already: the loop
            passes it again while it replays the journal.
    """

    kind: EventKind
    run_id: str
    step: int
    data: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)
    seq: int = 0
    replayed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "kind": self.kind,
            "run_id": self.run_id,
            "step": self.step,
            "data": self.data,
            "at": self.at,
            "seq": self.seq,
            "replayed": self.replayed,
        }
