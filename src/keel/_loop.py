"""The perceive-reason-act loop, and nothing else.

Read it top to bottom: ask the policies, ask the model, validate what it said, let the policies decide
on each tool call (a person too, when one must), run the tools (a failed tool's fallback is one more
call through the same gate), repeat until a validated final answer, a give-up, a limit, or a pause.
What the policies redact is redacted inside each step, before the journal keeps it. Planning and
agent memory join through the hooks of `keel._participant.Participant`, each called in one place:
with explicit planning, a planning step comes first, and again after a step of the plan fails.
Every model and tool call goes through `steps` (the step seam, declared in `keel._seam`); every
observation goes out through `emit`, as a typed `keel.events.RunEvent` marked replayed when an earlier
segment announced it already.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._participant import Participant, RunEnds
from ._seam import (
    MODEL,
    RunResult,
    RunStatus,
    StepConflict,
    StepFn,
    StepInterrupted,
    StepRunner,
    Suspend,
    tool_step_name,
)
from ._tool_exec import ToolCrashed, model_step, tool_step
from ._validate import validate
from .approvals import approval_request, approved_call, escalated, interrupted_request
from .events import EventKind, RunEvent
from .exceptions import CallInterrupted
from .memory._agent import MemoryParticipant
from .memory.short_term import ShortTermMemory
from .messages import (
    Message,
    ModelResponse,
    SystemMessage,
    ToolCall,
    ToolMessage,
    Usage,
    UserMessage,
)
from .models._base import request_number
from .planning import Planner
from .policies import Decision, PolicyContext, Where, consult, redact
from .tools import Tool, ToolArgumentsError, ToolContext

if TYPE_CHECKING:
    from ._seam import AgentSpec
    from .memory._agent import AgentMemory
    from .policies import Policy

    LoopAgent = AgentSpec[Policy, AgentMemory]
    """What the loop reads of the agent it runs (`keel.Agent` is one)."""

__all__ = ["run_loop"]

log = logging.getLogger("keel")


async def _given(output: dict[str, Any]) -> dict[str, Any]:
    """A step whose output a person supplied."""
    return output


_BEFORE_STEP: frozenset[str] = frozenset(
    {"run_started", "model_request", "tool_call", "approval_requested", "attention_requested", "run_finished"}
)
"""Kinds announced before the step they lead to (and a segment's end): replayed only with a step ahead."""


class _Stop(Exception):  # noqa: N818 - ends the run from deep inside a turn
    def __init__(self, status: RunStatus, error: str, kind: str, pending: ToolMessage | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.kind, self.pending = status, error, kind, pending


async def run_loop(
    agent: LoopAgent,
    task: str,
    steps: StepRunner,
    emit: Callable[[RunEvent], None],
    metadata: dict[str, Any] | None = None,
) -> RunResult:
    """Run `agent` on `task` until it finishes, gives up, hits a limit or waits for a person."""
    run = _Run(agent, task, steps, emit, metadata or {})
    try:
        result = await _drive(run)
        if result.status in ("done", "failed"):
            await run.ended(result.status)
        return result
    finally:
        for state in run.states.values():  # the policies' state of this run (or segment) ends with it
            state.clear()
        run.states.clear()


async def _drive(run: _Run) -> RunResult:
    try:
        return await run.loop()
    except Suspend as pause:
        return run.finish(pause.status, None, pause.reason, "Paused" if pause.status == "waiting" else "NeedsAttention")
    except _Stop as stop:
        if stop.pending is not None:
            run.messages.append(stop.pending)
        return run.finish(stop.status, None, stop.error, stop.kind)
    except StepConflict:
        raise
    except Exception as exc:  # a model outage, a bug in a policy: the run fails, its journal intact
        return run.finish("failed", None, f"{exc} (the run can be resumed once the cause is fixed)", type(exc).__name__)


class _Run:
    """The state of one run while the loop drives it."""

    def __init__(
        self, agent: LoopAgent, task: str, steps: StepRunner, emit: Callable[[RunEvent], None], metadata: dict[str, Any]
    ) -> None:
        self.agent, self.steps, self.emit, self.metadata = agent, steps, emit, metadata
        self.run_id = steps.run_id
        self.memory = ShortTermMemory(agent.context_budget)
        task, hidden = redact(agent.policies, task, "task")  # a durable run's task arrives redacted already
        self.messages: list[Message] = [SystemMessage(agent.system_prompt), UserMessage(task)]
        self.usage = Usage()
        self.step = 0
        self.withheld: str | None = None  # why every tool was withheld from a request, once one was
        self.states: dict[int, dict[str, Any]] = {}  # each policy's state of this run, dropped with the run
        self.parts: list[Participant] = [MemoryParticipant()] if agent.memory is not None else []
        if agent.planning == "explicit":
            self.parts.append(Planner(agent, self.event))
        self.event("run_started", agent=agent.name, task=task, model=agent.model.name, tenant=metadata.get("tenant"))
        self.hidden(hidden, None)

    def event(self, kind: EventKind, /, **data: Any) -> None:
        """Announce a happening; one an earlier segment announced already goes out as replayed.

        A happening that leads up to a step (a request, a call) was announced if the journal holds a
        step ahead; any other also if it followed from the step just replayed. A segment's end is its own.
        """
        steps = self.steps
        replayed = steps.replaying or (kind not in _BEFORE_STEP and steps.replayed)
        self.emit(RunEvent(kind, self.run_id, self.step, data, seq=steps.seq, replayed=replayed))

    def finish(
        self, status: RunStatus, output: Any = None, error: str | None = None, kind: str | None = None
    ) -> RunResult:
        report = self.report(error, kind) if status == "failed" else None
        self.event(
            "run_finished", status=status, error=error, error_type=kind, usage=self.usage.to_dict(), report=report
        )
        plan = next((s for s in (p.snapshot() for p in self.parts) if s is not None), None)
        return RunResult(self.run_id, status, output, self.step, self.usage, self.messages, error, kind, plan, report)

    def report(self, error: str | None, kind: str | None) -> dict[str, Any]:
        """What failed, at which step, and the last good state: where a resumed run picks up."""
        last_result = next((m for m in reversed(self.messages) if isinstance(m, ToolMessage) and not m.is_error), None)
        return {
            "failed": kind,
            "error": error,
            "step": self.step,
            "last_good": {
                "steps_completed": max(0, self.step - 1),
                "messages": len(self.messages),
                "last_tool_result": None
                if last_result is None
                else {"tool": last_result.name, "content": last_result.content[:500]},
                "usage": self.usage.to_dict(),
            },
            "resumable": True,
        }

    def context(self, messages: list[Message]) -> PolicyContext:
        """What the policies see of the run now (with the step seam, for their journaled effects)."""
        agent = self.agent
        return PolicyContext(
            self.run_id,
            agent.name,
            self.step,
            messages,
            self.usage,
            self.metadata,
            agent.tools_by_name,
            agent.model,
            self.steps,
            states=self.states,
        )

    async def ended(self, status: str) -> None:
        """Tell the policies how the run ended.

        They observe only: no step is journaled for them here (a failed run may be resumed, and its replay
        must find the journal as the loop left it).
        """
        agent = self.agent
        ctx = PolicyContext(
            self.run_id, agent.name, self.step, self.messages, self.usage, self.metadata, agent.tools_by_name
        )
        for policy in agent.policies:
            ctx.state = self.states.setdefault(id(policy), {})
            try:
                await policy.after_run(ctx, status)
            except Exception:  # an observer must never change how the run ended
                log.exception("policy %s failed in after_run of run %s", policy.name, self.run_id)

    async def redacted(self, where: Where, fn: StepFn) -> dict[str, Any]:
        """Run a step's effect and let the policies redact its text before the journal keeps it.

        What a policy hides never reaches the journal, the events or the API; a resumed run replays the
        redacted record. The record lists what was hidden, for the events.
        """
        out = await fn()
        policies = self.agent.policies
        hidden: list[tuple[str, str]] = []
        if where == "output":
            response = out["response"]
            message = response["message"]
            if message.get("content"):
                message["content"], hidden = redact(policies, message["content"], where)
            if response.get("raw_text"):
                response["raw_text"], _ = redact(policies, response["raw_text"], where)
        else:
            if out.get("content"):
                out["content"], hidden = redact(policies, out["content"], where)
            if out.get("escalate"):
                out["escalate"], _ = redact(policies, out["escalate"], where)
        if hidden:
            out["redacted"] = [list(h) for h in hidden]
        return out

    def hidden(self, redactions: Iterable[Sequence[str]], tool: str | None) -> None:
        """Tell the observers what the policies redacted (a `modify` decision each)."""
        for policy, reason in redactions:
            self.event("policy_decision", policy=policy, action="modify", reason=reason, tool=tool)

    def announce(self, decision: Decision, tool: str | None = None) -> None:
        """Tell the observers what a policy decided (anything but `allow`)."""
        self.event("policy_decision", policy=decision.policy, action=decision.action, reason=decision.reason, tool=tool)

    async def loop(self) -> RunResult:
        agent, rejections = self.agent, 0
        for part in self.parts:
            await part.on_start(self)
        while True:
            try:
                for part in self.parts:
                    await part.before_turn(self)  # before acting: a plan, or a new one after a step failed
            except RunEnds as ended:
                raise _Stop("failed", str(ended), ended.kind) from None
            if self.step >= agent.max_steps:
                raise _Stop(
                    "failed",
                    f"the run reached max_steps={agent.max_steps} without a final answer; "
                    "raise max_steps or simplify the task",
                    "BudgetExceeded",
                )
            self.step += 1
            ctx = self.context(self.messages)
            offered = await self.before_model(ctx)
            for part in self.parts:
                offered = part.offer(offered)
            response = await self.ask_model(offered)
            response = await consult("after_model", agent.policies, ctx, response, self.after_model, self.announce)

            verdict = validate(response.message, agent, {s["name"] for s in offered})
            self.messages.append(response.message)
            if verdict.progress:
                for part in self.parts:
                    self.messages.extend(part.progress(verdict.progress))
            if verdict.feedback:
                rejections += 1
                self.messages.extend(verdict.feedback)
                self.event("output_rejected", problems=verdict.problems, attempt=rejections)
                if rejections > agent.output_retries:
                    raise _Stop(
                        "failed",
                        f"the model's output was malformed {rejections} times in a row "
                        f"(last: {'; '.join(verdict.problems)}); nothing of it was executed. Use a stronger "
                        "model, simplify the tools or output schema, or raise output_retries",
                        "ModelError",
                    )
                continue
            rejections = 0
            if verdict.is_final and self.withheld is not None:  # work the task needed may not have happened
                return self.finish(
                    "failed",
                    verdict.final,
                    f"every tool was withheld from a request of this run ({self.withheld}), so work the task "
                    "needed may not have happened; check the answer, or make the policy pause for a person "
                    "instead (LoopGuard(then='pause'))",
                    "ToolsWithheld",
                )
            if verdict.is_final:
                for part in self.parts:
                    await part.on_final(self)
                return self.finish("done", verdict.final)
            if verdict.give_up is not None:
                return self.finish("failed", verdict.give_up, f"the agent gave up: {verdict.give_up}", "GaveUp")
            for index, (call, tool, kwargs) in enumerate(verdict.calls):
                result = await self.handle_call(ctx, index, call, tool, kwargs)
                self.messages.append(result)
                for part in self.parts:
                    part.observe(result)  # a step whose tool failed: plan again

    # What a participant may do (`keel._participant.RunView`).

    def set_system(self, text: str) -> None:
        self.messages[0] = SystemMessage(text)

    def next_step(self) -> int:
        self.step += 1
        request_number.set(self.step)
        return self.step

    def add_usage(self, usage: Usage) -> None:
        self.usage += usage

    async def request(self, messages: list[Message], offered: list[dict[str, Any]], doing: str) -> ModelResponse:
        agent = self.agent
        if self.step >= agent.max_steps:
            raise _Stop(
                "failed",
                f"the run reached max_steps={agent.max_steps} while {doing}; raise max_steps",
                "BudgetExceeded",
            )
        self.step += 1
        await self.before_model(self.context(messages))
        return await self.ask_model(offered, messages)

    async def before_model(self, ctx: PolicyContext) -> list[dict[str, Any]]:
        """The tools to offer in the next request, as the policies leave them."""
        agent = self.agent
        return await consult("before_model", agent.policies, ctx, agent.tool_specs, self.offer, self.announce)

    async def offer(self, decision: Decision, offered: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Apply one decision before a request: narrow the tools, replace the task, ask a person, or end."""
        if decision.action != "modify":
            self.note(await self.objection(decision))
            return offered
        if decision.tools is not None:
            allowed = {*decision.tools, "give_up", "final_result", "final_answer"}
            kept = [s for s in offered if s["name"] in allowed]
            # none of the agent's tools left: the run can no longer end as plain success
            if not any(s["name"] in self.agent.tools_by_name for s in kept) and len(kept) < len(offered):
                self.withheld = f"{decision.policy}: {decision.reason}"
                self.event("tools_withheld", policy=decision.policy, reason=decision.reason)
            offered = kept
        if decision.content is not None:
            self.replace_last_user(decision.content)
        return offered

    async def after_model(self, decision: Decision, response: ModelResponse) -> ModelResponse:
        """Apply one decision on a response: replace its text, ask a person, or end the run."""
        if decision.action != "modify":
            self.note(await self.objection(decision))
        elif decision.content is not None:
            response = dataclasses.replace(
                response, message=dataclasses.replace(response.message, content=decision.content)
            )
        return response

    async def objection(self, decision: Decision, pending: ToolMessage | None = None) -> str | None:
        """Act on a deny/stop/pause: deny and stop end the run; pause asks a person and returns their note."""
        if decision.action == "pause":
            return await self.ask_person(f"{decision.policy}: {decision.reason}")
        if decision.action in ("deny", "stop"):
            kind = str(decision.meta.get("error_type") or "PolicyStop")
            raise _Stop("failed", f"stopped by {decision.policy}: {decision.reason}", kind, pending)
        return None

    def replace_last_user(self, content: str) -> None:
        """Replace the text of the latest user message (a policy redacted the task or a note)."""
        for i in range(len(self.messages) - 1, -1, -1):
            if isinstance(self.messages[i], UserMessage):
                self.messages[i] = UserMessage(content)
                return

    async def ask_person(self, reason: str, **request: Any) -> str | None:
        """Pause until a person says continue (returning their note, if any) or fail."""
        choice = await self.decide("pause", {"reason": reason, **request})
        if choice.get("decision") == "fail":
            raise _Stop("failed", f"a person ended the run: {choice.get('note') or reason}", "Stopped")
        note = choice.get("note")
        return f"A person reviewed the run and says: {note}" if note else None

    async def decide(self, kind: str, request: dict[str, Any]) -> dict[str, Any]:
        """Ask a person through the step seam, announcing the request and the decision."""
        approval = kind == "approval"
        asked = {k: request.get(k) for k in ("tool", "arguments", "arguments_hash", "reason")}
        self.event("approval_requested" if approval else "attention_requested", kind=kind, **asked)
        choice = await self.steps.decide(kind, request)
        self.event(
            "approval_decided" if approval else "attention_decided",
            id=choice.get("id"),
            kind=kind,
            decision=choice.get("decision"),
            by=choice.get("by"),
            note=choice.get("note"),
            edited=bool(choice.get("edited")),
            arguments=choice.get("arguments"),
        )
        return choice

    def note(self, text: str | None) -> None:
        """Tell the model what a person said, as a user message."""
        if text:
            self.messages.append(UserMessage(text))

    async def ask_model(self, offered: list[dict[str, Any]], messages: list[Message] | None = None) -> ModelResponse:
        if messages is None:  # an action request: the conversation, and the current plan if there is one
            messages = list(self.messages)
            for part in self.parts:
                messages = part.context(messages)
        self.event("model_request", messages=len(messages), tools=len(offered))
        request_number.set(self.step)
        step_fn = functools.partial(model_step, self.agent.model, self.memory, messages, offered)
        raw = await self.steps(MODEL, functools.partial(self.redacted, "output", step_fn))
        response = ModelResponse.from_dict(raw["response"])
        for k, call in enumerate(response.message.tool_calls):
            if not call.id:  # some providers (and the JSON envelope) give no call ids
                call.id = f"call_{self.step}_{k}"
        self.usage += response.usage
        self.event(
            "model_response",
            content=response.message.content,
            tool_calls=[c.to_dict() for c in response.message.tool_calls],
            usage=response.usage.to_dict(),
            duration_ms=raw["duration_ms"],
            window=raw["window"],
        )
        if raw["window"]["shortened"] or raw["window"]["omitted"]:
            self.event("context_trimmed", **raw["window"])
        self.hidden(raw.get("redacted", ()), None)
        return response

    async def handle_call(
        self,
        ctx: PolicyContext,
        index: int,
        call: ToolCall,
        tool: Tool,
        kwargs: dict[str, Any],
        because: str | None = None,
    ) -> ToolMessage:
        """Every policy decides, a person too if one asks; then the tool runs (or does not).

        `because` says why this call is another tool's fallback; it passes the same gate as any call.
        """
        gated = await self.gate(ctx, call, tool, kwargs)
        if isinstance(gated, ToolMessage):
            return gated
        call, kwargs = gated
        self.event("tool_call", name=call.name, arguments=call.arguments, call_id=call.id)
        key = f"{self.run_id}/{self.step}/{index}" + (f"/{tool.name}" if because is not None else "")
        tctx = ToolContext(self.run_id, call.id, self.step, key, self.metadata)
        try:
            raw = await self.run_tool(call.name, tool, kwargs, tctx)
        except ToolCrashed as exc:
            crash, _ = redact(self.agent.policies, str(exc), "tool_results")  # an error message may quote a secret
            self.event("tool_result", name=call.name, call_id=call.id, content=crash, is_error=True, duration_ms=0)
            raise _Stop(
                "failed",
                f"tool {call.name!r} raised {crash}; the run stopped with its state kept: fix the tool "
                "(or raise ToolError for failures the model should see) and resume the run",
                "ToolFailed",
                ToolMessage(call.id, call.name, f"{call.name} failed unexpectedly: {crash}", is_error=True),
            ) from None
        self.hidden(raw.get("redacted", ()), call.name)
        if raw.get("fall_back") and tool.fallback is not None:
            return await self.fall_back(ctx, index, call, tool, f"{tool.name} failed: {raw['fall_back']}")
        result = ToolMessage(call.id, call.name, raw["content"], raw["is_error"])
        if raw.get("escalate"):
            said = await self.ask_person(f"{call.name} asked for a person: {raw['escalate']}", tool=call.name)
            if said:  # the note travels with the tool's result, keeping the messages in provider order
                result = dataclasses.replace(result, content=f"{result.content}\n{said}")
        result = await self.after_tool(ctx, call, result)
        answered = {"fallback": {"tool": call.name, "because": because}} if because is not None else {}
        if "fallback" in raw:  # journaled before fallbacks were calls of their own
            answered = {"fallback": raw["fallback"]}
        self.event(
            "tool_result",
            name=call.name,
            call_id=call.id,
            content=result.content,
            is_error=result.is_error,
            duration_ms=raw["duration_ms"],
            **answered,
        )
        return result

    async def gate(
        self, ctx: PolicyContext, call: ToolCall, tool: Tool, kwargs: dict[str, Any]
    ) -> tuple[ToolCall, dict[str, Any]] | ToolMessage:
        """Consult every policy on the call, and a person when one asks: the call to run, or the refusal."""

        def refused(text: str) -> ToolMessage:
            return ToolMessage(call.id, call.name, text, is_error=True, rejected=True)

        pause: Decision | None = None

        async def apply(decision: Decision, call: ToolCall | ToolMessage) -> ToolCall | ToolMessage:
            nonlocal kwargs, pause
            assert isinstance(call, ToolCall)  # consult asks no further once the call is refused
            if decision.action == "modify" and decision.arguments is not None:
                try:
                    kwargs = tool.validate(decision.arguments)
                except ToolArgumentsError as exc:
                    return refused(f"denied: {decision.policy} changed the arguments into invalid ones: {exc}")
                return ToolCall(call.name, decision.arguments, call.id)
            if decision.action == "deny":
                return refused(f"denied: {decision.reason}")
            if decision.action == "stop":
                await self.objection(decision, refused(f"not run: {decision.reason}"))
            if decision.action == "pause" and pause is None:
                pause = decision
            return call

        announce = functools.partial(self.announce, tool=call.name)
        asked: ToolCall | ToolMessage = call
        decided = await consult("before_tool", self.agent.policies, ctx, asked, apply, announce, tool=tool)
        if isinstance(decided, ToolMessage):
            return decided
        call = decided
        if pause is None:
            return call, kwargs
        # the person approves the validated arguments: exactly what the tool will receive
        approved = await self.approve(ToolCall(call.name, tool.plain(kwargs), call.id), pause)
        if isinstance(approved, str):
            return refused(approved)
        try:
            return approved, tool.validate(approved.arguments)
        except ToolArgumentsError as exc:
            return refused(f"the approved arguments are invalid: {exc}")

    async def fall_back(self, ctx: PolicyContext, index: int, call: ToolCall, tool: Tool, because: str) -> ToolMessage:
        """The tool failed: call its fallback with the same arguments, as a call of its own.

        It passes the same policies and approvals as a call the model made, and is journaled as its own
        step; the model sees the answer under the call it made.
        """
        fallback = tool.fallback
        assert fallback is not None
        instead = ToolCall(fallback.name, call.arguments, call.id)
        try:
            kwargs = fallback.validate(call.arguments)
        except ToolArgumentsError as exc:
            return ToolMessage(call.id, call.name, f"{because}; its fallback refused the arguments: {exc}", True)
        result = await self.handle_call(ctx, index, instead, fallback, kwargs, because)
        return dataclasses.replace(result, name=call.name)

    async def after_tool(self, ctx: PolicyContext, call: ToolCall, result: ToolMessage) -> ToolMessage:
        """Every policy sees the result before the model does: redact, withhold, or ask a person."""

        async def apply(decision: Decision, result: ToolMessage) -> ToolMessage:
            if decision.action == "modify":
                return result if decision.content is None else dataclasses.replace(result, content=decision.content)
            if decision.action == "deny":
                return ToolMessage(call.id, call.name, f"withheld: {decision.reason}", is_error=True)
            said = await self.objection(decision, result)
            return dataclasses.replace(result, content=f"{result.content}\n{said}") if said else result

        announce = functools.partial(self.announce, tool=call.name)
        return await consult("after_tool", self.agent.policies, ctx, result, apply, announce, call=call)

    async def approve(self, call: ToolCall, pause: Decision) -> ToolCall | str:
        """Ask a person to approve this exact call; return the call to run, or why it will not run.

        The request and the check of the decision against the run's own digest are `keel.approvals`'s:
        an approval row whose arguments were changed after the request is refused, and an edit runs only
        the arguments its own hash was made of.
        """
        request = approval_request(call, f"{pause.policy}: {pause.reason}", pause.meta)
        choice = await self.decide("approval", request)
        if choice.get("decision") == "expired" and choice.get("on_expiry") == "escalate":
            choice = await self.decide("approval", escalated(request))
        return approved_call(call, request, choice)

    async def run_tool(self, name: str, tool: Tool, kwargs: dict[str, Any], tctx: ToolContext) -> dict[str, Any]:
        """Run the tool as a step; if it was cut off mid-call by a dead worker, ask a person what to do."""
        fn = functools.partial(self.redacted, "tool_results", functools.partial(tool_step, tool, kwargs, tctx))
        try:
            return await self.steps(tool_step_name(name), fn, guard=tool.side_effects and not tool.idempotent)
        except StepInterrupted:
            cause = f"{name} was running when its worker stopped and may or may not have taken effect"
        except CallInterrupted as cut:  # a remote call cut off mid-flight: the same question for a person
            cause = str(cut)
        request = interrupted_request(name, tool.plain(kwargs), cause)
        while True:
            choice = await self.decide("interrupted", request)
            completion = fn
            if choice.get("decision") == "skip":
                supplied = {"content": str(choice.get("result") or "done"), "is_error": False, "duration_ms": 0.0}
                completion = functools.partial(self.redacted, "tool_results", functools.partial(_given, supplied))
            elif choice.get("decision") != "retry":
                raise _Stop("failed", f"a person failed the run after {name} was interrupted", "Interrupted")
            try:
                return await self.steps.complete(completion)
            except StepInterrupted:
                # the retry was cut off too, and may or may not have taken effect: a person decides again
                continue
