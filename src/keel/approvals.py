"""Approvals, in one place: requests for a person's decision, the argument digest, expiry and decisions.

A request is a durable object (a row of ``keel_approvals``, written by `keel.storage`) bound to a
SHA-256 of the exact tool and arguments (`arguments_hash`). Three kinds exist: ``approval`` (a tool
call waits for consent, with an expiry), ``interrupted`` (a side-effecting call was in flight when its
worker died) and ``pause`` (a policy or a tool asked for a person). This module says:

- what the loop asks for a call (`approval_request`, `interrupted_request`) and which status the run
  waits in (`WAITING`);
- the request record the step runner stores (`new_request`, with its id from `request_id`) and when it
  is past its expiry (`expires_at`, `is_due`, `forked_expiry`);
- which decisions fit a request (`check_pending`, `check_decidable`, `check_edited`, `DECISIONS`), and what
  a decision returns to the loop (`decision_record`), checked there against the run's own digest
  (`approved_call`);
- the `Runtime` operations (`approve`, `reject`, `edit`, `resolve`, `pending`), over anything that
  records a decision (`Decider`: the durable engine, which commits a decision together with the claim
  of the run's next segment, in `keel.durable`).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .exceptions import UsageError
from .messages import ToolCall

if TYPE_CHECKING:
    from ._seam import RunStatus
    from .storage import Approval, Store
    from .tools import Tool

__all__ = [
    "DECISIONS",
    "Decided",
    "Decider",
    "REFUSED",
    "WAITING",
    "WAITING_STATUSES",
    "approval_request",
    "approve",
    "approved_call",
    "arguments_hash",
    "check_decidable",
    "check_edited",
    "check_pending",
    "decision_record",
    "edit",
    "escalated",
    "expired_decision",
    "expires_at",
    "forked_expiry",
    "interrupted_request",
    "is_due",
    "new_request",
    "pending",
    "reject",
    "request_id",
    "resolve",
]

WAITING: dict[str, RunStatus] = {"approval": "waiting", "interrupted": "needs_attention", "pause": "needs_attention"}
"""The status a run waits in for each kind of request."""

WAITING_STATUSES: tuple[RunStatus, ...] = ("waiting", "needs_attention")
"""The statuses of a run that waits for a person's decision."""

DECISIONS: dict[str, tuple[str, ...]] = {"interrupted": ("retry", "skip", "fail"), "pause": ("continue", "fail")}
"""The decisions `resolve` takes for each kind of request other than an approval."""

REFUSED = "refused: the arguments to run do not match the ones approved; request a new approval"
"""What the model is told when a decision does not match the call the run asked about."""


# -- the digest --------------------------------------------------------------------------------------
def arguments_hash(tool: str, arguments: dict[str, Any]) -> str:
    """SHA-256 of a tool call: its name and its arguments as canonical JSON."""
    blob = json.dumps({"tool": tool, "arguments": arguments}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


# -- requests ----------------------------------------------------------------------------------------
def request_id(run_id: str, seq: int) -> str:
    """The id of the request a run journals at step `seq`: the same whichever segment makes it."""
    return "apv_" + hashlib.sha256(f"{run_id}/{seq}".encode()).hexdigest()[:20]


def approval_request(call: ToolCall, reason: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the loop asks a person about `call` (its validated arguments, as the tool will get them).

    Args:
        call: the call, with the arguments the tool would receive.
        reason: why a person must approve it.
        meta: the pausing policy's terms: ``expires_in`` (seconds or None) and ``on_expiry``.
    """
    return {
        "tool": call.name,
        "arguments": call.arguments,
        "arguments_hash": arguments_hash(call.name, call.arguments),
        "reason": reason,
        **(meta or {}),
    }


def escalated(request: dict[str, Any]) -> dict[str, Any]:
    """The request asked again, without expiry, after the first one expired with ``on_expiry="escalate"``."""
    return {**request, "reason": f"approval expired: {request['reason']}", "expires_in": None}


def interrupted_request(tool: str, arguments: dict[str, Any], cause: str) -> dict[str, Any]:
    """What the loop asks a person about a call cut off in flight: retry it, skip it or fail the run."""
    return {
        "tool": tool,
        "arguments": arguments,
        "arguments_hash": arguments_hash(tool, arguments),
        "reason": f"{cause}; retry it, skip it (giving the result it had), or fail the run",
    }


def new_request(approval_id: str, run_id: str, kind: str, request: dict[str, Any], now: float) -> Approval:
    """The pending record of `request`, asked by run `run_id` at `now`; only an approval expires."""
    from .storage import Approval  # the database's modules load only for durable runs

    approval = kind == "approval"
    return Approval(
        id=approval_id,
        run_id=run_id,
        kind=kind,
        tool=request.get("tool"),
        arguments=request.get("arguments"),
        arguments_hash=request.get("arguments_hash"),
        reason=str(request.get("reason") or kind),
        status="pending",
        requested_at=now,
        expires_at=expires_at(now, request.get("expires_in") if approval else None),
        on_expiry=request.get("on_expiry") if approval else None,
    )


# -- expiry ------------------------------------------------------------------------------------------
def expires_at(now: float, expires_in: float | None) -> float | None:
    """When a request made at `now` expires; None when it waits for ever."""
    return None if expires_in is None else now + float(expires_in)


def is_due(approval: Approval, now: float | None = None) -> bool:
    """Whether a pending request is past its expiry at `now` (default: the current time)."""
    now = time.time() if now is None else now
    return approval.status == "pending" and approval.expires_at is not None and approval.expires_at <= now


def forked_expiry(requested_at: float, expiry: float | None, now: float) -> float | None:
    """The expiry of a request copied into a fork at `now`: the same time to wait as the original had."""
    return None if expiry is None else now + (float(expiry) - float(requested_at))


def expired_decision(on_expiry: str | None) -> dict[str, Any]:
    """The decision recorded when a request expires unanswered."""
    return {"decision": "expired", "on_expiry": on_expiry}


# -- decisions ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Decided:
    """A decision as stored, and the run's next segment when it was claimed in the same transaction.

    Attributes:
        approval: the decided request.
        segment: the claimed segment, for the caller to queue; None when the run was not waiting (a segment
            carrying it finds the decision) or no claim was asked for.
    """

    approval: Approval
    segment: int | None


def check_decidable(approval: Approval | None, approval_id: str, now: float) -> Approval:
    """The request, if a person may decide it now.

    Raises:
        UsageError: it does not exist, was decided already, or expired.
    """
    if approval is None:
        raise UsageError(f"approval {approval_id!r} does not exist; list them with `keel approvals list`")
    if approval.status != "pending":
        raise UsageError(
            f"approval {approval_id!r} was already {approval.status} by {approval.decided_by or 'keel'}; "
            "a decision cannot be changed"
        )
    if approval.expires_at is not None and approval.expires_at <= now:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(approval.expires_at))
        raise UsageError(f"approval {approval_id!r} expired at {when} UTC; its default ({approval.on_expiry}) applies")
    return approval


def check_pending(approval: Approval | None, approval_id: str, kind: str | None) -> Approval:
    """The request to decide, if it exists and (with `kind`) is of that kind.

    Raises:
        UsageError: it does not exist, or is of another kind.
    """
    if approval is None:
        raise UsageError(f"approval {approval_id!r} does not exist; list them with `keel approvals list`")
    if kind is not None and approval.kind != kind:
        raise UsageError(
            f"{approval_id!r} is a {approval.kind} request, not an approval; decide it with `keel runs resolve`"
        )
    return approval


def check_edited(arguments: Any, tool: Tool | None = None) -> dict[str, Any]:
    """The edited arguments of an approval, checked: a JSON object, valid for `tool` when it is known.

    Raises:
        UsageError: the arguments are not an object.
        ToolArgumentsError: they do not fit the tool's schema.
    """
    if not isinstance(arguments, dict):
        raise UsageError(f"edited arguments must be a JSON object, got {type(arguments).__name__}")
    if tool is not None:
        tool.validate(arguments)
    return arguments


def decision_record(approval: Approval) -> dict[str, Any]:
    """What a decided request returns to the loop, journaled as its decision step (`keel._seam.DecisionStep`).

    An approved call carries the arguments to run and their hash: the edited ones when a person edited it.
    """
    decision = {**approval.decision, "id": approval.id, "by": approval.decided_by, "note": approval.note}
    if approval.status == "approved":
        edited = approval.edited_arguments is not None
        decision["arguments"] = approval.edited_arguments if edited else approval.arguments
        decision["arguments_hash"] = approval.edited_hash if edited else approval.arguments_hash
    return decision


def approved_call(call: ToolCall, request: dict[str, Any], choice: dict[str, Any]) -> ToolCall | str:
    """The call to run after a decision on `request`, or what the model is told instead.

    The decision is checked against the digest the run computed for its request (from its own journal),
    not against the approval row's hash: a row whose arguments and hash were rewritten after the request is
    refused, and an edit runs only the arguments its own hash was made of.
    """
    if choice.get("decision") == "approved":
        arguments = choice.get("arguments", call.arguments)
        if not isinstance(arguments, dict):
            return REFUSED
        given = arguments_hash(call.name, arguments)
        expected = given if choice.get("edited") else request["arguments_hash"]  # an edit is a new hash
        if given != expected or choice.get("arguments_hash") != expected:
            return REFUSED
        return ToolCall(call.name, arguments, call.id)
    if choice.get("decision") == "expired":
        return f"rejected: the approval expired unanswered ({request['reason']})"
    return f"rejected by {choice.get('by') or 'a person'}: {choice.get('note') or 'no reason given'}"


# -- the Runtime's operations ------------------------------------------------------------------------
class Decider(Protocol):
    """What records a person's decision: the durable engine (`keel.durable.DurableEngine`)."""

    @property
    def store(self) -> Store:
        """The database of the requests."""
        ...

    def decide(
        self,
        approval_id: str,
        status: str,
        decision: dict[str, Any],
        *,
        by: str,
        note: str | None,
        edited: dict[str, Any] | None = None,
        edited_hash: str | None = None,
        dispatch: bool = True,
    ) -> Decided:
        """Record the decision and, with `dispatch`, queue the run it releases."""
        ...


def pending(decider: Decider, approval_id: str, kind: str | None) -> Approval:
    """The request `approval_id` (of `kind`, when given), read from the decider's database.

    Raises:
        UsageError: unknown, or of another kind.
    """
    return check_pending(decider.store.get_approval(approval_id), approval_id, kind)


def approve(
    decider: Decider,
    approval_id: str,
    *,
    by: str,
    note: str | None = None,
    reviewed_hash: str | None = None,
    dispatch: bool = True,
) -> Approval:
    """Approve a pending tool call exactly as requested (see `Runtime.approve`).

    Raises:
        UsageError: unknown, not an approval, already decided, expired, or for other arguments than reviewed.
    """
    approval = pending(decider, approval_id, "approval")
    if reviewed_hash is not None and reviewed_hash != approval.arguments_hash:
        raise UsageError(
            f"approval {approval_id!r} is for other arguments than the ones given "
            f"({approval.arguments_hash} != {reviewed_hash}); review the request again"
        )
    return decider.decide(
        approval_id, "approved", {"decision": "approved"}, by=by, note=note, dispatch=dispatch
    ).approval


def reject(decider: Decider, approval_id: str, *, by: str, reason: str, dispatch: bool = True) -> Approval:
    """Reject a pending tool call; the model is told `reason` (see `Runtime.reject`).

    Raises:
        UsageError: unknown, not an approval, already decided or expired.
    """
    pending(decider, approval_id, "approval")
    return decider.decide(
        approval_id, "rejected", {"decision": "rejected"}, by=by, note=reason, dispatch=dispatch
    ).approval


def edit(
    decider: Decider,
    approval_id: str,
    arguments: Any,
    *,
    by: str,
    note: str | None = None,
    tool: Tool | None = None,
    dispatch: bool = True,
) -> Approval:
    """Approve a pending tool call with changed arguments, under their own hash (see `Runtime.edit`).

    Raises:
        UsageError: unknown, not an approval, already decided or expired, or arguments not an object.
        ToolArgumentsError: `tool` is given and the arguments do not fit its schema.
    """
    approval = pending(decider, approval_id, "approval")
    arguments = check_edited(arguments, tool)
    return decider.decide(
        approval_id,
        "approved",
        {"decision": "approved", "edited": True},
        by=by,
        note=note,
        edited=arguments,
        edited_hash=arguments_hash(approval.tool or "", arguments),
        dispatch=dispatch,
    ).approval


def resolve(
    decider: Decider,
    approval_id: str,
    decision: str,
    *,
    by: str,
    note: str | None = None,
    result: str | None = None,
    dispatch: bool = True,
) -> Approval:
    """Decide a request that needs attention: an interrupted call or a pause (see `Runtime.resolve`).

    Raises:
        UsageError: unknown, already decided, or a decision that does not fit the request.
    """
    approval = pending(decider, approval_id, None)
    allowed = DECISIONS.get(approval.kind, ())
    if decision not in allowed:
        raise UsageError(
            f"decision {decision!r} does not fit a {approval.kind} request; use one of: "
            + (", ".join(allowed) or "approve, reject or edit (it is an approval)")
        )
    body = {"decision": decision, "result": result}
    return decider.decide(approval_id, "decided", body, by=by, note=note, dispatch=dispatch).approval
