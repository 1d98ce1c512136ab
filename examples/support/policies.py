"""The support agent's rules beyond its instructions: refunds above the limit wait for a person.

The instructions tell the model about the limit; this policy enforces it whatever the model does, so a
refund of more than `APPROVAL_LIMIT` euros never runs before a person approves it. Help articles are
content from outside (`search_kb` is declared untrusted): after one is read, a refund or an address
change whose values (an order, an amount, an address) no message of the customer and no shop record
gave waits for a person too, so an article cannot steer the agent.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from keel import Policy
from keel.policies.approvals import RequireApproval
from keel.policies.loops import LoopGuard
from keel.policies.taint import TaintPolicy

__all__ = ["APPROVAL_LIMIT", "POLICIES", "refund_needs_approval"]

APPROVAL_LIMIT = Decimal("100")
"""Refunds above this many euros need a person's approval."""


def refund_needs_approval(tool: str, arguments: dict[str, Any]) -> bool:
    """Whether a refund call needs approval: above the limit, or an amount that is not a number."""
    try:
        return Decimal(str(arguments.get("amount"))) > APPROVAL_LIMIT
    except (InvalidOperation, ValueError):
        return True  # the tool rejects it anyway; never let an unreadable amount skip the check


POLICIES: list[Policy] = [
    LoopGuard(),
    TaintPolicy(),
    RequireApproval(
        ["refund_order"],
        when=refund_needs_approval,
        reason=f"refunds above {APPROVAL_LIMIT} euros need a person's approval",
    ),
]
"""In order: stop repeated identical calls, hold calls steered by content from outside, hold large refunds."""
