"""Policies: the one seam for rules that govern a run.

Guardrails, approvals, content filters, budgets and loop detection are all `Policy` objects with
the same hooks. Each hook returns a `Decision`. Policies run in the order the agent lists them, and
a tool never starts before every policy has decided about it.
"""

from __future__ import annotations

from ._base import ALLOW as ALLOW
from ._base import Action as Action
from ._base import Decision, Policy, PolicyContext, Redaction, Where, redact
from ._consult import Hook, consult

__all__ = ["Decision", "Hook", "Policy", "PolicyContext", "Redaction", "Where", "consult", "redact"]
