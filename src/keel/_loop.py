"""The perceive-reason-act loop, and nothing else.

Read it top to bottom: ask the model, validate what it said, let the policies decide, run the tools,
repeat until a validated final answer, a give-up, a limit, or a pause. Every model and tool call
goes through `steps` (the durable seam); every observation goes out through `emit`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import operator
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pydantic

from .exceptions import Signal, ToolError
from .memory.short_term import ShortTermMemory
from .messages import (
    AssistantMessage,
    Message,
    ModelResponse,
    RunEvent,
    SystemMessage,
    ToolCall,
    ToolMessage,
    Usage,
    UserMessage,
    message_from_dict,
)
from .models._base import Model, request_number
from .policies import ALLOW, Decision, Policy, PolicyContext
from .tools import Tool, ToolArgumentsError, ToolContext

if TYPE_CHECKING:
    from .agent import Agent

__all__ = ["RunResult", "RunStatus", "StepRunner", "run_loop"]

RunStatus = Literal["done", "failed", "waiting", "needs_attention"]
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


class StepRunner(Protocol):
    """The seam for effects: runs `fn` once per run and journals its JSON-ready result."""

    run_id: str

    async def __call__(self, name: str, fn: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Run (or replay) one step."""
        ...


@dataclass(slots=True)
class RunResult:
    """How a run ended.

    Attributes:
        run_id: the run's id.
        status: `done`, `failed`, `waiting` (paused for a person) or `needs_attention`.
        output: the final answer: text, or an instance of the agent's `output_type`.
        steps: model requests made.
        usage: tokens and cost of the whole run.
        messages: the full conversation.
        error: what went wrong, naming the fix, when the run did not finish.
        error_type: the error's kind (`ModelError`, `ToolFailed`, `BudgetExceeded`, `GaveUp`, ...).
    """

    run_id: str
    status: RunStatus
    output: Any = None
    steps: int = 0
    usage: Usage = field(default_factory=Usage)
    messages: list[Message] = field(default_factory=list)
    error: str | None = None
    error_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        output = self.output
        if isinstance(output, pydantic.BaseModel):
            output = output.model_dump(mode="json")
        return {
            "run_id": self.run_id,
            "status": self.status,
            "output": output,
            "steps": self.steps,
            "usage": self.usage.to_dict(),
            "messages": [m.to_dict() for m in self.messages],
            "error": self.error,
            "error_type": self.error_type,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], output_type: type[pydantic.BaseModel] | None = None) -> RunResult:
        """Build from `to_dict` output, re-validating a structured output."""
        output = data.get("output")
        if output_type is not None and data.get("status") == "done" and output is not None:
            output = output_type.model_validate(output)
        return cls(
            data["run_id"],
            data["status"],
            output,
            int(data.get("steps", 0)),
            Usage.from_dict(data.get("usage") or {}),
            [message_from_dict(m) for m in data.get("messages") or []],
            data.get("error"),
            data.get("error_type"),
        )


@dataclass(slots=True)
class _Verdict:
    """What the model's answer amounts to, once validated."""

    final: Any = None
    is_final: bool = False
    give_up: str | None = None
    calls: list[tuple[ToolCall, Tool, dict[str, Any]]] = field(default_factory=list)
    feedback: list[Message] = field(default_factory=list)  # non-empty: the answer was rejected
    problems: list[str] = field(default_factory=list)


async def run_loop(
    agent: Agent,
    task: str,
    steps: StepRunner,
    emit: Callable[[RunEvent], None],
    metadata: dict[str, Any] | None = None,
) -> RunResult:
    """Run `agent` on `task` until it finishes, gives up, hits a limit or pauses."""
    run_id = steps.run_id
    model = agent.model
    memory = ShortTermMemory(agent.context_budget)
    specs = agent.tool_specs
    messages: list[Message] = [SystemMessage(agent.system_prompt), UserMessage(task)]
    usage = Usage()
    rejections = 0
    step = 0
    emit(RunEvent("run_started", run_id, 0, {"agent": agent.name, "task": task, "model": model.name}))

    def finish(status: RunStatus, output: Any = None, error: str | None = None, kind: str | None = None) -> RunResult:
        result = RunResult(run_id, status, output, step, usage, messages, error, kind)
        emit(
            RunEvent(
                "run_finished",
                run_id,
                step,
                {"status": status, "error": error, "error_type": kind, "usage": usage.to_dict()},
            )
        )
        return result

    while True:
        if step >= agent.max_steps:
            return finish(
                "failed",
                None,
                f"the run reached max_steps={agent.max_steps} without a final answer; "
                "raise max_steps or simplify the task",
                "BudgetExceeded",
            )
        step += 1
        ctx = PolicyContext(run_id, agent.name, step, messages, usage, metadata or {}, agent.tools_by_name)
        offered = specs
        for policy in agent.policies:
            decision = _named(await policy.before_model(ctx), policy)
            if decision.action == "allow":
                continue
            _emit_decision(emit, run_id, step, policy.name, decision, None)
            if decision.action == "modify" and decision.tools is not None:
                allowed = CONTROL_TOOLS.union(decision.tools)
                offered = [s for s in offered if s["name"] in allowed]
            elif decision.action != "modify":
                return _stopped(finish, decision)

        emit(RunEvent("model_request", run_id, step, {"messages": len(messages), "tools": len(offered)}))
        request_number.set(step)
        raw = await steps("model", functools.partial(_model_step, model, memory, list(messages), offered))
        response = ModelResponse.from_dict(raw["response"])
        for k, call in enumerate(response.message.tool_calls):
            if not call.id:  # some providers (and the JSON envelope) give no call ids
                call.id = f"call_{step}_{k}"
        usage += response.usage
        emit(
            RunEvent(
                "model_response",
                run_id,
                step,
                {
                    "content": response.message.content,
                    "tool_calls": [c.to_dict() for c in response.message.tool_calls],
                    "usage": response.usage.to_dict(),
                    "duration_ms": raw["duration_ms"],
                    "window": raw["window"],
                },
            )
        )
        if raw["window"]["shortened"] or raw["window"]["omitted"]:
            emit(RunEvent("context_trimmed", run_id, step, raw["window"]))
        after = operator.methodcaller("after_model", ctx, response)
        decision = await _first_objection(after, agent, emit, run_id, step)
        if decision.action != "allow":
            return _stopped(finish, decision)

        verdict = _validate(response.message, agent, {s["name"] for s in offered})
        messages.append(response.message)
        if verdict.feedback:
            rejections += 1
            messages.extend(verdict.feedback)
            emit(RunEvent("output_rejected", run_id, step, {"problems": verdict.problems, "attempt": rejections}))
            if rejections > agent.output_retries:
                return finish(
                    "failed",
                    None,
                    f"the model's output was malformed {rejections} times in a row "
                    f"(last: {'; '.join(verdict.problems)}); nothing of it was executed. Use a stronger "
                    "model, simplify the tools or output schema, or raise output_retries",
                    "ModelError",
                )
            continue
        rejections = 0
        if verdict.is_final:
            return finish("done", verdict.final)
        if verdict.give_up is not None:
            return finish("failed", verdict.give_up, f"the agent gave up: {verdict.give_up}", "GaveUp")

        for index, (call, tool, kwargs) in enumerate(verdict.calls):
            ctx.step = step
            decision = ALLOW
            for policy in agent.policies:
                decision = _named(await policy.before_tool(ctx, call, tool), policy)
                if decision.action == "modify" and decision.arguments is not None:
                    _emit_decision(emit, run_id, step, policy.name, decision, call.name)
                    try:
                        kwargs = tool.validate(decision.arguments)
                        call = ToolCall(call.name, decision.arguments, call.id)
                    except ToolArgumentsError as exc:
                        decision = Decision.deny(f"{policy.name} changed the arguments into invalid ones: {exc}")
                if decision.action not in ("allow", "modify"):
                    _emit_decision(emit, run_id, step, policy.name, decision, call.name)
                    break
            if decision.action in ("stop", "pause"):
                messages.append(
                    ToolMessage(call.id, call.name, f"not run: {decision.reason}", is_error=True, rejected=True)
                )
                return _stopped(finish, decision)
            if decision.action == "deny":
                result = ToolMessage(call.id, call.name, f"denied: {decision.reason}", is_error=True, rejected=True)
            else:
                emit(
                    RunEvent(
                        "tool_call", run_id, step, {"name": call.name, "arguments": call.arguments, "call_id": call.id}
                    )
                )
                tctx = ToolContext(run_id, call.id, step, f"{run_id}/{step}/{index}")
                raw = await steps(f"tool:{call.name}", functools.partial(_tool_step, tool, kwargs, tctx))
                result = ToolMessage(call.id, call.name, raw["content"], raw["is_error"])
                if raw.get("failed"):
                    messages.append(result)
                    emit(
                        RunEvent(
                            "tool_result",
                            run_id,
                            step,
                            {
                                "name": call.name,
                                "call_id": call.id,
                                "content": result.content,
                                "is_error": True,
                                "duration_ms": raw["duration_ms"],
                            },
                        )
                    )
                    return finish(
                        "failed",
                        None,
                        f"tool {call.name!r} raised {raw['failed']}; the run stopped with "
                        "its state kept: fix the tool (or raise ToolError for failures the model should "
                        "see) and resume the run",
                        "ToolFailed",
                    )
                for policy in agent.policies:
                    decision = _named(await policy.after_tool(ctx, call, result), policy)
                    if decision.action == "modify" and decision.content is not None:
                        result = ToolMessage(call.id, call.name, decision.content, result.is_error)
                    elif decision.action == "deny":
                        result = ToolMessage(call.id, call.name, f"withheld: {decision.reason}", is_error=True)
                    if decision.action != "allow":
                        _emit_decision(emit, run_id, step, policy.name, decision, call.name)
                    if decision.action in ("stop", "pause"):
                        messages.append(result)
                        return _stopped(finish, decision)
                emit(
                    RunEvent(
                        "tool_result",
                        run_id,
                        step,
                        {
                            "name": call.name,
                            "call_id": call.id,
                            "content": result.content,
                            "is_error": result.is_error,
                            "duration_ms": raw["duration_ms"],
                        },
                    )
                )
            messages.append(result)


def _named(decision: Decision, policy: Policy) -> Decision:
    if decision.action == "allow" or decision.policy:
        return decision
    return dataclasses.replace(decision, policy=policy.name)


def _stopped(finish: Callable[..., RunResult], decision: Decision) -> RunResult:
    if decision.action == "pause":
        return finish("waiting", None, f"paused by {decision.policy}: {decision.reason}", "Paused")
    return finish("failed", None, f"stopped by {decision.policy}: {decision.reason}", "PolicyStop")


def _emit_decision(
    emit: Callable[[RunEvent], None], run_id: str, step: int, policy: str, decision: Decision, tool: str | None
) -> None:
    emit(
        RunEvent(
            "policy_decision",
            run_id,
            step,
            {"policy": policy, "action": decision.action, "reason": decision.reason, "tool": tool},
        )
    )


async def _first_objection(
    hook: Callable[[Policy], Awaitable[Decision]],
    agent: Agent,
    emit: Callable[[RunEvent], None],
    run_id: str,
    step: int,
) -> Decision:
    """Ask each policy in order; the first decision that is not `allow` wins."""
    for policy in agent.policies:
        decision = _named(await hook(policy), policy)
        if decision.action != "allow":
            _emit_decision(emit, run_id, step, policy.name, decision, None)
            return decision
    return ALLOW


async def _model_step(
    model: Model, memory: ShortTermMemory, messages: list[Message], specs: list[dict[str, Any]]
) -> dict[str, Any]:
    started = time.perf_counter()
    window = await memory.fit(messages, model, specs)
    response = await model.request(window.messages, specs, max_tokens=model.profile.max_output_tokens)
    return {
        "response": response.to_dict(),
        "window": {
            "tokens": window.tokens,
            "budget": window.budget,
            "shortened": window.shortened,
            "omitted": window.omitted,
        },
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
    }


async def _tool_step(tool: Tool, kwargs: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    started = time.perf_counter()
    if tool.context_param is not None:
        kwargs = {**kwargs, tool.context_param: ctx}
    out: dict[str, Any]
    try:
        call = functools.partial(tool.func, **kwargs)
        pending = call() if tool.is_async else asyncio.to_thread(call)
        value = await asyncio.wait_for(pending, tool.timeout) if tool.timeout else await pending
        out = {"content": tool.serialize(value), "is_error": False}
    except ToolError as exc:
        out = {"content": str(exc) or type(exc).__name__, "is_error": True}
    except TimeoutError:
        out = {"content": f"{tool.name} did not finish within its {tool.timeout} s timeout", "is_error": True}
    except Signal:
        raise
    except Exception as exc:
        out = {
            "content": f"{tool.name} failed unexpectedly",
            "is_error": True,
            "failed": f"{type(exc).__name__}: {exc}",
        }
    out["duration_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return out


def _validate(message: AssistantMessage, agent: Agent, offered: set[str]) -> _Verdict:
    """Check the model's answer against the tools and the output type; never runs anything."""
    verdict = _Verdict()
    calls = message.tool_calls
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


def _final_from_text(text: str | None, agent: Agent, verdict: _Verdict) -> _Verdict:
    text = (text or "").strip()
    if agent.output_type is None:
        if text:
            verdict.final, verdict.is_final = text, True
            return verdict
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


def _describe_output_error(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(output)"
        parts.append(f"field '{loc}': {err['msg']}")
    return "the final answer did not match the output schema: " + "; ".join(parts)


def final_result_spec(output_type: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The control tool through which the model gives a structured final answer."""
    from .tools import _strip_titles

    return {
        "name": FINAL_RESULT,
        "description": "Give the final answer. Call this alone, once the task is done.",
        "parameters": _strip_titles(output_type.model_json_schema()),
    }
