"""The errors keel raises, and the signals tools and policies raise to steer a run.

The tree::

    KeelError
    ├── ConfigError              the developer's configuration is wrong (agent, tool, model string, settings)
    ├── UsageError               an API was called wrongly (bad argument, unknown run id, wrong state)
    └── RunError                 something went wrong while a run executed; the run's state is kept
        ├── BudgetExceeded       a cost, token, step or time limit stopped the run
        ├── RateLimited          a rate limit was reached and waiting was not allowed (or too long)
        ├── ModelError           the model could not be reached or kept answering malformed output
        └── ToolFailed           a tool raised an unexpected exception (a result's kind, never raised)

    Signal                       raised by tools and policies; the loop turns each into a decision
    ├── ToolError                an expected tool failure the model should see and react to
    ├── Retry                    ask the model to try again with a message
    ├── NeedsApproval            pause the run until a person approves
    ├── Escalate                 hand the run to a person
    └── CallInterrupted          a guarded call was cut off mid-flight; a person decides retry, skip or fail

A run that fails inside the loop does not raise: it ends ``failed`` and its `RunResult.error_type` names
the kind, the class name of a `RunError` (``BudgetExceeded``, ``RateLimited``, ``ModelError``,
``ToolFailed``) or one of the loop's own kinds (``GaveUp``, ``ToolsWithheld``, ``PlanFailed``...).
`ToolFailed` is only such a name: a crashing tool stops the run with it, and nothing raises it.

A rejected approval is not an error: the model is told the reason and the run goes on. The former
``ApprovalRejected`` (never raised) is a deprecated alias kept for existing imports.

Internal control-flow signals, private and never seen by callers: the step seam's ``Suspend``,
``StepInterrupted`` and ``StepConflict`` (a run parks, a guarded step was cut off, another process
holds the run); ``_loop._Stop`` (ends the run from deep inside a turn); ``_tool_exec.ToolCrashed``
(a tool's unexpected exception, raised out of its step so the outcome is not journaled);
``planning.PlanningFailed`` (carries the kind of a planning failure to the loop).

Every message names the thing that is wrong and how to fix it.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = [
    "BudgetExceeded",
    "CallInterrupted",
    "ConfigError",
    "Escalate",
    "KeelError",
    "ModelError",
    "NeedsApproval",
    "RateLimited",
    "Retry",
    "RunError",
    "Signal",
    "ToolError",
    "ToolFailed",
    "UsageError",
]


class KeelError(Exception):
    """Root of every error keel raises."""


class ConfigError(KeelError):
    """The configuration of an agent, tool, model or setting is invalid."""


class UsageError(KeelError):
    """An API was called with arguments or in a state it does not accept."""


class RunError(KeelError):
    """A run stopped with an error; its state up to the error is kept.

    Attributes:
        run_id: the run that stopped, when known.
    """

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class BudgetExceeded(RunError):
    """A cost, token, step or wall-clock limit stopped the run."""


class RateLimited(RunError):
    """A requests- or tokens-per-minute limit was reached and the run could not wait for it."""


class ModelError(RunError):
    """The model failed: unreachable, or malformed output after every re-ask."""


class ToolFailed(RunError):
    """A tool raised an exception that was not a `ToolError`.

    Never raised: the run stops ``failed`` and ``RunResult.error_type`` is ``"ToolFailed"``.
    """


class Signal(Exception):  # noqa: N818 - signals are not errors; the name says what they ask for
    """Base of the exceptions user code raises to steer the loop."""


class ToolError(Signal):
    """An expected tool failure: its message is shown to the model, and the run goes on.

    Example:
        >>> raise ToolError("order A-9999 does not exist; check the order id")
    """


class Retry(Signal):
    """Ask the model to try again; the message tells it what to change."""


class NeedsApproval(Signal):
    """Pause the run until a person approves the pending tool call."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Escalate(Signal):
    """Hand the run to a person; the run pauses with the given reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CallInterrupted(Signal):
    """A tool's call was cut off after it started (its server went away) and may or may not have taken effect.

    Raised by tools that call remote services they can tell were cut off (MCP tools); the loop treats
    it like a call whose worker died: it asks a person to retry, skip or fail. Only a guarded tool
    (side effects, not idempotent) raises it: any other call is simply sent again.
    """


class _ApprovalRejected(RunError):
    """Deprecated and never raised: a rejected tool call is told to the model and the run goes on."""


_ApprovalRejected.__name__ = _ApprovalRejected.__qualname__ = "ApprovalRejected"

_DEPRECATED: dict[str, tuple[type[Exception], str]] = {
    "ApprovalRejected": (
        _ApprovalRejected,
        "keel.exceptions.ApprovalRejected is deprecated and never raised: a rejected tool call is told to the "
        "model and the run goes on; read the decision from the run's approvals instead",
    ),
}


def __getattr__(name: str) -> Any:
    """Deprecated names, still importable with a warning."""
    if name in _DEPRECATED:
        value, message = _DEPRECATED[name]
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
