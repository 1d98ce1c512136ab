"""Checks: each expectation of a case, applied to one trial's run and its fixtures.

A trial's facts come from its `RunEvent`s (the tools that ran and their arguments, the approvals
requested) and its `RunResult` (status, answer, steps, cost); state checks call the case's Python
functions on the fixtures after the run.
"""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import pydantic

from ..messages import RunEvent
from ._format import Case, Expectations, resolve_callable

if TYPE_CHECKING:
    from .._seam import RunResult

__all__ = ["CheckContext", "CheckOutcome", "TrialFacts", "answer_text", "contains", "run_checks"]


@dataclass(slots=True)
class CheckOutcome:
    """The outcome of one expectation on one trial.

    Attributes:
        name: the expectation (``answer_contains``, ``tools_called[refund_order]``, ``state[...]``, ...).
        passed: whether it held.
        detail: what was found, when it failed (or the judge's reasons).
        skipped: not checked (a judge rubric without a judge model); does not count either way.
    """

    name: str
    passed: bool
    detail: str = ""
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"name": self.name, "passed": self.passed, "detail": self.detail, "skipped": self.skipped}


@dataclass(slots=True)
class TrialFacts:
    """What a trial's events show: the tools that ran, their results, the approvals requested."""

    tools: list[dict[str, Any]] = field(default_factory=list)
    """``{"name", "arguments", "is_error"}`` for each tool call that ran, in order."""
    approvals: list[dict[str, Any]] = field(default_factory=list)
    """``{"tool", "reason"}`` for each call that waited for a person."""

    def observe(self, event: RunEvent) -> None:
        """Record one event of the run."""
        data = event.data
        if event.kind == "tool_call":
            self.tools.append({"name": data.get("name"), "arguments": data.get("arguments") or {}, "is_error": None})
        elif event.kind == "tool_result":
            for entry in reversed(self.tools):
                if entry["name"] == data.get("name") and entry["is_error"] is None:
                    entry["is_error"] = bool(data.get("is_error"))
                    break
        elif event.kind == "policy_decision" and data.get("action") == "pause" and data.get("tool"):
            self.approvals.append({"tool": data["tool"], "reason": data.get("reason")})


@dataclass(slots=True)
class CheckContext:
    """What a state check receives: the case, the run's result, its facts and the fixtures' values.

    Attributes:
        case: the case.
        result: how the run ended.
        facts: the tools that ran and the approvals requested.
        fixtures: each fixture's value by name (what its function returned or yielded).
        seed: the trial's seed.
    """

    case: Case
    result: RunResult
    facts: TrialFacts
    fixtures: dict[str, Any]
    seed: int


def answer_text(output: Any) -> str:
    """The final output as text: a string as it is, a pydantic model or other value as JSON."""
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    if isinstance(output, pydantic.BaseModel):
        return output.model_dump_json()
    return json.dumps(output, default=str)


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        return Decimal(str(value).strip().replace(",", ""))
    except (InvalidOperation, ValueError):
        return None


def contains(actual: Any, expected: Any) -> bool:
    """Whether `actual` contains `expected`: keys of objects recursively, items of lists, scalars equal.

    Numbers compare by value (``"249.00"`` equals ``249``); strings compare without case and surrounding
    spaces.
    """
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and contains(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and all(any(contains(a, e) for a in actual) for e in expected)
    if expected is None or isinstance(expected, bool):
        return actual is expected or actual == expected
    left, right = _number(actual), _number(expected)
    if left is not None and right is not None and left.is_finite() and right.is_finite():
        return left == right
    return str(actual).strip().casefold() == str(expected).strip().casefold()


def run_checks(ctx: CheckContext) -> list[CheckOutcome]:
    """Apply every expectation of the case except the judge's; return one outcome per check."""
    expect: Expectations = ctx.case.expect
    result, facts = ctx.result, ctx.facts
    answer = answer_text(result.output)
    lowered = answer.casefold()
    out: list[CheckOutcome] = []

    status = expect.expected_status
    detail = f"the run ended {result.status}" + (f": {result.error}" if result.error else "")
    out.append(CheckOutcome(f"status={status}", result.status == status, "" if result.status == status else detail))
    for text in expect.answer_contains:
        ok = text.casefold() in lowered
        out.append(CheckOutcome(f"answer_contains[{text}]", ok, "" if ok else f"answer: {_short(answer)}"))
    for text in expect.answer_not_contains:
        ok = text.casefold() not in lowered
        out.append(CheckOutcome(f"answer_not_contains[{text}]", ok, "" if ok else f"answer: {_short(answer)}"))
    if expect.answer_matches is not None:
        ok = re.search(expect.answer_matches, answer) is not None
        out.append(CheckOutcome("answer_matches", ok, "" if ok else f"answer: {_short(answer)}"))
    if expect.answer_equals is not None:
        ok = answer.strip() == expect.answer_equals.strip()
        out.append(CheckOutcome("answer_equals", ok, "" if ok else f"answer: {_short(answer)}"))
    if expect.output_schema is not None:
        out.append(_schema_check(expect.output_schema, result.output))
    for wanted in expect.tools_called:
        runs = [t for t in facts.tools if t["name"] == wanted.name]
        ok = any(contains(t["arguments"], wanted.arguments) for t in runs)
        seen = "; ".join(json.dumps(t["arguments"], default=str) for t in runs) or "never ran"
        out.append(CheckOutcome(f"tools_called[{wanted.name}]", ok, "" if ok else f"{wanted.name}: {seen}"))
    for name in expect.tools_not_called:
        runs = [t for t in facts.tools if t["name"] == name]
        detail = "; ".join(json.dumps(t["arguments"], default=str) for t in runs)
        out.append(CheckOutcome(f"tools_not_called[{name}]", not runs, f"ran with {detail}" if runs else ""))
    if expect.approval_requested is not None:
        out.append(_approval_check(expect.approval_requested, facts))
    if expect.max_steps is not None:
        ok = result.steps <= expect.max_steps
        out.append(CheckOutcome(f"max_steps={expect.max_steps}", ok, "" if ok else f"{result.steps} steps"))
    if expect.max_cost is not None:
        ok = result.usage.cost_usd <= expect.max_cost
        out.append(CheckOutcome(f"max_cost={expect.max_cost}", ok, "" if ok else f"cost {result.usage.cost_usd:.6f}"))
    for state in expect.state:
        out.append(_state_check(state.check, state.args, ctx))
    return out


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _schema_check(spec: str, output: Any) -> CheckOutcome:
    model = resolve_callable(spec, "output_schema")
    name = f"output_schema[{spec}]"
    try:
        if isinstance(output, pydantic.BaseModel):
            model.model_validate(output.model_dump())
        elif isinstance(output, str):
            model.model_validate_json(output)
        else:
            model.model_validate(output)
    except pydantic.ValidationError as exc:
        return CheckOutcome(name, False, f"{exc.error_count()} error(s): {exc.errors(include_url=False)[0]['msg']}")
    return CheckOutcome(name, True)


def _approval_check(wanted: bool | str, facts: TrialFacts) -> CheckOutcome:
    tools = [a["tool"] for a in facts.approvals]
    if wanted is False:
        return CheckOutcome("approval_requested=false", not tools, f"approval requested for {tools}" if tools else "")
    if wanted is True:
        return CheckOutcome("approval_requested", bool(tools), "" if tools else "no approval was requested")
    ok = wanted in tools
    detail = "" if ok else f"approvals requested for: {tools or 'none'}"
    return CheckOutcome(f"approval_requested[{wanted}]", ok, detail)


def _state_check(spec: str, args: dict[str, Any], ctx: CheckContext) -> CheckOutcome:
    name = f"state[{spec.rpartition(':')[2]}]"
    fn = resolve_callable(spec, "state check")
    try:
        verdict = fn(ctx, **args)
        if inspect.isawaitable(verdict):
            raise TypeError(f"state check {spec!r} is async; state checks are plain functions")
    except AssertionError as exc:
        return CheckOutcome(name, False, str(exc) or "assertion failed")
    except Exception as exc:  # a broken check fails its trial, and the other results are kept
        return CheckOutcome(name, False, f"the check raised {type(exc).__name__}: {exc}")
    if verdict is None or verdict is True:
        return CheckOutcome(name, True)
    if verdict is False:
        return CheckOutcome(name, False, "returned False")
    return CheckOutcome(name, False, str(verdict))
