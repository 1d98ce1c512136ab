"""How stored runs and approvals are shown over the API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._schemas import ApprovalOut, RunOut

if TYPE_CHECKING:
    from ..durable import Approval, RunRecord

__all__ = ["agents_of", "approval_out", "run_out"]


def agents_of(store: Any, found: list[Approval]) -> list[str | None]:
    """The agent of each approval's run, in one query."""
    names = store.agents_of([a.run_id for a in found])
    return [names.get(a.run_id) for a in found]


def run_out(record: RunRecord) -> RunOut:
    """A run as the API shows it (the output only once done; the API key id left out)."""
    result = record.result or {}
    return RunOut(
        run_id=record.run_id,
        agent=record.agent,
        task=record.task,
        status=record.status,
        steps=record.steps,
        usage=record.usage,
        output=result.get("output") if record.status == "done" else None,
        error=record.error,
        error_type=record.error_type,
        metadata={k: v for k, v in record.metadata.items() if k != "api_key"},
        parent_run=record.parent_run,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def approval_out(approval: Approval, agent: str | None = None) -> ApprovalOut:
    """A request for a decision as the API shows it (without the stored decision's internals)."""
    data = approval.to_dict()
    data.pop("decision", None)
    data.pop("edited_hash", None)
    data.pop("on_expiry", None)
    return ApprovalOut(agent=agent, **data)
