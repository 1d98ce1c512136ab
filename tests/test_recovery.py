"""Recovery: retries with backoff (fake clock), circuit breakers, fallbacks, escalation, resumable failures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from keel import Agent, ConfigError, ModelError, Runtime, ToolCall, tool
from keel.messages import ModelResponse, UserMessage
from keel.models import ScriptedModel
from keel.models._errors import ModelAPIError
from keel.policies import Decision, Policy, PolicyContext
from keel.policies.approvals import RequireApproval
from keel.recovery import CircuitBreaker, Resilient, RetryPolicy, escalate_to_human, is_transient
from keel.server._events import journal_events
from keel.testing import FakeClock, FaultyModel
from keel.tools import Tool

MEMORY = Runtime.in_memory()


class Failing:
    """A model that raises the given errors in turn (then answers), counting its calls."""

    def __init__(self, errors: list[Exception], name: str = "failing", answer: str = "ok") -> None:
        self.errors, self.name, self.calls = list(errors), name, 0
        self.inner = ScriptedModel([answer] * 50, name=name)
        self.profile = self.inner.profile

    async def request(self, messages: Any, tools: Any, *, max_tokens: int | None = None) -> ModelResponse:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return await self.inner.request(messages, tools, max_tokens=max_tokens)

    async def count_tokens(self, messages: Any, tools: Any) -> int:
        return await self.inner.count_tokens(messages, tools)


def http_error(status: int, retry_after: float | None = None) -> ModelAPIError:
    return ModelAPIError(f"HTTP {status}", status_code=status, retry_after=retry_after, retryable=status >= 429)


def make_runs(n: int) -> list[tuple[list[Any], bool]]:
    """n scripts: a few tool calls, then an answer; every tenth gives up (fails without any fault)."""
    runs = []
    for i in range(n):
        calls: list[Any] = [ToolCall("add", {"a": i, "b": k}) for k in range(i % 4)]
        if i % 10 == 9:
            runs.append(([*calls, ToolCall("give_up", {"reason": "cannot"})], False))
        else:
            runs.append(([*calls, f"answer {i}"], True))
    return runs


async def run_all(rate: float, clock: FakeClock) -> tuple[list[Any], list[tuple[int, int]], list[FaultyModel]]:
    executed: list[tuple[int, int]] = []

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        executed.append((a, b))
        return a + b

    results, models = [], []
    for i, (script, _) in enumerate(make_runs(200)):
        faulty = FaultyModel(ScriptedModel(script), rate=rate, seed=i, retry_after=3.0)
        models.append(faulty)
        model = Resilient(faulty, retry=RetryPolicy(attempts=12), breakers=False, clock=clock, seed=i)
        results.append(await Agent("calc", model, tools=[add]).run("add", runtime=MEMORY))
    return results, executed, models


async def test_thirty_percent_faults_change_nothing_about_the_outcome() -> None:
    clean_clock, clock = FakeClock(), FakeClock()
    clean, clean_calls, _ = await run_all(0.0, clean_clock)
    faulty, calls, models = await run_all(0.3, clock)
    completed = sum(r.status == "done" for r in faulty)
    assert completed == sum(r.status == "done" for r in clean) == 180  # the fault-free rate
    assert [(r.status, r.output) for r in faulty] == [(r.status, r.output) for r in clean]
    assert calls == clean_calls  # no malformed call was executed, and none twice
    injected = [f for m in models for f in m.injected.faults]
    assert 0.25 < len(injected) / (len(injected) + sum(m.injected.passed for m in models)) < 0.35
    assert {"429", "5xx", "timeout", "disconnect", "malformed", "truncated"} <= set(injected)
    assert clean_clock.sleeps == []
    # every 429 waited exactly its Retry-After; every other fault waited a jittered backoff under its ceiling
    assert clock.sleeps.count(3.0) >= injected.count("429")
    assert all(0 <= s <= 30.0 for s in clock.sleeps)


async def test_backoff_grows_exponentially_with_full_jitter_and_retry_after_wins() -> None:
    clock = FakeClock()
    model = Failing([http_error(503), http_error(503), http_error(503), http_error(429, retry_after=7.5)])
    resilient = Resilient(model, retry=RetryPolicy(initial=1, multiplier=2, jitter=False), clock=clock, breakers=False)
    response = await resilient.request([UserMessage("x")], [])
    assert response.message.content == "ok" and model.calls == 5
    assert clock.sleeps == [1.0, 2.0, 4.0, 7.5]
    jittered = FakeClock()
    model = Failing([http_error(500)] * 4)
    await Resilient(model, retry=RetryPolicy(initial=1), clock=jittered, breakers=False, seed=3).request([], [])
    assert all(0 <= s <= 2**k for k, s in enumerate(jittered.sleeps)) and len(set(jittered.sleeps)) == 4


async def test_rejected_requests_are_never_retried_and_fall_back() -> None:
    clock = FakeClock()
    primary = Failing([http_error(400)] * 10, name="primary")
    backup = ScriptedModel(["from the backup"], name="backup")
    resilient = Resilient(primary, [backup], clock=clock, breakers=False)
    response = await resilient.request([UserMessage("x")], [])
    assert (response.message.content, response.model, primary.calls, clock.sleeps) == (
        "from the backup",
        "backup",
        1,
        [],
    )
    assert not is_transient(http_error(400)) and not is_transient(ValueError("bad")) and is_transient(TimeoutError())


async def test_every_model_failing_is_a_model_error_naming_each() -> None:
    resilient = Resilient(
        Failing([http_error(401)] * 3, name="a"), [Failing([http_error(404)] * 3, name="b")], breakers=False
    )
    with pytest.raises(ModelError, match=r"every model failed \(a, b\).*a: HTTP 401.*b: HTTP 404"):
        await resilient.request([UserMessage("x")], [])


async def test_the_circuit_opens_after_repeated_failures_then_half_opens() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=2, reset_after=60, clock=clock)
    assert breaker.state == "closed"
    breaker.failure()
    breaker.failure()
    assert (breaker.state, breaker.allow()) == ("open", False)
    clock.advance(60)
    assert breaker.state == "half_open" and breaker.allow()
    breaker.failure()  # the trial failed: open again
    assert breaker.state == "open"
    clock.advance(60)
    breaker.success()
    assert breaker.state == "closed"
    with pytest.raises(ConfigError, match="threshold"):
        CircuitBreaker(threshold=0)


async def test_an_open_circuit_sends_requests_straight_to_the_fallback() -> None:
    clock = FakeClock()
    primary = Failing([http_error(503)] * 100, name="flaky-provider")
    backup = ScriptedModel(["b"] * 10, name="backup")
    make = lambda: Resilient(  # noqa: E731
        primary, [backup], retry=RetryPolicy(attempts=2), breaker_threshold=2, breaker_reset=600, clock=clock
    )
    for _ in range(2):
        assert (await make().request([UserMessage("x")], [])).model == "backup"
    assert primary.calls == 4  # 2 requests x 2 attempts, then the circuit opened
    resilient = make()
    assert (await resilient.request([UserMessage("x")], [])).model == "backup"
    assert primary.calls == 4 and "circuit open" in resilient.attempts[0].error


async def test_a_fatal_model_error_fails_the_run_with_a_report_and_it_resumes_after_a_fix(tmp_path: Path) -> None:
    rt = Runtime(f"sqlite:///{tmp_path / 'keel.db'}")
    executed: list[int] = []

    @tool(side_effects=True)
    def charge(amount: int) -> str:
        """Charge an amount."""
        executed.append(amount)
        return f"charged {amount}"

    script: list[Any] = [ToolCall("charge", {"amount": 5}), "charged 5"]
    broken = Resilient(Failing([http_error(401)] * 100, name="primary"), breakers=False)

    class BrokenAfterFirst(ScriptedModel):
        async def request(self, messages: Any, tools: Any, *, max_tokens: int | None = None) -> ModelResponse:
            if len(messages) > 2:
                return await broken.request(messages, tools)
            return await super().request(messages, tools, max_tokens=max_tokens)

    failed = await Agent("pay", BrokenAfterFirst(script), tools=[charge]).run("pay 5", runtime=rt)
    assert (failed.status, failed.error_type) == ("failed", "ModelError")
    report = failed.report or {}
    assert (report["failed"], report["step"], report["resumable"]) == ("ModelError", 2, True)
    assert report["last_good"]["last_tool_result"] == {"tool": "charge", "content": "charged 5"}
    assert report["last_good"]["steps_completed"] == 1
    resumed = await rt.resume(Agent("pay", ScriptedModel(script), tools=[charge]), failed.run_id)
    assert (resumed.status, resumed.output, executed) == ("done", "charged 5", [5])  # the charge ran once


async def test_a_tool_falls_back_on_a_crash_or_a_timeout() -> None:
    @tool
    def cached_price(sku: str) -> str:
        """The last known price."""
        return f"{sku}: 10 (cached)"

    @tool(fallback=cached_price)
    def live_price(sku: str) -> str:
        """The live price."""
        raise ConnectionError("pricing service down")

    never = asyncio.Event()

    @tool(fallback=cached_price, timeout=0.01)
    async def slow_price(sku: str) -> str:
        """A price that never comes."""
        await never.wait()
        return "never"

    events: list[Any] = []
    script = [ToolCall("live_price", {"sku": "A"}), ToolCall("slow_price", {"sku": "B"}), "done"]
    agent = Agent("p", ScriptedModel(script), tools=[live_price, slow_price])
    result = await agent.run("price", runtime=MEMORY, on_event=events.append)
    assert [m.content for m in result.messages if m.role == "tool"] == ["A: 10 (cached)", "B: 10 (cached)"]
    fallbacks = [e.data["fallback"] for e in events if e.kind == "tool_result"]
    assert fallbacks[0] == {
        "tool": "cached_price",
        "because": "live_price failed: ConnectionError: pricing service down",
    }
    assert "timed out" in fallbacks[1]["because"]


async def test_escalate_to_human_pauses_the_run_until_a_person_decides(tmp_path: Path) -> None:
    rt = Runtime(f"sqlite:///{tmp_path / 'keel.db'}")
    script = [ToolCall("escalate_to_human", {"reason": "the customer wants a manager"}), "handed over"]
    agent = Agent("support", ScriptedModel(script), tools=[escalate_to_human])
    paused = await agent.run("I want a manager", runtime=rt)
    assert paused.status == "needs_attention" and "the customer wants a manager" in (paused.error or "")
    [request] = rt.approvals(run_id=paused.run_id)
    rt.resolve(request.id, "continue", by="lead", note="I will call them", dispatch=False)
    done = await rt.resume(Agent("support", ScriptedModel(script), tools=[escalate_to_human]), paused.run_id)
    assert (done.status, done.output) == ("done", "handed over")
    assert "I will call them" in [m for m in done.messages if m.role == "tool"][0].content


def test_bad_retry_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="attempts must be 1 or more"):
        RetryPolicy(attempts=0)
    with pytest.raises(ConfigError, match="initial must be a number 0 or more"):
        RetryPolicy(initial=-1)
    with pytest.raises(ConfigError, match="fault rate must be between 0 and 1"):
        FaultyModel(ScriptedModel([]), rate=2)


async def test_a_garbled_answer_body_is_retried_then_falls_back() -> None:
    import json

    clock = FakeClock()
    garbled = Failing([json.JSONDecodeError("Unterminated string", '{"id": "x', 7)] * 10, name="garbled")
    resilient = Resilient(
        garbled, [ScriptedModel(["ok"], name="backup")], retry=RetryPolicy(attempts=3), clock=clock, breakers=False
    )
    response = await resilient.request([UserMessage("x")], [])
    assert (response.model, garbled.calls, len(clock.sleeps)) == ("backup", 3, 2)


async def test_retries_happen_inside_one_journaled_model_step(tmp_path: Path) -> None:
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'keel.db'}"
    rt, clock = Runtime(url), FakeClock()

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    faulty = FaultyModel(ScriptedModel([ToolCall("add", {"a": 1, "b": 2}), "3"]), rate=0.6, seed=4)
    agent = Agent("calc", Resilient(faulty, retry=RetryPolicy(attempts=20), breakers=False, clock=clock), tools=[add])
    result = await agent.run("add", runtime=rt)
    assert (result.status, result.output) == ("done", "3") and len(faulty.injected.faults) >= 2
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        names = [
            r[0]
            for r in conn.execute(
                sa.text("SELECT name FROM keel_steps WHERE run_id = :r ORDER BY seq"), {"r": result.run_id}
            )
        ]
    engine.dispose()
    assert names == ["model", "tool:add", "model"]  # the retries are inside the step, journaled once
    again = FaultyModel(ScriptedModel([]), rate=0.0)
    replayed = await Agent("calc", Resilient(again, breakers=False), tools=[add]).run(
        "add", runtime=rt, run_id=result.run_id
    )
    assert (replayed.output, again.injected.passed) == ("3", 0)  # a finished run asks the model nothing


def fallback_to_a_refund_by_hand(log: list[tuple[str, int]]) -> Any:
    @tool(side_effects=True, requires_approval=True)
    def refund_by_hand(order_id: str, amount: int) -> str:
        """Refund through the back office."""
        log.append((order_id, amount))
        return f"refunded {amount} on {order_id} by hand"

    @tool(side_effects=True, fallback=refund_by_hand)
    def refund(order_id: str, amount: int) -> str:
        """Refund through the payment service."""
        raise ConnectionError("payment service down")

    return refund


async def test_a_fallback_that_needs_approval_waits_for_a_person_and_is_its_own_step(tmp_path: Path) -> None:
    refunds: list[tuple[str, int]] = []
    refund = fallback_to_a_refund_by_hand(refunds)
    script = [ToolCall("refund", {"order_id": "A-1", "amount": "5"}), "refunded"]
    rt = Runtime(f"sqlite:///{tmp_path / 'keel.db'}")
    events: list[Any] = []
    paused = await Agent("pay", ScriptedModel(script), tools=[refund]).run("refund A-1", runtime=rt)
    assert paused.status == "waiting" and refunds == []  # the fallback did not run unapproved
    [request] = rt.approvals(run_id=paused.run_id)
    assert (request.tool, request.arguments) == ("refund_by_hand", {"order_id": "A-1", "amount": 5})
    rt.approve(request.id, by="ops", dispatch=False)
    agent = Agent("pay", ScriptedModel(script), tools=[refund])
    done = await rt.resume(agent, paused.run_id, on_event=events.append)
    assert (done.status, refunds) == ("done", [("A-1", 5)])
    [answer] = [m for m in done.messages if m.role == "tool"]
    assert (answer.name, answer.content) == ("refund", "refunded 5 on A-1 by hand")  # under the call the model made
    [result] = [e.data for e in events if e.kind == "tool_result"]
    assert result["fallback"] == {
        "tool": "refund_by_hand",
        "because": "refund failed: ConnectionError: payment service down",
    }
    journal = rt._engine().store.load_steps(paused.run_id)
    tools = [(name, (output or {}).get("is_error")) for name, _, output in journal.values() if name.startswith("tool:")]
    assert tools == [("tool:refund", True), ("tool:refund_by_hand", False)]  # each tool journaled once, on its own
    served = [e["data"] for e in journal_events(rt._engine().store, paused.run_id) if e["kind"] == "tool_result"]
    assert [(e["name"], e["call_id"], e.get("fallback")) for e in served] == [
        ("refund", "call_1_0", None),
        ("refund_by_hand", "call_1_0", result["fallback"]),  # the event stream read back says the same
    ]


async def test_a_policy_that_denies_a_tool_denies_it_as_a_fallback() -> None:
    refunds: list[tuple[str, int]] = []

    class NoBackOffice(Policy):
        async def before_tool(self, ctx: PolicyContext, call: ToolCall, tool: Tool) -> Decision:
            return Decision.deny("the back office is closed") if call.name == "refund_by_hand" else Decision()

    script = [ToolCall("refund", {"order_id": "A-1", "amount": 5}), "could not refund"]
    agent = Agent(
        "pay",
        ScriptedModel(script),
        tools=[fallback_to_a_refund_by_hand(refunds)],
        policies=[NoBackOffice(), RequireApproval()],
    )
    result = await agent.run("refund A-1", runtime=MEMORY)
    assert result.status == "done" and refunds == []
    [answer] = [m for m in result.messages if m.role == "tool"]
    assert answer.is_error and "the back office is closed" in answer.content
