"""The loop's logic, driven by the scripted test double (no real model)."""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest

from keel import Agent, Decision, Policy, PolicyContext, RunEvent, Runtime, Tool, ToolCall, tool
from keel.messages import ToolMessage, UserMessage
from keel.models import ScriptedModel

MEMORY = Runtime.in_memory()


def counting_add() -> tuple[Tool, list[tuple[int, int]]]:
    calls: list[tuple[int, int]] = []

    @tool
    async def add(a: int, b: int) -> int:
        """Add two integers.

        Args:
            a: the first number.
            b: the second number.
        """
        calls.append((a, b))
        return a + b

    return add, calls


async def test_tool_round_trip_then_final_text() -> None:
    add, calls = counting_add()
    model = ScriptedModel([ToolCall("add", {"a": 1, "b": 2}), "The sum is 3."])
    result = await Agent("calc", model, tools=[add]).run("add 1 and 2", runtime=MEMORY)
    assert (result.status, result.output, result.steps) == ("done", "The sum is 3.", 2)
    assert calls == [(1, 2)]
    tool_msgs = [m for m in result.messages if isinstance(m, ToolMessage)]
    assert [(m.name, m.content, m.is_error) for m in tool_msgs] == [("add", "3", False)]
    assert result.usage.requests == 2 and result.usage.input_tokens > 0


async def test_malformed_arguments_are_re_asked_and_never_executed() -> None:
    add, calls = counting_add()
    model = ScriptedModel(
        [
            ToolCall("add", {"a": "one", "b": 2}),
            ToolCall("add", {"a": 1}),
            ToolCall("add", {"a": 1, "b": 2}),
            "3",
        ]
    )
    events: list[RunEvent] = []
    result = await Agent("calc", model, tools=[add]).run("add", runtime=MEMORY, on_event=events.append)
    assert result.status == "done"
    assert calls == [(1, 2)]  # the two malformed calls executed 0 times
    rejected = [e for e in events if e.kind == "output_rejected"]
    assert len(rejected) == 2
    assert "argument 'a'" in rejected[0].data["problems"][0]
    assert "argument 'b' is required" in rejected[1].data["problems"][0]
    errors = [m for m in result.messages if isinstance(m, ToolMessage) and m.is_error]
    assert len(errors) == 2 and errors[0].content.startswith("add: argument 'a'")


async def test_malformed_output_beyond_retries_fails_with_state_kept() -> None:
    add, calls = counting_add()
    model = ScriptedModel([ToolCall("add", {"a": "x", "b": 1})] * 3)
    result = await Agent("calc", model, tools=[add], output_retries=2).run("add", runtime=MEMORY)
    assert result.status == "failed" and result.error_type == "ModelError"
    assert "malformed 3 times" in (result.error or "") and "argument 'a'" in (result.error or "")
    assert calls == []
    assert model.calls == 3
    assert len(result.messages) == 2 + 3 * 2  # system, task, then each bad answer with its error


async def test_unknown_tool_is_rejected() -> None:
    add, calls = counting_add()
    model = ScriptedModel([ToolCall("multiply", {"a": 1, "b": 2}), "ok"])
    result = await Agent("calc", model, tools=[add]).run("x", runtime=MEMORY)
    assert result.status == "done" and calls == []
    err = next(m for m in result.messages if isinstance(m, ToolMessage))
    assert "unknown tool 'multiply'" in err.content and "add" in err.content


class Answer(pydantic.BaseModel):
    total: int
    note: str


async def test_structured_output_validated_and_re_asked() -> None:
    model = ScriptedModel(
        [
            ToolCall("final_result", {"total": "many", "note": "x"}),
            '{"total": 3}',
            ToolCall("final_result", {"total": 3, "note": "sum"}),
        ]
    )
    result = await Agent("calc", model, output_type=Answer).run("x", runtime=MEMORY)
    assert result.status == "done"
    assert result.output == Answer(total=3, note="sum")
    feedback = [m.content for m in result.messages if isinstance(m, ToolMessage | UserMessage)][1:]
    assert "field 'total'" in feedback[0]
    assert "field 'note'" in feedback[1]


async def test_structured_output_as_json_text() -> None:
    model = ScriptedModel(['{"total": 3, "note": "ok"}'])
    result = await Agent("calc", model, output_type=Answer).run("x", runtime=MEMORY)
    assert result.output == Answer(total=3, note="ok")


async def test_final_result_together_with_a_tool_is_rejected() -> None:
    add, calls = counting_add()
    model = ScriptedModel(
        [
            [ToolCall("add", {"a": 1, "b": 1}), ToolCall("final_result", {"total": 2, "note": ""})],
            '{"total": 2, "note": ""}',
        ]
    )
    result = await Agent("calc", model, tools=[add], output_type=Answer).run("x", runtime=MEMORY)
    assert result.status == "done" and calls == []


async def test_give_up_ends_the_run_with_the_reason() -> None:
    model = ScriptedModel([ToolCall("give_up", {"reason": "no tool can read minds"})])
    result = await Agent("calc", model).run("guess my number", runtime=MEMORY)
    assert (result.status, result.error_type) == ("failed", "GaveUp")
    assert result.output == "no tool can read minds"


async def test_max_steps_stops_the_run() -> None:
    add, calls = counting_add()
    model = ScriptedModel(lambda messages, tools: ToolCall("add", {"a": 1, "b": 1}))
    result = await Agent("calc", model, tools=[add], max_steps=4, policies=[]).run("loop", runtime=MEMORY)
    assert (result.status, result.error_type, result.steps) == ("failed", "BudgetExceeded", 4)
    assert len(calls) == 4
    assert "max_steps=4" in (result.error or "")


async def test_empty_answer_is_re_asked() -> None:
    model = ScriptedModel(["", "fine"])
    result = await Agent("calc", model).run("x", runtime=MEMORY)
    assert result.output == "fine" and model.calls == 2


class Recorder(Policy):
    def __init__(self, name: str, log: list[str], decision: Decision | None = None) -> None:
        self._name, self.log, self.decision = name, log, decision

    @property
    def name(self) -> str:
        return self._name

    async def before_tool(self, ctx: PolicyContext, call: ToolCall, tool: Tool) -> Decision:
        for _ in range(5):  # a slow guardrail: yields to the event loop before deciding
            await asyncio.sleep(0)
        self.log.append(f"{self._name}:{call.name}")
        return self.decision or Decision.allow()


async def test_policies_run_in_order_and_deny_before_the_tool_starts() -> None:
    add, calls = counting_add()
    log: list[str] = []
    policies = [
        Recorder("first", log),
        Recorder("second", log, Decision.deny("amount too high")),
        Recorder("third", log),
    ]
    model = ScriptedModel([ToolCall("add", {"a": 1, "b": 2}), "ok"])
    events: list[RunEvent] = []
    result = await Agent("calc", model, tools=[add], policies=policies).run("x", runtime=MEMORY, on_event=events.append)
    assert log == ["first:add", "second:add"]  # third never asked once second denied
    assert calls == []  # the tool ran 0 times
    denied = next(m for m in result.messages if isinstance(m, ToolMessage))
    assert denied.is_error and "amount too high" in denied.content
    decision = next(e for e in events if e.kind == "policy_decision")
    assert decision.data == {"policy": "second", "action": "deny", "reason": "amount too high", "tool": "add"}


async def test_policy_stop_ends_the_run_before_the_tool() -> None:
    add, calls = counting_add()
    model = ScriptedModel([ToolCall("add", {"a": 1, "b": 2}), "ok"])
    policy = Recorder("guard", [], Decision.stop("budget spent"))
    result = await Agent("calc", model, tools=[add], policies=[policy]).run("x", runtime=MEMORY)
    assert (result.status, result.error_type) == ("failed", "PolicyStop")
    assert "guard" in (result.error or "") and calls == []


async def test_policy_modify_arguments_and_result() -> None:
    add, calls = counting_add()

    class Cap(Policy):
        async def before_tool(self, ctx: PolicyContext, call: ToolCall, tool: Tool) -> Decision:
            return Decision.modify("cap a at 10", arguments={**call.arguments, "a": min(call.arguments["a"], 10)})

        async def after_tool(self, ctx: PolicyContext, call: ToolCall, result: ToolMessage) -> Decision:
            return Decision.modify("redact", content="[redacted]")

    model = ScriptedModel([ToolCall("add", {"a": 99, "b": 1}), "ok"])
    result = await Agent("calc", model, tools=[add], policies=[Cap()]).run("x", runtime=MEMORY)
    assert calls == [(10, 1)]
    assert next(m for m in result.messages if isinstance(m, ToolMessage)).content == "[redacted]"


async def test_before_model_pause_leaves_the_run_waiting() -> None:
    class Hold(Policy):
        async def before_model(self, ctx: PolicyContext) -> Decision:
            return Decision.pause("a person must look first")

    model = ScriptedModel(["never"])
    result = await Agent("calc", model, policies=[Hold()]).run("x", runtime=MEMORY)
    assert result.status == "needs_attention" and model.calls == 0


async def test_events_tell_the_story_in_order() -> None:
    add, _ = counting_add()
    model = ScriptedModel([ToolCall("add", {"a": 1, "b": 2}), "3"])
    kinds: list[str] = []
    await Agent("calc", model, tools=[add]).run("x", runtime=MEMORY, on_event=lambda e: kinds.append(e.kind))
    assert kinds == [
        "run_started",
        "model_request",
        "model_response",
        "tool_call",
        "tool_result",
        "model_request",
        "model_response",
        "run_finished",
    ]


async def test_a_failing_observer_does_not_break_the_run() -> None:
    def broken(event: RunEvent) -> None:
        raise RuntimeError("observer bug")

    result = await Agent("calc", ScriptedModel(["fine"])).run("x", runtime=MEMORY, on_event=broken)
    assert result.status == "done"


async def test_stream_yields_events_until_finished() -> None:
    agent = Agent("calc", ScriptedModel(["fine"]))
    kinds = [e.kind async for e in agent.stream("x", runtime=MEMORY)]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"


def test_run_result_round_trips_through_dict() -> None:
    model = ScriptedModel([ToolCall("final_result", {"total": 3, "note": "n"})])
    result = Agent("calc", model, output_type=Answer).run_sync("x", runtime=MEMORY)
    from keel import RunResult

    again = RunResult.from_dict(result.to_dict(), Answer)
    assert again.to_dict() == result.to_dict()
    assert again.output == Answer(total=3, note="n")


@pytest.mark.parametrize("script", [[ToolCall("add", {"a": 1, "b": 2}), "3"]])
def test_run_sync_inside_an_event_loop_is_a_usage_error(script: list[Any]) -> None:
    from keel import UsageError

    agent = Agent("calc", ScriptedModel(script))

    async def inner() -> None:
        agent.run_sync("x", runtime=MEMORY)

    with pytest.raises(UsageError, match="await agent.run"):
        asyncio.run(inner())


class EndWatcher(Policy):
    """Records how each run ended, as after_run sees it."""

    def __init__(self, fail: bool = False) -> None:
        self.ended: list[tuple[str, str, int]] = []
        self.fail = fail

    async def after_run(self, ctx: PolicyContext, status: str) -> None:
        self.ended.append((ctx.run_id, status, ctx.step))
        if self.fail:
            raise RuntimeError("an observer's bug")


async def test_after_run_sees_each_finished_run_once_and_cannot_change_it() -> None:
    add, _ = counting_add()
    watcher, broken = EndWatcher(), EndWatcher(fail=True)
    model = ScriptedModel([ToolCall("add", {"a": 1, "b": 2}), "3"])
    agent = Agent("calc", model, tools=[add], policies=[broken, watcher])
    done = await agent.run("add", runtime=MEMORY)
    assert done.status == "done" and done.output == "3"  # the raising observer changed nothing
    gave_up = await Agent(
        "calc", ScriptedModel([ToolCall("give_up", {"reason": "no"})]), tools=[add], policies=[watcher]
    ).run("x", runtime=MEMORY)
    assert gave_up.status == "failed"
    assert watcher.ended == [(done.run_id, "done", 2), (gave_up.run_id, "failed", 1)]
    assert broken.ended == [(done.run_id, "done", 2)]


async def test_after_run_is_not_called_while_a_run_waits_for_a_person() -> None:
    from keel.policies.approvals import RequireApproval

    add, calls = counting_add()
    watcher = EndWatcher()
    model = ScriptedModel([ToolCall("add", {"a": 1, "b": 2}), "3"])
    agent = Agent("calc", model, tools=[add], policies=[RequireApproval(["add"]), watcher])
    waiting = await agent.run("add", runtime=MEMORY)
    assert waiting.status == "waiting" and calls == [] and watcher.ended == []
