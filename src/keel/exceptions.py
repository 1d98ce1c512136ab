"""The errors keel raises, and the signals tools and policies raise to steer a run.

The tree::

    KeelError
    ├── ConfigError              the developer's configuration is wrong (agent, tool, model string, settings)
    ├── UsageError               an API was called wrongly (bad argument, unknown run id, wrong state)
    └── RunError                 something went wrong while a run executed; the run's state is kept
        ├── BudgetExceeded       a cost, token, step or time limit stopped the run
        ├── RateLimited          a rate limit was reached and waiting was not allowed (or too long)
        ├── ModelError           the model could not be reached or kept answering malformed output
        ├── ToolFailed           a tool raised an unexpected exception
        └── ApprovalRejected     a person rejected a tool call that needed approval

    Signal                       raised by tools and policies; the loop turns each into a decision
    ├── ToolError                an expected tool failure the model should see and react to
    ├── Retry                    ask the model to try again with a message
    ├── NeedsApproval            pause the run until a person approves
    └── Escalate                 hand the run to a person

Every message names the thing that is wrong and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "ApprovalRejected",
    "BudgetExceeded",
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
    """A tool raised an exception that was not a `ToolError`."""


class ApprovalRejected(RunError):
    """A person rejected a tool call that required approval."""


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
