"""The run contract: what the loop needs from the engine that runs it, and what a run leaves behind.

The loop (`keel._loop`) performs every effect through a `StepRunner`: run a step once, `complete` an
interrupted one, `decide` with a person. The in-memory runner (`keel._runtime`) simply runs each step;
the durable one (`keel.durable`) journals each step's JSON-ready record under the run's sequence number
and replays it on resume. This module declares that seam, the signals a runner raises, the names steps
are journaled under and the records they journal, and `RunResult`, how a run ends. It also declares
`AgentSpec`, what the loop, the validator, the planner, the policies and the engines read of an agent,
and `LoopRun`, what a part of the loop reads and changes of the run it drives: they type against these
instead of importing `keel.agent` or `keel._loop`. It imports nothing of the loop, the engines or the
agent, so each of them imports it without a cycle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NotRequired, Protocol, TypedDict, TypeVar

import pydantic

from .messages import Message, Usage, message_from_dict

if TYPE_CHECKING:
    from .events import EventKind
    from .memory.short_term import ShortTermMemory
    from .models._base import Model
    from .tools import Tool

__all__ = [
    "COMPLETION",
    "MODEL",
    "RESOLUTION",
    "AgentSpec",
    "CompletionStep",
    "DecisionStep",
    "LoopRun",
    "ModelStep",
    "RequestStep",
    "RunResult",
    "RunStatus",
    "StepConflict",
    "StepFn",
    "StepInterrupted",
    "StepName",
    "StepRunner",
    "Suspend",
    "ToolStep",
    "WindowRecord",
    "decision_step",
    "memory_step",
    "parse_step_name",
    "policy_step",
    "request_step",
    "tool_step_name",
]

RunStatus = Literal["done", "failed", "waiting", "needs_attention"]
StepFn = Callable[[], Awaitable[dict[str, Any]]]

# -- the step-name vocabulary: every name a step is journaled under ---------------------------------
MODEL = "model"
"""One model request (planning requests included)."""
COMPLETION = "completion:interrupted"
"""The begun completion of an interrupted guarded step (a retry, or a result a person supplied)."""
RESOLUTION = ("request:interrupted", "decision:interrupted", COMPLETION)
"""Names of the rows that resolve an interrupted step, right after it."""

StepFamily = Literal["model", "tool", "request", "decision", "completion", "policy", "memory", "other"]


def tool_step_name(tool: str) -> str:
    """The journal name of a call of `tool`."""
    return f"tool:{tool}"


def request_step(kind: str) -> str:
    """The journal name of a request for a person's decision (`approval`, `interrupted`, `pause`)."""
    return f"request:{kind}"


def decision_step(kind: str) -> str:
    """The journal name of a person's decision on a request of `kind`."""
    return f"decision:{kind}"


def policy_step(effect: str) -> str:
    """The journal name of a policy's effect (a clock read, a shared counter)."""
    return f"policy:{effect}"


def memory_step(what: Literal["recall", "summary", "write"]) -> str:
    """The journal name of a memory step: recalling facts, summarizing a run, writing facts."""
    return f"memory:{what}"


@dataclass(frozen=True, slots=True)
class StepName:
    """A journal name read back: its family and what it names (the tool, the request's kind...).

    Attributes:
        family: `model`, `tool`, `request`, `decision`, `completion`, `policy`, `memory` or `other`.
        subject: the tool's name, the request's kind, the policy's effect, the memory step; "" for a model.
    """

    family: StepFamily
    subject: str


_FAMILIES: dict[str, StepFamily] = {
    "tool": "tool",
    "request": "request",
    "decision": "decision",
    "completion": "completion",
    "policy": "policy",
    "memory": "memory",
}


def parse_step_name(name: str) -> StepName:
    """Read a journal name back into its family and subject."""
    if name == MODEL:
        return StepName("model", "")
    family, sep, subject = name.partition(":")
    if sep and family in _FAMILIES:
        return StepName(_FAMILIES[family], subject)
    return StepName("other", name)


# -- the records steps journal (JSON-ready dicts) ---------------------------------------------------
class WindowRecord(TypedDict):
    """How the conversation was fitted into the model's window for one request."""

    tokens: int
    budget: int
    shortened: bool
    omitted: int


class ModelStep(TypedDict):
    """The record of a ``model`` step (and of ``memory:summary``)."""

    response: dict[str, Any]
    window: WindowRecord
    duration_ms: float
    redacted: NotRequired[list[list[str]]]


class ToolStep(TypedDict):
    """The record of a ``tool:<name>`` step."""

    content: str
    is_error: bool
    duration_ms: float
    escalate: NotRequired[str]
    fall_back: NotRequired[str]
    fallback: NotRequired[dict[str, Any]]
    redacted: NotRequired[list[list[str]]]


class RequestStep(TypedDict):
    """The record of a ``request:<kind>`` step: the id of the request row people decide on."""

    id: str


class DecisionStep(TypedDict, total=False):
    """The record of a ``decision:<kind>`` step: what the person decided."""

    id: str
    decision: str
    by: str | None
    note: str | None
    arguments: dict[str, Any] | None
    arguments_hash: str | None
    edited: bool
    result: str | None
    on_expiry: str | None


class CompletionStep(TypedDict):
    """The record of a ``completion:interrupted`` step: the sequence number of the step it completes."""

    step: int


# -- the signals a step runner raises ---------------------------------------------------------------
class Suspend(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a step runner when the run must wait for a person; the run ends for now, resumable."""

    def __init__(self, status: RunStatus, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.request_id = status, reason, request_id


class StepInterrupted(Exception):  # noqa: N818 - a control-flow signal, not an error
    """A guarded step was started but never finished: its worker stopped while it ran."""


class StepConflict(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Another segment of the run journaled the same step first: it owns the run, this one must stop."""


class StepRunner(Protocol):
    """The seam for effects: each step runs once per run and its JSON-ready result is journaled.

    Attributes:
        run_id: the run.
    """

    run_id: str

    @property
    def replayed(self) -> bool:
        """Whether the step last returned (or the decision last made) came from the journal.

        True when an earlier segment recorded it: it happened then, not now.
        """
        ...

    @property
    def seq(self) -> int:
        """The sequence number of the step last run, replayed or journaled (0 before the first)."""
        ...

    @property
    def replaying(self) -> bool:
        """Whether the journal still holds steps ahead that an earlier segment recorded.

        What the loop does until it passes them, it did before.
        """
        ...

    async def __call__(self, name: str, fn: StepFn, *, guard: bool = False) -> dict[str, Any]:
        """Run (or replay) one step. `guard` journals the start first, so an interrupted run can tell.

        Raises:
            StepInterrupted: replaying a guarded step that started but never finished.
        """
        ...

    async def complete(self, fn: StepFn) -> dict[str, Any]:
        """Finish the interrupted guarded step with `fn`'s result.

        Raises:
            StepInterrupted: replaying a completion that started but never finished (a retry cut off too).
        """
        ...

    async def decide(self, kind: str, request: dict[str, Any]) -> dict[str, Any]:
        """Ask a person (approval, interrupted call, pause) and return the decision once made.

        Raises:
            Suspend: no decision yet; the run stops here until one is made.
        """
        ...


@dataclass(slots=True)
class RunResult:
    """How a run ended.

    Attributes:
        run_id: the run's id.
        status: `done`, `failed`, `waiting` (for an approval) or `needs_attention` (a person must decide).
        output: the final answer: text, or an instance of the agent's `output_type`.
        steps: model requests made.
        usage: tokens and cost of the whole run.
        messages: the full conversation.
        error: what went wrong or what the run waits for, naming the fix.
        error_type: the kind (`ModelError`, `ToolFailed`, `BudgetExceeded`, `GaveUp`, `Paused`, ...).
        plan: with explicit planning, the current plan and each step's status (see `keel.planning`).
        report: for a failed run, what failed, at which step, and the last good state (JSON-ready).
    """

    run_id: str
    status: RunStatus
    output: Any = None
    steps: int = 0
    usage: Usage = field(default_factory=Usage)
    messages: list[Message] = field(default_factory=list)
    error: str | None = None
    error_type: str | None = None
    plan: dict[str, Any] | None = None
    report: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        output = self.output
        if isinstance(output, pydantic.BaseModel):
            output = output.model_dump(mode="json")
        return {
            "run_id": self.run_id,
            "status": self.status,
            "output": output,
            "steps": self.steps,
            "usage": self.usage.to_dict(),
            "messages": [m.to_dict() for m in self.messages],
            "error": self.error,
            "error_type": self.error_type,
            "plan": self.plan,
            "report": self.report,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], output_type: type[pydantic.BaseModel] | None = None) -> RunResult:
        """Build from `to_dict` output, re-validating a structured output."""
        output = data.get("output")
        if output_type is not None and data.get("status") == "done" and output is not None:
            output = output_type.model_validate(output)
        return cls(
            data["run_id"],
            data["status"],
            output,
            int(data.get("steps", 0)),
            Usage.from_dict(data.get("usage") or {}),
            [message_from_dict(m) for m in data.get("messages") or []],
            data.get("error"),
            data.get("error_type"),
            data.get("plan"),
            data.get("report"),
        )


# -- what the loop reads of an agent and of the run it drives ---------------------------------------
P_co = TypeVar("P_co", covariant=True)
M_co = TypeVar("M_co", covariant=True)
A_co = TypeVar("A_co", covariant=True)


class AgentSpec(Protocol[P_co, M_co]):
    """What the loop, the validator, the planner, the policies and the engines read of an agent.

    `keel.Agent` is one. It is generic in the types of the agent's policies (`P_co`) and long-term
    memory (`M_co`) because their modules import this one: the loop reads
    ``AgentSpec[Policy, AgentMemory]``, a policy checking its agent ``AgentSpec[object, object]``.
    """

    @property
    def name(self) -> str:
        """The agent's stable name; runs are recorded under it."""
        ...

    @property
    def model(self) -> Model:
        """The model every request goes to."""
        ...

    @property
    def system_prompt(self) -> str:
        """The system message every run starts with."""
        ...

    @property
    def tools(self) -> Sequence[Tool]:
        """The agent's tools, in the order declared."""
        ...

    @property
    def tools_by_name(self) -> Mapping[str, Tool]:
        """The agent's tools by name."""
        ...

    @property
    def tool_specs(self) -> list[dict[str, Any]]:
        """The tool schemas offered to the model, the control tools included."""
        ...

    @property
    def output_type(self) -> type[pydantic.BaseModel] | None:
        """The model a final answer must validate against; None for free text."""
        ...

    @property
    def max_steps(self) -> int:
        """Model requests allowed per run."""
        ...

    @property
    def output_retries(self) -> int:
        """Times a malformed answer is sent back before the run fails."""
        ...

    @property
    def context_budget(self) -> int | None:
        """Prompt tokens allowed; None for the model's window minus its output budget."""
        ...

    @property
    def planning(self) -> str:
        """`implicit` or `explicit`."""
        ...

    @property
    def max_replans(self) -> int:
        """With explicit planning, times a failed plan is made again before the run fails."""
        ...

    @property
    def policies(self) -> Sequence[P_co]:
        """The rules applied, in this order, at every model and tool call."""
        ...

    @property
    def memory(self) -> M_co | None:
        """Long-term memory; None for none."""
        ...


class LoopRun(Protocol[A_co]):
    """What a part of the loop (long-term memory) reads and changes of the run the loop drives.

    Attributes:
        run_id: the run.
        steps: the step seam the run's effects go through.
        metadata: values attached to the run (tenant, user).
        memory: the run's short-term window.
        messages: the conversation so far.
        usage: tokens and cost so far.
        step: model requests made so far.
    """

    run_id: str
    steps: StepRunner
    metadata: dict[str, Any]
    memory: ShortTermMemory
    messages: list[Message]
    usage: Usage
    step: int

    @property
    def agent(self) -> A_co:
        """The agent being run."""
        ...

    def event(self, kind: EventKind, /, **data: Any) -> None:
        """Announce a happening of the run."""
        ...
