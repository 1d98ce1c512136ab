"""Validation of what the model said, against the tools and the output type. Nothing here runs a tool."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pydantic

from .exceptions import UsageError
from .messages import AssistantMessage, Message, ToolCall, ToolMessage, UserMessage
from .planning import PROGRESS_TOOL
from .tools import Tool, ToolArgumentsError, _strip_titles

if TYPE_CHECKING:
    from ._seam import AgentSpec

__all__ = [
    "CONTROL_TOOLS",
    "FINAL_RESULT",
    "GIVE_UP",
    "GIVE_UP_SPEC",
    "NUL_PROBLEM",
    "Verdict",
    "final_result_spec",
    "has_nul",
    "reject_nul",
    "validate",
    "written_tool_call",
]

GIVE_UP = "give_up"
FINAL_RESULT = "final_result"
CONTROL_TOOLS = frozenset({GIVE_UP, FINAL_RESULT, "final_answer"})

GIVE_UP_SPEC: dict[str, Any] = {
    "name": GIVE_UP,
    "description": "Stop because the task cannot be completed with the tools available; say why.",
    "parameters": {
        "type": "object",
        "properties": {"reason": {"type": "string", "description": "why the task cannot be completed"}},
        "required": ["reason"],
    },
}


NUL_PROBLEM = "contains a NUL character (\\x00), which cannot be stored; remove it"
"""The problem named for input with a NUL in it (PostgreSQL cannot store one in text)."""


def has_nul(value: Any) -> bool:
    """Whether `value` (a string, or strings nested in lists and dicts, keys included) holds a NUL."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_nul(v) for v in value)
    return False


def reject_nul(**named: Any) -> None:
    """Refuse input that holds a NUL character, before it reaches a database.

    Raises:
        UsageError: naming the first argument that holds one.
    """
    for name, value in named.items():
        if has_nul(value):
            raise UsageError(f"{name}: {NUL_PROBLEM}")


@dataclass(slots=True)
class Verdict:
    """What the model's answer amounts to, once validated."""

    final: Any = None
    is_final: bool = False
    give_up: str | None = None
    calls: list[tuple[ToolCall, Tool, dict[str, Any]]] = field(default_factory=list)
    feedback: list[Message] = field(default_factory=list)  # non-empty: the answer was rejected
    problems: list[str] = field(default_factory=list)
    progress: list[ToolCall] = field(default_factory=list)  # update_plan calls (explicit planning)


def validate(message: AssistantMessage, agent: AgentSpec[object, object], offered: set[str]) -> Verdict:
    """Check the model's answer against the tools and the output type; never runs anything."""
    verdict = Verdict()
    calls = message.tool_calls
    if calls and PROGRESS_TOOL in offered:  # explicit planning: progress reports are taken out, the rest judged
        verdict.progress = [c for c in calls if c.name == PROGRESS_TOOL]
        if verdict.progress:
            calls = [c for c in calls if c.name != PROGRESS_TOOL]
            if not calls:
                return verdict
    if not calls:
        return _final_from_text(message.content, agent, verdict)

    control = [c for c in calls if c.name in CONTROL_TOOLS]
    if control and len(calls) > 1:
        problem = f"{control[0].name} must be called alone, after the other tools have returned"
        verdict.problems.append(problem)
        verdict.feedback = [
            ToolMessage(c.id, c.name, f"not run: {problem}", is_error=True, rejected=True) for c in calls
        ]
        return verdict
    if control:
        call = control[0]
        if call.name == GIVE_UP:
            verdict.give_up = str(call.arguments.get("reason") or "no reason given")
            return verdict
        if call.name == FINAL_RESULT and agent.output_type is not None:
            try:
                verdict.final = agent.output_type.model_validate(call.arguments)
                verdict.is_final = True
            except pydantic.ValidationError as exc:
                problem = _describe_output_error(exc)
                verdict.problems.append(problem)
                verdict.feedback = [ToolMessage(call.id, call.name, problem, is_error=True, rejected=True)]
            return verdict
        if call.name == "final_answer" and agent.output_type is None:
            return _final_from_text(str(call.arguments.get("answer") or ""), agent, verdict)

    by_name = agent.tools_by_name
    checked: list[tuple[ToolCall, Tool | None, dict[str, Any] | str]] = []
    for call in calls:
        tool = by_name.get(call.name)
        if tool is not None and call.name not in offered:
            checked.append((call, None, f"tool {call.name!r} is not available for this reply; give the final answer"))
            continue
        if tool is None:
            checked.append((call, None, f"unknown tool {call.name!r}; available tools: {', '.join(sorted(by_name))}"))
            continue
        try:
            checked.append((call, tool, tool.validate(call.arguments)))
        except ToolArgumentsError as exc:
            checked.append((call, tool, str(exc)))
    bad = [outcome for _, _, outcome in checked if isinstance(outcome, str)]
    if bad:
        verdict.problems.extend(bad)
        for call, _, outcome in checked:
            reply = outcome if isinstance(outcome, str) else "not run: another call in this turn was invalid; retry it"
            verdict.feedback.append(ToolMessage(call.id, call.name, reply, is_error=True, rejected=True))
        return verdict
    verdict.calls = [(c, t, k) for c, t, k in checked if t is not None and isinstance(k, dict)]
    return verdict


def _final_from_text(text: str | None, agent: AgentSpec[object, object], verdict: Verdict) -> Verdict:
    text = (text or "").strip()
    if agent.output_type is None:
        written = written_tool_call(text)
        if written is not None:
            problem = (
                f"the answer is a tool call written as text ({written!r}), which is never run; call tools "
                "through tool calling, or reply with the final answer in plain words"
            )
        elif text:
            verdict.final, verdict.is_final = text, True
            return verdict
        else:
            problem = "the answer was empty; reply with the final answer, call a tool, or call give_up"
    else:
        try:
            verdict.final = agent.output_type.model_validate_json(text)
            verdict.is_final = True
            return verdict
        except pydantic.ValidationError as exc:
            problem = (
                "the final answer must be given by calling final_result with arguments matching its schema; "
                + _describe_output_error(exc)
            )
    verdict.problems.append(problem)
    verdict.feedback = [UserMessage(problem)]
    return verdict


_FENCED = re.compile(r"^```[A-Za-z0-9_-]*\s*\n(.*)\n\s*```$", re.DOTALL)
_NAME_KEYS = ("name", "tool", "tool_name", "function")
_ARGUMENT_KEYS = ("arguments", "parameters", "args", "input")


def written_tool_call(text: str) -> str | None:
    """The tool name, if `text` is only a tool call (or a list of them) written as JSON, else None.

    A model with tool calling sometimes writes the call into its answer instead of making it; such an
    answer is malformed output: it is neither run nor accepted. JSON inside prose is an answer.
    """
    fenced = _FENCED.match(text)
    body = fenced.group(1).strip() if fenced else text
    if not body.startswith(("{", "[")):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return _call_name(data)


def _call_name(data: Any) -> str | None:
    if isinstance(data, list):
        names = [_call_name(item) for item in data]
        return names[0] if names and all(names) else None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("tool_calls"), list):
        return _call_name(data["tool_calls"])
    if isinstance(data.get("function"), dict):  # the OpenAI shape: {"type": "function", "function": {...}}
        return _call_name(data["function"])
    name = next((data[k] for k in _NAME_KEYS if isinstance(data.get(k), str)), None)
    has_arguments = any(isinstance(data.get(k), dict | str) for k in _ARGUMENT_KEYS)
    return name if name and has_arguments else None


def _describe_output_error(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(output)"
        parts.append(f"field '{loc}': {err['msg']}")
    return "the final answer did not match the output schema: " + "; ".join(parts)


def final_result_spec(output_type: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The control tool through which the model gives a structured final answer."""
    return {
        "name": FINAL_RESULT,
        "description": "Give the final answer. Call this alone, once the task is done.",
        "parameters": _strip_titles(output_type.model_json_schema()),
    }
