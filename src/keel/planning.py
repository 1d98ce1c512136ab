"""Explicit planning: the model makes a `Plan` before acting, the loop follows it, and plans again.

With ``Agent(planning="explicit")`` a run starts with a planning step: the model is offered one tool,
``submit_plan``, whose parameters are the `Plan` schema. The answer is validated (schema, step order,
dependencies, tool hints); an invalid plan goes back to the model with what was wrong, at most
``output_retries`` times, and nothing runs before a plan validates.

While acting, the current plan (each step pending, done or failed) is shown to the model at the end of
its context, and an ``update_plan`` tool is offered with the agent's tools. The model calls it to mark a
step done, or failed when the step cannot be done as planned or a result contradicts the plan. A failed
step, reported so or a tool that returned an error, makes the loop plan again before the next action,
at most ``max_replans`` times.

Planning requests are model requests like any other: they go through the durable step seam (a resumed
run replays its plan, it does not plan again) and count towards ``max_steps``. Every change of the plan is
a `RunEvent` (``plan_created``, ``plan_updated``, ``plan_rejected``, ``plan_step_done``,
``plan_step_failed``), and the final plan is part of the run's result. The texts are data, in
``keel/prompts/planning.md``.
"""

from __future__ import annotations

import functools
import importlib.resources
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pydantic

from ._participant import Participant, RunEnds
from .messages import AssistantMessage, Message, ToolCall, ToolMessage, UserMessage
from .tools import _strip_titles

if TYPE_CHECKING:
    from ._participant import RunView
    from ._seam import AgentSpec

__all__ = [
    "PLANNING_MODES",
    "PLANNING_TOOLS",
    "PLAN_TOOL",
    "PROGRESS_TOOL",
    "Plan",
    "PlanStep",
    "Planner",
    "PlanningFailed",
]

PLANNING_MODES = ("implicit", "explicit")
"""`implicit`: the model acts step by step (the default). `explicit`: it makes a `Plan` first."""
PLAN_TOOL = "submit_plan"
"""The tool through which the model gives its plan (offered alone, in planning requests only)."""
PROGRESS_TOOL = "update_plan"
"""The tool through which the model marks a step done or failed (offered with the agent's tools)."""
PLANNING_TOOLS = frozenset({PLAN_TOOL, PROGRESS_TOOL})
"""Tool names reserved by explicit planning."""
MAX_PLAN_STEPS = 10

StepStatus = Literal["pending", "done", "failed"]


class PlanStep(pydantic.BaseModel):
    """One step of a plan. Steps are numbered by their position, from 1."""

    model_config = pydantic.ConfigDict(extra="forbid", defer_build=True)  # built on first use: import stays cheap

    action: str = pydantic.Field(min_length=1, description="what to do in this step")
    tool: str | None = pydantic.Field(default=None, description="the tool this step will likely call, or null")
    depends_on: list[int] = pydantic.Field(
        default_factory=list, description="numbers of the earlier steps this step needs"
    )

    @pydantic.field_validator("tool", mode="before")
    @classmethod
    def _no_tool(cls, value: Any) -> Any:
        """Small models write "" or "none" for no tool; both mean null."""
        if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
            return None
        return value


class Plan(pydantic.BaseModel):
    """A plan for a task: what the model means to do, in order, before it acts.

    Attributes:
        goal: what the task is meant to achieve.
        steps: the steps in order (1 to 10); each may name the tool it will likely call and the
            earlier steps it needs.
        blockers: what is already known to stand in the way (may be empty).
        success_criteria: how to tell the task is done (at least one).

    Validated with ``context={"tools": {...}}``, a tool hint must name one of those tools.
    """

    model_config = pydantic.ConfigDict(extra="forbid", defer_build=True)  # built on first use: import stays cheap

    goal: str = pydantic.Field(min_length=1, description="what the task is meant to achieve")
    steps: list[PlanStep] = pydantic.Field(
        min_length=1, max_length=MAX_PLAN_STEPS, description="the steps, in the order they will be done"
    )
    blockers: list[str] = pydantic.Field(default_factory=list, description="what is known to stand in the way")
    success_criteria: list[str] = pydantic.Field(min_length=1, description="how to tell the task is done")

    @pydantic.model_validator(mode="after")
    def _consistent(self, info: pydantic.ValidationInfo) -> Plan:
        tools = (info.context or {}).get("tools") if isinstance(info.context, dict) else None
        problems = []
        for number, step in enumerate(self.steps, 1):
            later = [d for d in step.depends_on if not 1 <= d < number]
            if later:
                allowed = f"1 to {number - 1}" if number > 1 else "none: it is the first step"
                problems.append(f"step {number} depends on {later}, but a step can only need earlier steps ({allowed})")
            if tools is not None and step.tool is not None and step.tool not in tools:
                known = ", ".join(sorted(tools)) or "none"
                problems.append(f"step {number} names tool {step.tool!r}, which does not exist ({known}; or null)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class PlanUpdate(pydantic.BaseModel):
    """The arguments of ``update_plan``."""

    model_config = pydantic.ConfigDict(extra="forbid", defer_build=True)  # built on first use: import stays cheap

    step: int = pydantic.Field(description="the step's number")
    status: Literal["done", "failed"] = pydantic.Field(
        description="done: its result is in; failed: it cannot be done as planned, or the plan is wrong"
    )
    note: str = pydantic.Field(default="", description="what was found, or why the step failed")


@functools.cache
def plan_spec() -> dict[str, Any]:
    """The ``submit_plan`` tool: its parameters are the `Plan` schema (one dict, shared: do not change it)."""
    return {
        "name": PLAN_TOOL,
        "description": "Submit the plan for the task, before acting.",
        "parameters": _strip_titles(Plan.model_json_schema()),
    }


@functools.cache
def progress_spec() -> dict[str, Any]:
    """The ``update_plan`` tool (one dict, shared: do not change it)."""
    return {
        "name": PROGRESS_TOOL,
        "description": (
            "Record progress on your plan: mark a step done once its result is in, or failed if it cannot be "
            "done as planned (a new plan is then made). May be called with other tools."
        ),
        "parameters": _strip_titles(PlanUpdate.model_json_schema()),
    }


class PlanningFailed(RunEnds):
    """Planning cannot go on: the plans kept being invalid, or the plan failed too often.

    Attributes:
        kind: the run's `error_type` (`ModelError` or `PlanFailed`).
    """


@functools.cache
def _templates() -> dict[str, string.Template]:
    """The `## name` sections of prompts/planning.md, as templates."""
    text = importlib.resources.files("keel").joinpath("prompts", "planning.md").read_text("utf-8")
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: string.Template("\n".join(lines).strip("\n")) for name, lines in sections.items()}


def _problems(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"field '{loc}': {message}" if loc else message)
    return "; ".join(parts)


@dataclass(slots=True)
class _Step:
    status: StepStatus = "pending"
    note: str = ""


class Planner(Participant):
    """The explicit planner of one run: the current plan, its progress, and when to plan again.

    It joins the loop as a `Participant`: `before_turn` plans while `wanted` says a planning step is
    due (`request` gives the planning request, `answer` takes the model's reply); `context` and `offer`
    add the plan to each action request; `progress` applies ``update_plan`` calls; `observe` sees each
    tool result. Its state follows only
    from what the loop gives it (journaled model replies and tool results), so a replayed run rebuilds
    the same plan without asking again.

    Args:
        agent: the agent (its tools, `output_retries` and `max_replans`).
        event: called as ``event(kind, **data)`` for every plan event.
    """

    def __init__(self, agent: AgentSpec[object, object], event: Callable[..., None]) -> None:
        self.event = event
        self.tools = {t.name: t.description for t in agent.tools}
        self.retries = agent.output_retries
        self.max_replans: int = agent.max_replans
        self.plan: Plan | None = None
        self.steps: list[_Step] = []
        self.version = 0
        self.wanted = True
        self.reason = ""
        self.attempts: list[Message] = []  # this planning round's rejected replies and what was wrong
        self.rejections = 0
        self.spec = plan_spec()
        self._shown: UserMessage | None = None
        self._offered: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None

    # -- planning requests

    async def before_turn(self, run: RunView) -> None:
        """Planning steps: ask for a plan until one validates (or planning fails); no tool runs meanwhile.

        Raises:
            PlanningFailed: planning cannot go on; the run ends with its kind.
        """
        while self.wanted:
            messages = self.request(run.messages)
            response = await run.request(messages, [self.spec], "planning")  # budgets and pauses apply
            self.answer(response.message)

    def request(self, history: Sequence[Message]) -> list[Message]:
        """The messages of the next planning request: the conversation so far, then what to do.

        Raises:
            PlanningFailed: the plan has already been made again `max_replans` times.
        """
        t = _templates()
        if self.plan is None:
            tools = "\n".join(f"- {name}: {desc}" for name, desc in self.tools.items()) or t["no_tools"].substitute()
            ask = t["request"].substitute(tools=tools)
        else:
            if self.version > self.max_replans:
                raise PlanningFailed(
                    f"the plan failed after being made {self.version} times (max_replans={self.max_replans}); "
                    f"last failure: {self.reason}. Raise max_replans, or give the agent tools that can do the task",
                    "PlanFailed",
                )
            ask = t["replan"].substitute(reason=self.reason, plan=self._render_steps())
        return [*history, UserMessage(ask), *self.attempts]

    def answer(self, message: AssistantMessage) -> bool:
        """Take the model's reply to a planning request; return whether it gave a valid plan.

        A valid plan becomes the current one. An invalid reply is kept, with what was wrong, for the
        next planning request.

        Raises:
            PlanningFailed: the replies were invalid more than `output_retries` times in a row.
        """
        plan, problems = self._parse(message)
        if plan is not None:
            replanned = self.plan is not None
            self.plan, self.steps = plan, [_Step() for _ in plan.steps]
            self.version += 1
            self.wanted, self.attempts, self.rejections, self._shown = False, [], 0, None
            data = {"version": self.version, "plan": plan.model_dump(mode="json")}
            if replanned:
                self.event("plan_updated", **data, reason=self.reason)
            else:
                self.event("plan_created", **data)
            return True
        self.rejections += 1
        self.event("plan_rejected", problems=problems, attempt=self.rejections)
        if self.rejections > self.retries:
            raise PlanningFailed(
                f"the model's plan was invalid {self.rejections} times in a row (last: {problems}); nothing "
                "was executed. Use a stronger model, simplify the task or its tools, or raise output_retries",
                "ModelError",
            )
        feedback = _templates()["rejected"].substitute(problems=problems)
        self.attempts.append(message)
        if message.tool_calls:
            self.attempts.extend(
                ToolMessage(c.id, c.name, feedback, is_error=True, rejected=True) for c in message.tool_calls
            )
        else:
            self.attempts.append(UserMessage(feedback))
        return False

    def _parse(self, message: AssistantMessage) -> tuple[Plan | None, str]:
        calls = message.tool_calls
        if len(calls) > 1 or (calls and calls[0].name != PLAN_TOOL):
            names = ", ".join(c.name for c in calls)
            return None, f"only submit_plan may be called while planning, alone (the reply called {names})"
        context = {"tools": set(self.tools)}
        try:
            if calls:
                return Plan.model_validate(calls[0].arguments, context=context), ""
            text = (message.content or "").strip()
            if not text.startswith("{"):
                return None, "the reply was text, not a plan; call submit_plan with the plan"
            return Plan.model_validate_json(text, context=context), ""
        except pydantic.ValidationError as exc:
            return None, _problems(exc)

    # -- acting on the plan

    def context(self, history: Sequence[Message]) -> list[Message]:
        """The messages of an action request: the conversation, then the current plan and its progress."""
        if self._shown is None:
            self._shown = UserMessage(self._render_current())
        return [*history, self._shown]

    def offer(self, offered: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The tools of an action request: the ones offered, and ``update_plan``."""
        if self._offered is None or self._offered[0] is not offered:  # same list, same object: token counts cached
            self._offered = (offered, [*offered, progress_spec()])
        return self._offered[1]

    def progress(self, calls: Sequence[ToolCall]) -> list[ToolMessage]:
        """Apply ``update_plan`` calls in order; return what each one did, as its tool result."""
        return [self._update(call) for call in calls]

    def _update(self, call: ToolCall) -> ToolMessage:
        assert self.plan is not None
        try:
            update = PlanUpdate.model_validate(call.arguments)
        except pydantic.ValidationError as exc:
            return ToolMessage(call.id, call.name, f"not recorded: {_problems(exc)}", is_error=True, rejected=True)
        count = len(self.steps)
        if not 1 <= update.step <= count:
            problem = f"not recorded: the plan has steps 1 to {count}, not {update.step}"
            return ToolMessage(call.id, call.name, problem, is_error=True, rejected=True)
        step = self.steps[update.step - 1]
        if update.status == "done":
            if step.status != "pending":
                return ToolMessage(call.id, call.name, f"step {update.step} is already {step.status}")
            waiting = [d for d in self.plan.steps[update.step - 1].depends_on if self.steps[d - 1].status != "done"]
            if waiting:
                problem = f"not recorded: step {update.step} needs step(s) {waiting} done first"
                return ToolMessage(call.id, call.name, problem, is_error=True, rejected=True)
            step.status, step.note, self._shown = "done", update.note, None
            self.event("plan_step_done", version=self.version, plan_step=update.step, note=update.note)
            following = self._next()
            told = f"step {update.step} marked done." + (f" Next: step {following}." if following else "")
            return ToolMessage(call.id, call.name, told)
        self._fail(update.step, f"step {update.step} failed: {update.note or 'no reason given'}", update.note)
        return ToolMessage(call.id, call.name, f"step {update.step} marked failed; a new plan will be made next")

    def observe(self, result: ToolMessage) -> None:
        """See a tool's result: one that ran and returned an error fails its step, and the plan is made again.

        The failed step is the first pending one that names the tool, else the next one. A call refused
        before it ran (invalid arguments, a policy, a person) fails nothing: the model sees why and can
        correct the call; nor does a call made once every step is done or failed.
        """
        if not result.is_error or result.rejected or self.plan is None or self.wanted:
            return
        pending = [n for n, s in enumerate(self.steps, 1) if s.status == "pending"]
        if not pending:  # the plan is carried out; a call beyond it fails no step of it
            return
        number = next((n for n in pending if self.plan.steps[n - 1].tool == result.name), None)
        number = number or self._next() or pending[0]
        self._fail(number, f"step {number} failed: {result.name} returned an error: {result.content[:300]}", "")

    def _fail(self, number: int, reason: str, note: str) -> None:
        self.steps[number - 1] = _Step("failed", note or reason)
        self.wanted, self.reason, self._shown = True, reason, None
        self.event("plan_step_failed", version=self.version, plan_step=number, reason=reason)

    def _next(self) -> int | None:
        """The first pending step whose needed steps are done."""
        assert self.plan is not None
        for number, (step, state) in enumerate(zip(self.plan.steps, self.steps, strict=True), 1):
            if state.status == "pending" and all(self.steps[d - 1].status == "done" for d in step.depends_on):
                return number
        return None

    # -- rendering

    def _render_steps(self) -> str:
        assert self.plan is not None
        lines = []
        for number, (step, state) in enumerate(zip(self.plan.steps, self.steps, strict=True), 1):
            extras = [f"tool: {step.tool}"] if step.tool else []
            if step.depends_on:
                extras.append("after " + ", ".join(str(d) for d in step.depends_on))
            line = f"[{state.status}] {number}. {step.action}" + (f" ({'; '.join(extras)})" if extras else "")
            lines.append(line + (f" - {state.note}" if state.note else ""))
        return "\n".join(lines)

    def _render_current(self) -> str:
        assert self.plan is not None
        t = _templates()
        following = self._next()
        if following is None:
            next_text = t["finished"].substitute()
        else:
            next_text = t["next"].substitute(number=following, action=self.plan.steps[following - 1].action)
        return t["current"].substitute(
            version=self.version,
            goal=self.plan.goal,
            steps=self._render_steps(),
            criteria="; ".join(self.plan.success_criteria),
            next=next_text,
        )

    def snapshot(self) -> dict[str, Any] | None:
        """The current plan with each step's status and note, JSON-ready (None before the first plan)."""
        if self.plan is None:
            return None
        data = self.plan.model_dump(mode="json")
        for entry, state in zip(data["steps"], self.steps, strict=True):
            entry.update(status=state.status, note=state.note)
        return {"version": self.version, **data}
