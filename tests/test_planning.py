"""Explicit planning, driven by the scripted test double: plans made, followed, re-made, rejected."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pydantic
import pytest

from keel import Agent, ConfigError, Plan, RunEvent, Runtime, Tool, ToolCall, ToolError, tool
from keel.messages import AssistantMessage, Message, ToolMessage, UserMessage
from keel.models import ScriptedModel
from keel.planning import PLAN_TOOL, PROGRESS_TOOL

MEMORY = Runtime.in_memory()


def order_tools(fail_first: int = 0) -> tuple[list[Tool], list[str]]:
    """`lookup_order` (raising ToolError on its first `fail_first` calls) and `refund_order`; the log of runs."""
    ran: list[str] = []

    @tool
    def lookup_order(order_id: str) -> str:
        """Look up an order.

        Args:
            order_id: the order's id.
        """
        ran.append(f"lookup {order_id}")
        if len([r for r in ran if r.startswith("lookup")]) <= fail_first:
            raise ToolError(f"order {order_id} does not exist; check the id")
        return f"order {order_id}: shipped, 40.00"

    @tool(requires_approval=True)
    def refund_order(order_id: str, amount: str) -> str:
        """Refund an order.

        Args:
            order_id: the order's id.
            amount: the amount.
        """
        ran.append(f"refund {order_id} {amount}")
        return f"refunded {amount}"

    return [lookup_order, refund_order], ran


PLAN: dict[str, Any] = {
    "goal": "tell the customer where order A-1 is",
    "steps": [
        {"action": "look up order A-1", "tool": "lookup_order"},
        {"action": "tell the customer its status", "depends_on": [1]},
    ],
    "blockers": [],
    "success_criteria": ["the customer knows the order's status"],
}


def plan_call(plan: dict[str, Any] = PLAN) -> ToolCall:
    return ToolCall(PLAN_TOOL, plan)


def progress(step: int, status: str = "done", note: str = "") -> ToolCall:
    return ToolCall(PROGRESS_TOOL, {"step": step, "status": status, "note": note})


def recorder() -> tuple[list[RunEvent], Any]:
    events: list[RunEvent] = []
    return events, events.append


def last_text(messages: Sequence[Message]) -> str:
    """The text of the last message when it is the loop's (the planning ask, or the current plan)."""
    last = messages[-1]
    return last.content if isinstance(last, UserMessage) else ""


async def test_a_plan_is_made_followed_and_marked_done() -> None:
    tools, ran = order_tools()
    seen: list[tuple[list[str], str]] = []  # (tools offered, the last message) of each request
    script: list[Any] = [
        plan_call(),
        ToolCall("lookup_order", {"order_id": "A-1"}),
        [progress(1, note="shipped"), progress(2)],
        "Order A-1 has shipped.",
    ]

    def answer(messages: Sequence[Message], offered: Sequence[dict[str, Any]]) -> Any:
        seen.append(([t["name"] for t in offered], last_text(messages)))
        return script[len(seen) - 1]

    events, on_event = recorder()
    agent = Agent("support", ScriptedModel(answer), tools=tools, planning="explicit")
    result = await agent.run("Where is order A-1?", runtime=MEMORY, on_event=on_event)

    assert (result.status, result.output, result.steps) == ("done", "Order A-1 has shipped.", 4)
    assert ran == ["lookup A-1"]
    # the planning request offers only submit_plan, lists the tools, and comes before any tool
    assert seen[0][0] == [PLAN_TOOL]
    assert "submit_plan" in seen[0][1] and "- lookup_order: Look up an order." in seen[0][1]
    # each action request offers update_plan and ends with the current plan and its progress
    assert seen[1][0] == ["lookup_order", "refund_order", "give_up", PROGRESS_TOOL]
    assert "[pending] 1. look up order A-1 (tool: lookup_order)" in seen[1][1]
    assert "Next: step 1 (look up order A-1)." in seen[1][1]
    assert "[done] 1. look up order A-1 (tool: lookup_order) - shipped" in seen[3][1]
    assert "[done] 2. tell the customer its status (after 1)" in seen[3][1]
    assert "Every step is done" in seen[3][1]

    kinds = [e.kind for e in events]
    assert kinds.index("plan_created") < kinds.index("tool_call")
    done = [e.data["plan_step"] for e in events if e.kind == "plan_step_done"]
    assert done == [1, 2]
    created = next(e for e in events if e.kind == "plan_created")
    assert created.data["version"] == 1 and Plan.model_validate(created.data["plan"]).goal == PLAN["goal"]
    assert result.plan is not None
    assert [s["status"] for s in result.plan["steps"]] == ["done", "done"]
    assert result.plan["steps"][0]["note"] == "shipped"
    # update_plan calls are answered in the conversation, in call order
    answers = [m for m in result.messages if isinstance(m, ToolMessage) and m.name == PROGRESS_TOOL]
    assert [m.content for m in answers] == ["step 1 marked done. Next: step 2.", "step 2 marked done."]


async def test_a_failing_step_makes_the_plan_again() -> None:
    tools, ran = order_tools(fail_first=1)
    requests: list[tuple[list[str], str]] = []
    new_plan = {**PLAN, "steps": [{"action": "look up the order as A-01", "tool": "lookup_order"}]}
    script: list[Any] = [
        plan_call(),
        ToolCall("lookup_order", {"order_id": "A-1"}),  # raises ToolError: step 1 fails
        plan_call(new_plan),
        ToolCall("lookup_order", {"order_id": "A-01"}),
        progress(1),
        "Order A-1 has shipped.",
    ]

    def answer(messages: Sequence[Message], offered: Sequence[dict[str, Any]]) -> Any:
        requests.append(([t["name"] for t in offered], last_text(messages)))
        return script[len(requests) - 1]

    events, on_event = recorder()
    agent = Agent("support", ScriptedModel(answer), tools=tools, planning="explicit")
    result = await agent.run("Where is order A-1?", runtime=MEMORY, on_event=on_event)

    assert (result.status, result.output) == ("done", "Order A-1 has shipped.")
    assert ran == ["lookup A-1", "lookup A-01"]
    failed = [e for e in events if e.kind == "plan_step_failed"]
    assert [e.data["plan_step"] for e in failed] == [1]
    assert "lookup_order returned an error: order A-1 does not exist" in failed[0].data["reason"]
    # the re-plan request: only submit_plan, the failure named, the old plan with its statuses
    assert requests[2][0] == [PLAN_TOOL]
    assert "no longer holds: step 1 failed: lookup_order returned an error" in requests[2][1]
    assert "[failed] 1. look up order A-1" in requests[2][1]
    updated = [e for e in events if e.kind == "plan_updated"]
    assert len(updated) == 1 and updated[0].data["version"] == 2
    assert updated[0].data["plan"]["steps"][0]["action"] == "look up the order as A-01"
    assert "Your plan (version 2)" in requests[3][1]
    assert result.plan is not None and result.plan["version"] == 2


async def test_the_model_can_report_a_failed_step_and_get_a_new_plan() -> None:
    tools, ran = order_tools()
    script: list[Any] = [
        plan_call(),
        [ToolCall("lookup_order", {"order_id": "A-1"})],
        progress(1, "failed", "the order was split in two; both parts must be looked up"),
        plan_call({**PLAN, "steps": [{"action": "look up part A-1b", "tool": "lookup_order"}]}),
        "Both parts have shipped.",
    ]
    events, on_event = recorder()
    agent = Agent("support", ScriptedModel(script), tools=tools, planning="explicit")
    result = await agent.run("Where is order A-1?", runtime=MEMORY, on_event=on_event)
    assert result.status == "done"
    failed = next(e for e in events if e.kind == "plan_step_failed")
    assert failed.data["reason"] == "step 1 failed: the order was split in two; both parts must be looked up"
    assert [e.kind for e in events].count("plan_updated") == 1
    answered = [m for m in result.messages if isinstance(m, ToolMessage) and m.name == PROGRESS_TOOL]
    assert answered[0].content == "step 1 marked failed; a new plan will be made next"
    assert result.plan is not None and result.plan["steps"][0]["action"] == "look up part A-1b"


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({**PLAN, "success_criteria": []}, "field 'success_criteria': List should have at least 1 item"),
        ({k: v for k, v in PLAN.items() if k != "goal"}, "field 'goal': Field required"),
        (
            {**PLAN, "steps": [{"action": "answer", "depends_on": [2]}, {"action": "look up"}]},
            "step 1 depends on [2], but a step can only need earlier steps (none: it is the first step)",
        ),
        (
            {**PLAN, "steps": [{"action": "refund", "tool": "refund_everything"}]},
            "step 1 names tool 'refund_everything', which does not exist (lookup_order, refund_order; or null)",
        ),
        ({**PLAN, "surprise": 1}, "field 'surprise': Extra inputs are not permitted"),
    ],
    ids=["no-criteria", "no-goal", "forward-dependency", "unknown-tool", "extra-field"],
)
async def test_an_invalid_plan_is_re_asked_and_never_executed(bad: dict[str, Any], problem: str) -> None:
    tools, ran = order_tools()
    ran_before_each_request: list[int] = []
    script: list[Any] = [plan_call(bad), plan_call(), ToolCall("lookup_order", {"order_id": "A-1"}), "Shipped."]
    conversations: list[list[Message]] = []

    def answer(messages: Sequence[Message], offered: Sequence[dict[str, Any]]) -> Any:
        ran_before_each_request.append(len(ran))
        conversations.append(list(messages))
        return script[len(conversations) - 1]

    events, on_event = recorder()
    agent = Agent("support", ScriptedModel(answer), tools=tools, planning="explicit")
    result = await agent.run("Where is order A-1?", runtime=MEMORY, on_event=on_event)
    assert result.status == "done"
    assert ran_before_each_request[:3] == [0, 0, 0]  # no tool ran until a valid plan was made
    rejected = [e for e in events if e.kind == "plan_rejected"]
    assert len(rejected) == 1 and problem in rejected[0].data["problems"]
    # the second planning request carries the rejected plan and what was wrong with it
    sent_back = conversations[1][-1]
    assert isinstance(sent_back, ToolMessage) and sent_back.is_error and sent_back.rejected
    assert problem in sent_back.content and "Call submit_plan again" in sent_back.content
    assert isinstance(conversations[1][-2], AssistantMessage)
    assert [e.kind for e in events].count("plan_created") == 1


async def test_plans_invalid_beyond_the_retries_fail_the_run_with_nothing_run() -> None:
    tools, ran = order_tools()
    script = [
        plan_call({"goal": "x"}),
        "I will just look it up.",  # text that is not a plan
        [plan_call(), ToolCall("lookup_order", {"order_id": "A-1"})],  # a tool alongside the plan
    ]
    events, on_event = recorder()
    agent = Agent("support", ScriptedModel(script), tools=tools, planning="explicit", output_retries=2)
    result = await agent.run("Where is order A-1?", runtime=MEMORY, on_event=on_event)
    assert (result.status, result.error_type, ran) == ("failed", "ModelError", [])
    assert result.error is not None and "plan was invalid 3 times in a row" in result.error
    assert "raise output_retries" in result.error
    problems = [e.data["problems"] for e in events if e.kind == "plan_rejected"]
    assert "field 'steps': Field required" in problems[0]
    assert problems[1] == "the reply was text, not a plan; call submit_plan with the plan"
    assert problems[2] == (
        "only submit_plan may be called while planning, alone (the reply called submit_plan, lookup_order)"
    )
    assert "tool_call" not in [e.kind for e in events]
    assert result.plan is None


async def test_a_plan_given_as_json_text_is_accepted() -> None:
    tools, _ = order_tools()
    import json

    model = ScriptedModel([json.dumps(PLAN), "Shipped."])
    result = await Agent("support", model, tools=tools, planning="explicit").run("Where?", runtime=MEMORY)
    assert result.status == "done" and result.plan is not None and result.plan["goal"] == PLAN["goal"]


async def test_the_re_plan_bound_gives_a_clear_failure() -> None:
    tools, ran = order_tools(fail_first=99)
    script: list[Any] = []
    for n in range(3):
        script += [plan_call(), ToolCall("lookup_order", {"order_id": f"A-{n}"})]
    agent = Agent("support", ScriptedModel(script), tools=tools, planning="explicit", max_replans=1)
    result = await agent.run("Where is order A-1?", runtime=MEMORY)
    assert (result.status, result.error_type) == ("failed", "PlanFailed")
    assert result.error is not None
    assert "the plan failed after being made 2 times (max_replans=1)" in result.error
    assert "last failure: step 1 failed: lookup_order returned an error" in result.error
    assert "Raise max_replans" in result.error
    assert ran == ["lookup A-0", "lookup A-1"]  # one lookup per plan; no third plan was asked for
    assert result.steps == 4
    assert result.plan is not None and result.plan["steps"][0]["status"] == "failed"


async def test_bad_progress_reports_are_refused_and_change_nothing() -> None:
    tools, _ = order_tools()
    script: list[Any] = [
        plan_call(),
        [progress(7), progress(2), ToolCall(PROGRESS_TOOL, {"step": 1, "status": "finished"})],
        "done",
    ]
    events, on_event = recorder()
    agent = Agent("support", ScriptedModel(script), tools=tools, planning="explicit")
    result = await agent.run("Where is order A-1?", runtime=MEMORY, on_event=on_event)
    answers = [m for m in result.messages if isinstance(m, ToolMessage) and m.name == PROGRESS_TOOL]
    assert [m.content for m in answers] == [
        "not recorded: the plan has steps 1 to 2, not 7",
        "not recorded: step 2 needs step(s) [1] done first",
        "not recorded: field 'status': Input should be 'done' or 'failed'",
    ]
    assert all(m.is_error and m.rejected for m in answers)
    assert "plan_step_done" not in [e.kind for e in events]
    assert result.plan is not None and [s["status"] for s in result.plan["steps"]] == ["pending", "pending"]


async def test_progress_and_a_structured_final_result_in_one_reply() -> None:
    class Answer(pydantic.BaseModel):
        status: str

    tools, _ = order_tools()
    script: list[Any] = [
        plan_call(),
        ToolCall("lookup_order", {"order_id": "A-1"}),
        [progress(1), progress(2), ToolCall("final_result", {"status": "shipped"})],
    ]
    agent = Agent("support", ScriptedModel(script), tools=tools, planning="explicit", output_type=Answer)
    result = await agent.run("Where is order A-1?", runtime=MEMORY)
    assert (result.status, result.output) == ("done", Answer(status="shipped"))
    assert result.plan is not None and [s["status"] for s in result.plan["steps"]] == ["done", "done"]


async def test_a_refused_call_fails_no_step() -> None:
    tools, ran = order_tools()
    script: list[Any] = [plan_call(), ToolCall("lookup_order", {"order": "A-1"}), "Shipped."]
    events, on_event = recorder()
    agent = Agent("support", ScriptedModel(script), tools=tools, planning="explicit")
    result = await agent.run("Where is order A-1?", runtime=MEMORY, on_event=on_event)
    assert result.status == "done" and ran == []
    assert "plan_step_failed" not in [e.kind for e in events]  # invalid arguments: re-asked, not a failed step


async def test_implicit_planning_keeps_the_step_by_step_loop() -> None:
    tools, ran = order_tools()
    offered: list[list[str]] = []

    def answer(messages: Sequence[Message], tools_offered: Sequence[dict[str, Any]]) -> Any:
        offered.append([t["name"] for t in tools_offered])
        return [progress(1), ToolCall("lookup_order", {"order_id": "A-1"})] if len(offered) == 1 else "Shipped."

    events, on_event = recorder()
    agent = Agent("support", ScriptedModel(answer), tools=tools)
    assert agent.planning == "implicit"
    result = await agent.run("Where is order A-1?", runtime=MEMORY, on_event=on_event)
    assert offered[0] == ["lookup_order", "refund_order", "give_up"]
    assert not [e for e in events if e.kind.startswith("plan_")]
    assert result.plan is None
    # update_plan is no tool here: the turn is rejected as before, and nothing ran
    first = [m for m in result.messages if isinstance(m, ToolMessage)][0]
    assert first.content.startswith("unknown tool 'update_plan'")
    assert ran == []


def test_bad_planning_config_names_the_fix() -> None:
    model = ScriptedModel(["x"])
    with pytest.raises(ConfigError, match=r"planning must be 'implicit' .* or 'explicit' .*got 'bogus'"):
        Agent("a", model, planning="bogus")
    with pytest.raises(ConfigError, match="max_replans must be 0 or more, got -1"):
        Agent("a", model, planning="explicit", max_replans=-1)

    @tool
    def update_plan(step: int) -> int:
        """A tool that takes a name planning needs."""
        return step

    with pytest.raises(ConfigError, match="tool name 'update_plan' is reserved by keel"):
        Agent("a", model, tools=[update_plan])


def test_plan_schema_validates_tool_hints_only_with_context() -> None:
    plan = {**PLAN, "steps": [{"action": "x", "tool": "anything"}, {"action": "y", "tool": ""}]}
    parsed = Plan.model_validate(plan)
    assert parsed.steps[0].tool == "anything" and parsed.steps[1].tool is None
    with pytest.raises(pydantic.ValidationError, match="names tool 'anything', which does not exist"):
        Plan.model_validate(plan, context={"tools": {"lookup_order"}})


async def test_a_tool_error_once_every_step_is_done_fails_no_step() -> None:
    tools, ran = order_tools()

    @tool
    def check_stock(item: str) -> str:
        """Check an item's stock.

        Args:
            item: the item.
        """
        raise ToolError(f"{item}: the stock service is down")

    one_step = {**PLAN, "steps": [{"action": "look up order A-1", "tool": "lookup_order"}]}
    script: list[Any] = [
        plan_call(one_step),
        [progress(1, note="about to"), ToolCall("lookup_order", {"order_id": "A-1"})],
        ToolCall("check_stock", {"item": "mug"}),
        "Order A-1 has shipped.",
    ]
    events, on_event = recorder()
    agent = Agent("support", ScriptedModel(script), tools=[*tools, check_stock], planning="explicit")
    result = await agent.run("Where is order A-1?", runtime=MEMORY, on_event=on_event)
    assert (result.status, result.steps) == ("done", 4)
    assert ran == ["lookup A-1"]
    kinds = [e.kind for e in events]
    assert "plan_step_failed" not in kinds and "plan_updated" not in kinds
    assert result.plan is not None and result.plan["steps"][0]["status"] == "done"


async def test_the_cli_live_view_shows_the_plan() -> None:
    import io

    from rich.console import Console

    from keel.cli._common import LiveView

    tools, _ = order_tools(fail_first=1)
    script: list[Any] = [
        plan_call({"goal": "x"}),
        plan_call(),
        ToolCall("lookup_order", {"order_id": "A-1"}),
        plan_call(),
        ToolCall("lookup_order", {"order_id": "A-01"}),
        progress(1, note="shipped"),
        "Shipped.",
    ]
    buffer = io.StringIO()
    view = LiveView(Console(file=buffer, width=200, color_system=None))
    agent = Agent("support", ScriptedModel(script), tools=tools, planning="explicit")
    result = await agent.run("Where is order A-1?", runtime=MEMORY, on_event=view)
    assert result.status == "done"
    text = buffer.getvalue()
    assert "plan rejected field 'steps': Field required; field 'success_criteria': Field required (attempt 1)" in text
    assert "plan v1: tell the customer where order A-1 is\n    1. look up order A-1 (lookup_order)\n" in text
    assert "✗ plan step 1 step 1 failed: lookup_order returned an error: order A-1 does not exist" in text
    assert "plan v2 (after: step 1 failed: lookup_order returned an error" in text
    assert "✓ plan step 1 shipped" in text


async def test_planning_requests_count_as_steps_and_policies_see_them() -> None:
    from keel import Decision, Policy, PolicyContext

    tools, ran = order_tools()
    model = ScriptedModel([plan_call({"goal": "x"}), plan_call()])
    agent = Agent("support", model, tools=tools, planning="explicit", max_steps=1)
    result = await agent.run("Where is order A-1?", runtime=MEMORY)
    assert (result.status, result.error_type, result.steps, ran) == ("failed", "BudgetExceeded", 1, [])
    assert result.error == "the run reached max_steps=1 while planning; raise max_steps"

    class Spent(Policy):
        name = "budget"

        async def before_model(self, ctx: PolicyContext) -> Decision:
            return Decision.stop(f"budget spent before request {ctx.step}")

    silent = ScriptedModel([])
    stopped = Agent("support", silent, tools=tools, planning="explicit", policies=[Spent()])
    result = await stopped.run("Where is order A-1?", runtime=MEMORY)
    assert (result.status, result.error_type) == ("failed", "PolicyStop")
    assert result.error == "stopped by budget: budget spent before request 1"
    assert silent.calls == 0


async def test_token_counts_stay_exact_with_a_trailing_plan_message() -> None:
    from keel.memory.short_term import ShortTermMemory
    from keel.messages import SystemMessage

    model = ScriptedModel(["x"])
    kept = ShortTermMemory()
    history: list[Message] = [SystemMessage("You help."), UserMessage("Where is order A-1?")]
    for turn in range(4):
        context = [*history, UserMessage(f"Your plan (version 1), turn {turn}: " + "step " * turn)]
        window = await kept.fit(context, model, [])
        fresh = await ShortTermMemory().fit(context, model, [])
        assert window.tokens == fresh.tokens  # the cache kept the history, recounted only what changed
        history += [
            AssistantMessage(None, [ToolCall("lookup_order", {"order_id": f"A-{turn}"}, f"c{turn}")]),
            ToolMessage(f"c{turn}", "lookup_order", "shipped " * (turn + 1)),
        ]
    # a different conversation is counted from scratch
    other = [SystemMessage("Other."), UserMessage("Other task, much longer " * 5)]
    assert (await kept.fit(other, model, [])).tokens == (await ShortTermMemory().fit(other, model, [])).tokens
