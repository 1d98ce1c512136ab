"""Typed records of the rows keel reads back: a run's index row and a request for a person's decision."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Approval", "RunRecord", "approval_record", "loads", "run_record"]


@dataclass(slots=True)
class RunRecord:
    """One row of the run index."""

    run_id: str
    agent: str
    task: str
    status: str
    segment: int
    tenant: str | None
    metadata: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    error_type: str | None
    steps: int
    usage: dict[str, Any]
    parent_run: str | None
    worker: str | None
    created_at: float
    updated_at: float
    app_version: str | None = None


@dataclass(slots=True)
class Approval:
    """A request for a person's decision, bound to the exact arguments of one tool call.

    Attributes:
        id: the approval's id.
        run_id: the paused run.
        kind: ``approval`` (a tool call waits for consent), ``interrupted`` (a side-effecting call was
            in flight when its worker died) or ``pause`` (a policy or tool asked for a person).
        tool: the tool, when the decision is about a call.
        arguments: the call's arguments.
        arguments_hash: SHA-256 of tool and arguments; a decision applies to these arguments only.
        reason: why a person is needed.
        status: ``pending``, ``approved``, ``rejected``, ``expired`` or ``decided``.
        requested_at: when it was requested (seconds since the epoch).
        expires_at: when it expires, if it does.
        on_expiry: what happens on expiry: ``reject`` or ``escalate``.
        decided_by: who decided.
        decided_at: when.
        note: the person's note (shown to the model on a rejection).
        edited_arguments: replacement arguments, when the person edited the call.
        edited_hash: SHA-256 of the edited call.
    """

    id: str
    run_id: str
    kind: str
    tool: str | None
    arguments: dict[str, Any] | None
    arguments_hash: str | None
    reason: str
    status: str
    requested_at: float
    expires_at: float | None
    on_expiry: str | None
    decided_by: str | None = None
    decided_at: float | None = None
    note: str | None = None
    edited_arguments: dict[str, Any] | None = None
    edited_hash: str | None = None
    decision: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return dataclasses.asdict(self)


def loads(text: str | None) -> Any:
    """The JSON value of a nullable text column (None for NULL)."""
    return None if text is None else json.loads(text)


def run_record(row: Mapping[Any, Any]) -> RunRecord:
    """A `RunRecord` from a row of the run index (or a new row's values, which may lack the nullable ones)."""
    return RunRecord(
        run_id=row["run_id"],
        agent=row["agent"],
        task=row["task"],
        status=row["status"],
        segment=int(row["segment"]),
        tenant=row.get("tenant"),
        metadata=json.loads(row["metadata"] or "{}"),
        result=loads(row.get("result")),
        error=row.get("error"),
        error_type=row.get("error_type"),
        steps=int(row.get("steps") or 0),
        usage=json.loads(row.get("usage") or "{}"),
        parent_run=row.get("parent_run"),
        worker=row.get("worker"),
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        app_version=row.get("app_version"),
    )


def approval_record(row: Mapping[Any, Any]) -> Approval:
    """An `Approval` from a row of ``keel_approvals``."""
    return Approval(
        id=row["id"],
        run_id=row["run_id"],
        kind=row["kind"],
        tool=row["tool"],
        arguments=loads(row["arguments"]),
        arguments_hash=row["arguments_hash"],
        reason=row["reason"],
        status=row["status"],
        requested_at=float(row["requested_at"]),
        expires_at=None if row["expires_at"] is None else float(row["expires_at"]),
        on_expiry=row["on_expiry"],
        decided_by=row["decided_by"],
        decided_at=None if row["decided_at"] is None else float(row["decided_at"]),
        note=row["note"],
        edited_arguments=loads(row["edited_arguments"]),
        edited_hash=row["edited_hash"],
        decision=loads(row["decision"]) or {},
    )
