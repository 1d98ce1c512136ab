"""The API's request and response bodies (pydantic models, published in the OpenAPI spec)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from .._validate import NUL_PROBLEM, has_nul

__all__ = [
    "AlertOut",
    "AlertsOut",
    "ApprovalOut",
    "ApproveIn",
    "EditIn",
    "ErrorOut",
    "FeedbackIn",
    "FeedbackOut",
    "MeOut",
    "RejectIn",
    "ResolveIn",
    "RunCreate",
    "RunCreated",
    "RunDetail",
    "RunList",
    "RunOut",
    "StatsOut",
    "StatsPoint",
]

MetaValue = str | int | float | bool | None


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if has_nul(value):
            raise PydanticCustomError("nul_character", NUL_PROBLEM)
        return value


class ErrorOut(BaseModel):
    """An error: a short code and a message naming the problem and the fix."""

    error: str = Field(description="a short code: not_found, invalid_request, conflict, rate_limited, ...")
    message: str = Field(description="what is wrong and how to fix it")
    fields: list[dict[str, str]] = Field(default_factory=list, description="per-field problems, for validation")


class RunCreate(_In):
    """Start a run."""

    agent: str = Field(min_length=1, max_length=64, description="the agent's name, one this service serves")
    task: str = Field(min_length=1, max_length=100_000, description="what the agent should do")
    metadata: dict[str, MetaValue] = Field(
        default_factory=dict, max_length=50, description="your labels for the run (flat JSON values)"
    )


class RunCreated(BaseModel):
    """A queued run."""

    run_id: str
    status: str
    events: str = Field(description="the URL of the run's event stream")


class RunOut(BaseModel):
    """A run's entry in the index."""

    run_id: str
    agent: str
    task: str
    status: str
    steps: int
    usage: dict[str, Any]
    output: Any = None
    error: str | None = None
    error_type: str | None = None
    metadata: dict[str, Any]
    parent_run: str | None = None
    created_at: float
    updated_at: float


class RunList(BaseModel):
    """Runs, newest first."""

    runs: list[RunOut]


class ApprovalOut(BaseModel):
    """A request for a person's decision."""

    id: str
    run_id: str
    agent: str | None = None
    kind: str
    tool: str | None
    arguments: dict[str, Any] | None
    arguments_hash: str | None
    reason: str
    status: str
    requested_at: float
    expires_at: float | None
    decided_by: str | None = None
    decided_at: float | None = None
    note: str | None = None
    edited_arguments: dict[str, Any] | None = None


class FeedbackIn(_In):
    """A user's satisfaction with a run: thumbs, a score, or both, and an optional comment."""

    thumbs: Literal["up", "down"] | None = None
    score: int | None = Field(default=None, ge=1, le=5, description="1 (worst) to 5 (best)")
    comment: str | None = Field(default=None, max_length=10_000)
    by: str | None = Field(default=None, max_length=128, description="who gives it (default: the API key)")


class FeedbackOut(BaseModel):
    """Recorded feedback."""

    id: str
    run_id: str
    thumbs: str | None
    score: int | None
    satisfaction: float
    comment: str | None
    by: str | None
    created_at: float


class RunDetail(RunOut):
    """A run with its conversation, requests for people, feedback and, with explicit planning, its plan."""

    messages: list[dict[str, Any]]
    plan: dict[str, Any] | None = None
    approvals: list[ApprovalOut]
    feedback: list[FeedbackOut]


class ApproveIn(_In):
    """Approve a tool call as requested."""

    note: str | None = Field(default=None, max_length=10_000)
    arguments_hash: str | None = Field(
        default=None, min_length=64, max_length=64, description="the hash of the arguments you reviewed"
    )


class RejectIn(_In):
    """Reject a tool call; the model is told the reason."""

    reason: str = Field(min_length=1, max_length=10_000)


class EditIn(_In):
    """Approve a tool call with changed arguments."""

    arguments: dict[str, Any]
    note: str | None = Field(default=None, max_length=10_000)


class ResolveIn(_In):
    """Decide a run that needs attention (an interrupted call or a pause)."""

    decision: Literal["retry", "skip", "fail", "continue"]
    note: str | None = Field(default=None, max_length=10_000)
    result: str | None = Field(default=None, max_length=100_000, description="the result of a skipped call")


class StatsPoint(BaseModel):
    """One time bucket of the charts (None where the bucket has no data)."""

    start: float
    runs: int
    completion_rate: float | None
    error_rate: float | None
    steps_per_run: float | None
    cost_per_run: float | None
    satisfaction: float | None


class StatsOut(BaseModel):
    """Completion rate, error rate, steps, cost and satisfaction over time."""

    from_: float = Field(alias="from")
    to: float
    bucket_seconds: float
    points: list[StatsPoint]


class AlertOut(BaseModel):
    """An active anomaly alert."""

    id: str
    key: str
    tenant: str | None
    agent: str
    metric: str
    direction: str
    value: float
    baseline: float
    score: float
    window_end: float
    message: str
    raised_at: float


class AlertsOut(BaseModel):
    """Active anomaly alerts."""

    alerts: list[AlertOut]


class MeOut(BaseModel):
    """The caller's key and tenant, and the agents served."""

    key_id: str
    tenant: str
    name: str | None
    agents: list[str]
