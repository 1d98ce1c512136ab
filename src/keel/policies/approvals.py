"""Human approval as a policy: `RequireApproval` pauses a tool call for a person to approve, reject or edit.

The approval is bound to a hash of the exact tool name and arguments: the tool runs with exactly the
approved arguments, an edited call gets a new hash (both are kept), and a decision cannot be
applied to any other arguments. Requests, the digest, expiry and decisions are `keel.approvals`'s;
`arguments_hash` is re-exported here for the code that imports it from this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, Literal

from ..approvals import arguments_hash
from ..exceptions import ConfigError
from ..messages import ToolCall
from ..tools import Tool
from ._base import ALLOW, Decision, Policy, PolicyContext

__all__ = ["RequireApproval", "arguments_hash"]


class RequireApproval(Policy):
    """Pause a tool call until a person approves it.

    Args:
        tools: the tools that need approval; default every tool declared ``requires_approval``.
        when: a predicate on ``(tool_name, arguments)``; approval is needed only when it returns True
            (for example, a refund above 100).
        reason: shown to the approver.
        expires_in: how long the approval may wait (seconds or a timedelta); None waits for ever.
            Default 24 hours.
        on_expiry: ``reject`` (the model is told) or ``escalate`` (the run waits for a person anyway).

    Raises:
        ConfigError: a negative expiry or an unknown `on_expiry`.
    """

    def __init__(
        self,
        tools: Sequence[str] | None = None,
        *,
        when: Callable[[str, dict[str, Any]], bool] | None = None,
        reason: str = "this action needs a person's approval",
        expires_in: float | timedelta | None = timedelta(hours=24),
        on_expiry: Literal["reject", "escalate"] = "reject",
    ) -> None:
        seconds = expires_in.total_seconds() if isinstance(expires_in, timedelta) else expires_in
        if seconds is not None and seconds <= 0:
            raise ConfigError(f"RequireApproval: expires_in must be positive or None, got {expires_in!r}")
        if on_expiry not in ("reject", "escalate"):
            raise ConfigError(f"RequireApproval: on_expiry must be 'reject' or 'escalate', got {on_expiry!r}")
        self.tools = None if tools is None else frozenset(tools)
        self.when = when
        self.reason = reason
        self.expires_in = seconds
        self.on_expiry = on_expiry

    def covers(self, tool: Tool) -> bool:
        """Whether calls to `tool` may need approval under this policy."""
        return tool.requires_approval if self.tools is None else tool.name in self.tools

    async def before_tool(self, ctx: PolicyContext, call: ToolCall, tool: Tool) -> Decision:
        """Pause the call when it is covered and the predicate holds."""
        if not self.covers(tool) or (self.when is not None and not self.when(call.name, call.arguments)):
            return ALLOW
        return Decision.pause(self.reason, meta={"expires_in": self.expires_in, "on_expiry": self.on_expiry})
