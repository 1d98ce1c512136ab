"""consult: what each action means at each hook, one test per (hook, action), as `Decision` documents it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from keel import Agent, Decision, Policy, PolicyContext, ToolCall, tool
from keel._loop import run_loop
from keel._runtime import InMemorySteps
from keel._seam import RunResult
from keel.events import RunEvent
from keel.messages import Message, ModelResponse, ToolMessage, UserMessage
from keel.models import ScriptedModel
from keel.policies import Hook
from keel.tools import Tool

ran: list[dict[str, int]] = []


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    ran.append({"a": a, "b": b})
    return a + b


class Says(Policy):
    """Decides `decision` the first time `hook` is consulted, allows otherwise; records what it saw."""

    def __init__(self, hook: Hook, decision: Decision) -> None:
        self.hook, self.decision, self.said = hook, decision, False

    def once(self, hook: Hook) -> Decision:
        if hook != self.hook or self.said:
            return Decision.allow()
        self.said = True
        return self.decision

    async def before_model(self, ctx: PolicyContext) -> Decision:
        return self.once("before_model")

    async def after_model(self, ctx: PolicyContext, response: ModelResponse) -> Decision:
        return self.once("after_model")

    async def before_tool(self, ctx: PolicyContext, call: ToolCall, tool: Tool) -> Decision:
        return self.once("before_tool")

    async def after_tool(self, ctx: PolicyContext, call: ToolCall, result: ToolMessage) -> Decision:
        return self.once("after_tool")


class Later(Policy):
    """A policy after the deciding one: records the calls and results it is asked about."""

    def __init__(self) -> None:
        self.calls: list[ToolCall] = []
        self.results: list[str] = []

    async def before_tool(self, ctx: PolicyContext, call: ToolCall, tool: Tool) -> Decision:
        self.calls.append(call)
        return Decision.allow()

    async def after_tool(self, ctx: PolicyContext, call: ToolCall, result: ToolMessage) -> Decision:
        self.results.append(result.content)
        return Decision.allow()


class Person(InMemorySteps):
    """The step seam with a person who answers every request with `choice`."""

    def __init__(self, choice: dict[str, Any]) -> None:
        super().__init__("run-1")
        self.choice = choice
        self.asked: list[dict[str, Any]] = []

    async def decide(self, kind: str, request: dict[str, Any]) -> dict[str, Any]:
        self.asked.append({"kind": kind, **request})
        if kind == "approval" and self.choice.get("decision") == "approved":
            return {**self.choice, "arguments_hash": request["arguments_hash"]}
        return dict(self.choice)


class Seen:
    """A model that calls `add` once, then answers; remembers each request's messages and tools."""

    def __init__(self, answer: str = "the sum is 3") -> None:
        self.requests: list[tuple[list[Message], list[str]]] = []
        self.answer = answer

    def __call__(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> Any:
        self.requests.append((list(messages), [t["name"] for t in tools]))
        return ToolCall("add", {"a": 1, "b": 2}) if len(self.requests) == 1 else self.answer


async def run(
    hook: Hook, decision: Decision, choice: dict[str, Any] | None = None
) -> tuple[RunResult, Seen, Later, Person, list[RunEvent]]:
    ran.clear()
    seen, later = Seen(), Later()
    agent = Agent("calc", ScriptedModel(seen), tools=[add], policies=[Says(hook, decision), later])
    steps, events = Person(choice or {"decision": "continue"}), list[RunEvent]()
    result = await run_loop(agent, "add 1 and 2", steps, events.append)
    return result, seen, later, steps, events


def tool_results(result: RunResult) -> list[ToolMessage]:
    return [m for m in result.messages if isinstance(m, ToolMessage)]


def notes(result: RunResult) -> list[str]:
    return [m.content for m in result.messages if isinstance(m, UserMessage)][1:]


@pytest.mark.parametrize("hook", ["before_model", "after_model", "before_tool", "after_tool"])
async def test_allow_lets_the_turn_go_on_unchanged_and_is_not_announced(hook: Hook) -> None:
    result, seen, _, _, events = await run(hook, Decision.allow())
    assert (result.status, result.output, ran) == ("done", "the sum is 3", [{"a": 1, "b": 2}])
    assert not [e for e in events if e.kind == "policy_decision"]


# before_model


@pytest.mark.parametrize("decision", [Decision.deny("no"), Decision.stop("no", kind="BudgetExceeded")])
async def test_before_model_deny_and_stop_end_the_run_before_the_request(decision: Decision) -> None:
    result, seen, _, _, events = await run("before_model", decision)
    kind = "BudgetExceeded" if decision.action == "stop" else "PolicyStop"
    assert (result.status, result.error_type, seen.requests) == ("failed", kind, [])
    assert result.error == "stopped by Says: no"
    decided = [e.data for e in events if e.kind == "policy_decision"]
    assert decided == [{"policy": "Says", "action": decision.action, "reason": "no", "tool": None}]


async def test_before_model_modify_narrows_the_tools_and_replaces_the_task() -> None:
    result, seen, _, _, _ = await run("before_model", Decision.modify("redacted", tools=["nothing"], content="[task]"))
    messages, tools = seen.requests[0]
    assert "add" not in tools and isinstance(messages[-1], UserMessage) and messages[-1].content == "[task]"
    # the model called add anyway (rejected: not offered); with none of its tools left the run cannot end done
    assert (result.status, result.error_type, ran) == ("failed", "ToolsWithheld", [])


async def test_before_model_modify_without_tools_or_content_is_only_announced() -> None:
    result, seen, _, _, events = await run("before_model", Decision.modify("looked"))
    assert (result.status, "add" in seen.requests[0][1]) == ("done", True)
    assert [e.data["action"] for e in events if e.kind == "policy_decision"] == ["modify"]


async def test_before_model_pause_asks_a_person_whose_note_reaches_the_model() -> None:
    result, seen, _, person, _ = await run(
        "before_model", Decision.pause("look"), {"decision": "continue", "note": "go"}
    )
    assert [a["kind"] for a in person.asked] == ["pause"] and person.asked[0]["reason"] == "Says: look"
    assert seen.requests[0][0][-1] == UserMessage("A person reviewed the run and says: go")
    assert result.status == "done"


async def test_before_model_pause_a_person_may_end_the_run() -> None:
    result, seen, _, _, _ = await run("before_model", Decision.pause("look"), {"decision": "fail", "note": "no"})
    assert (result.status, result.error_type, seen.requests) == ("failed", "Stopped", [])


# after_model


@pytest.mark.parametrize("decision", [Decision.deny("no"), Decision.stop("no")])
async def test_after_model_deny_and_stop_end_the_run_before_any_of_its_calls(decision: Decision) -> None:
    result, seen, later, _, _ = await run("after_model", decision)
    assert (result.status, result.error_type, ran, later.calls) == ("failed", "PolicyStop", [], [])
    assert len(seen.requests) == 1


async def test_after_model_modify_replaces_the_response_text() -> None:
    class Final(Says):
        async def after_model(self, ctx: PolicyContext, response: ModelResponse) -> Decision:
            return Decision.modify("redact", content="[hidden]") if not response.message.tool_calls else ALLOW

    ran.clear()
    agent = Agent("calc", ScriptedModel(Seen()), tools=[add], policies=[Final("after_model", ALLOW)])
    result = await run_loop(agent, "add", Person({}), lambda e: None)
    assert (result.status, result.output) == ("done", "[hidden]")


async def test_after_model_modify_without_content_is_only_announced() -> None:
    result, _, _, _, events = await run("after_model", Decision.modify("looked"))
    assert (result.status, result.output, ran) == ("done", "the sum is 3", [{"a": 1, "b": 2}])
    assert [e.data["action"] for e in events if e.kind == "policy_decision"] == ["modify"]


async def test_after_model_pause_asks_a_person_whose_note_reaches_the_model() -> None:
    result, seen, _, person, _ = await run(
        "after_model", Decision.pause("look"), {"decision": "continue", "note": "go"}
    )
    assert [a["kind"] for a in person.asked] == ["pause"]
    assert "A person reviewed the run and says: go" in [m.content for m in seen.requests[1][0]]
    assert result.status == "done" and ran == [{"a": 1, "b": 2}]


# before_tool


async def test_before_tool_deny_refuses_the_call_and_asks_no_later_policy() -> None:
    result, _, later, _, events = await run("before_tool", Decision.deny("not today"))
    [refused] = tool_results(result)
    assert (refused.content, refused.is_error, ran, later.calls) == ("denied: not today", True, [], [])
    assert result.status == "done"
    assert [e.data["tool"] for e in events if e.kind == "policy_decision"] == ["add"]


async def test_before_tool_modify_runs_the_call_with_the_new_arguments_which_later_policies_see() -> None:
    result, _, later, _, _ = await run("before_tool", Decision.modify("cap", arguments={"a": 5, "b": 2}))
    assert ran == [{"a": 5, "b": 2}] and later.calls[0].arguments == {"a": 5, "b": 2}
    assert tool_results(result)[0].content == "7"


async def test_before_tool_modify_into_invalid_arguments_refuses_the_call() -> None:
    result, _, later, _, _ = await run("before_tool", Decision.modify("break", arguments={"a": "x"}))
    assert ran == [] and later.calls == []
    assert tool_results(result)[0].content.startswith("denied: Says changed the arguments into invalid ones")


async def test_before_tool_modify_without_arguments_is_only_announced() -> None:
    result, _, _, _, _ = await run("before_tool", Decision.modify("looked"))
    assert ran == [{"a": 1, "b": 2}] and result.status == "done"


async def test_before_tool_pause_asks_for_approval_of_the_exact_call_after_every_policy() -> None:
    result, _, later, person, _ = await run(
        "before_tool", Decision.pause("check", meta={"expires_in": 60}), {"decision": "approved", "by": "ann"}
    )
    [asked] = person.asked
    assert (asked["kind"], asked["tool"], asked["arguments"], asked["expires_in"]) == (
        "approval",
        "add",
        {"a": 1, "b": 2},
        60,
    )
    assert len(later.calls) == 1 and ran == [{"a": 1, "b": 2}] and result.status == "done"


async def test_before_tool_pause_a_rejected_call_does_not_run() -> None:
    result, _, _, _, _ = await run(
        "before_tool", Decision.pause("check"), {"decision": "rejected", "by": "ann", "note": "no"}
    )
    assert ran == [] and tool_results(result)[0].content == "rejected by ann: no"


async def test_before_tool_stop_ends_the_run_without_running_the_call() -> None:
    result, _, later, _, _ = await run("before_tool", Decision.stop("halt", kind="Halted"))
    assert (result.status, result.error_type, ran, later.calls) == ("failed", "Halted", [], [])
    assert tool_results(result)[-1].content == "not run: halt"


# after_tool


async def test_after_tool_deny_withholds_the_result_from_the_model_and_later_policies() -> None:
    result, seen, later, _, _ = await run("after_tool", Decision.deny("secret"))
    [withheld] = tool_results(result)
    assert (withheld.content, withheld.is_error, later.results) == ("withheld: secret", True, ["withheld: secret"])
    assert ran == [{"a": 1, "b": 2}] and result.status == "done"


async def test_after_tool_modify_replaces_the_result_text() -> None:
    result, _, later, _, _ = await run("after_tool", Decision.modify("redact", content="[redacted]"))
    assert tool_results(result)[0].content == "[redacted]" and later.results == ["[redacted]"]


async def test_after_tool_modify_without_content_is_only_announced() -> None:
    result, _, _, _, _ = await run("after_tool", Decision.modify("looked"))
    assert tool_results(result)[0].content == "3"


async def test_after_tool_pause_adds_the_person_s_note_to_the_result() -> None:
    result, _, _, person, _ = await run("after_tool", Decision.pause("look"), {"decision": "continue", "note": "fine"})
    assert [a["kind"] for a in person.asked] == ["pause"]
    assert tool_results(result)[0].content == "3\nA person reviewed the run and says: fine"


async def test_after_tool_stop_ends_the_run_keeping_the_result() -> None:
    result, _, later, _, _ = await run("after_tool", Decision.stop("halt"))
    assert (result.status, result.error_type, later.results) == ("failed", "PolicyStop", [])
    assert tool_results(result)[-1].content == "3"


ALLOW = Decision.allow()
