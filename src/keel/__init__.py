"""keel: a runtime for AI agents in production.

Example:
    >>> from keel import Agent, tool
    >>> from keel.models import ScriptedModel, ToolCall
    >>> @tool
    ... def add(a: int, b: int) -> int:
    ...     '''Add two integers.'''
    ...     return a + b
    >>> model = ScriptedModel([ToolCall("add", {"a": 1, "b": 2}), "The sum is 3."])
    >>> result = Agent("calc", model, tools=[add]).run_sync("add 1 and 2", runtime=Runtime.in_memory())
    >>> result.status, result.output
    ('done', 'The sum is 3.')
"""

from typing import Any as _Any

from . import exceptions as _exceptions
from ._runtime import Runtime
from ._seam import RunResult
from .agent import Agent
from .exceptions import (
    BudgetExceeded,
    CallInterrupted,
    ConfigError,
    Escalate,
    KeelError,
    ModelError,
    NeedsApproval,
    RateLimited,
    Retry,
    RunError,
    ToolError,
    ToolFailed,
    UsageError,
)
from .messages import RunEvent, ToolCall, Usage
from .planning import Plan, PlanStep
from .policies import Decision, Policy, PolicyContext
from .tools import Tool, ToolContext, tool

__all__ = [
    "Agent",
    "BudgetExceeded",
    "CallInterrupted",
    "ConfigError",
    "Decision",
    "Escalate",
    "KeelError",
    "ModelError",
    "NeedsApproval",
    "Plan",
    "PlanStep",
    "Policy",
    "PolicyContext",
    "RateLimited",
    "Retry",
    "RunError",
    "RunEvent",
    "RunResult",
    "Runtime",
    "Tool",
    "ToolCall",
    "ToolContext",
    "ToolError",
    "ToolFailed",
    "Usage",
    "UsageError",
    "tool",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> _Any:
    """Deprecated names (see `keel.exceptions`), still importable with a warning."""
    if name in _exceptions._DEPRECATED:
        return getattr(_exceptions, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
