"""Budget: dollar caps reserve before each request and settle after; a stopped run resumes once raised."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from keel import Agent, ConfigError, Runtime, ToolCall, tool
from keel.models import ModelProfile, ScriptedModel
from keel.policies._ledger import Ledger
from keel.policies.budget import Budget, PriceTable
from keel.testing import FakeClock

DAY = FakeClock(1_700_000_000.0)
"""A clock that stays on one day, for the daily caps."""

PRICES = {"priced": (0.0, 1000.0)}  # a request holds exactly $1 (1000 output tokens) and costs a few cents


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def priced(script: list[object]) -> ScriptedModel:
    return ScriptedModel(script, name="priced", profile=ModelProfile(max_output_tokens=1000))  # type: ignore[arg-type]


def test_bad_caps_and_prices_are_config_errors_naming_the_fix() -> None:
    with pytest.raises(ConfigError, match="max_usd must be a number 0 or more"):
        Budget(max_usd=-1)
    with pytest.raises(ConfigError, match="tenant_daily_usd must be a number"):
        Budget(tenant_daily_usd="ten")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"input_usd_per_million, output_usd_per_million"):
        Budget(prices={"gpt-x": (1.0,)})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"'mystery-1' is not in the price table; add its prices.*Budget\(prices="):
        Agent("a", "openai:mystery-1", policies=[Budget(max_usd=1.0)])
    with pytest.raises(ConfigError, match="max_steps must be a whole number"):
        Budget(max_steps=2.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="per-day caps are shared through a database"):
        Budget(agent_daily_usd=1.0, database_url="memory")


def test_prices_match_by_name_or_dated_version_and_free_models_cost_nothing() -> None:
    table = PriceTable({"my-model": (1.0, 2.0)})
    assert table.lookup("gpt-4o-mini-2024-07-18") == table.lookup("gpt-4o-mini")
    assert table.lookup("my-model") == (1.0, 2.0)
    assert table.price(ScriptedModel(["x"])) == (0.0, 0.0)
    assert table.price(ScriptedModel(["x"], name="my-model")) == (1.0, 2.0)


async def test_a_run_stops_before_the_request_that_could_pass_its_cap() -> None:
    model = priced([ToolCall("add", {"a": 1, "b": 2}), ToolCall("add", {"a": 3, "b": 4}), "done"])
    budget = Budget(max_usd=1.01, prices=PRICES)  # the first costs ~$0.02, so the second could pass $1.01
    result = await Agent("calc", model, tools=[add], policies=[budget]).run("add", runtime=Runtime.in_memory())
    assert (result.status, result.error_type) == ("failed", "BudgetExceeded")
    assert "raise max_usd and resume the run" in (result.error or "")
    assert model.calls == 1  # the second request was never made
    assert 0.01 < budget.spent(result.run_id) <= 1.01
    assert [m.role for m in result.messages] == ["system", "user", "assistant", "tool"]  # progress kept


async def test_token_and_step_limits_stop_the_run() -> None:
    model = priced([ToolCall("add", {"a": 1, "b": 2}), ToolCall("add", {"a": 3, "b": 4}), "done"])
    result = await Agent("calc", model, tools=[add], policies=[Budget(max_steps=2)]).run(
        "add", runtime=Runtime.in_memory()
    )
    assert (result.error_type, model.calls) == ("BudgetExceeded", 2)
    assert "max_steps=2" in (result.error or "")
    model = priced([ToolCall("add", {"a": 1, "b": 2}), "done"])
    result = await Agent("calc", model, tools=[add], policies=[Budget(max_tokens=1120)]).run(
        "add", runtime=Runtime.in_memory()
    )
    assert (result.error_type, model.calls) == ("BudgetExceeded", 1)
    assert "max_tokens=1120" in (result.error or "")


async def test_wall_clock_limit_reads_the_clock_inside_a_step() -> None:
    clock = FakeClock(1_000.0)

    @tool
    async def slow(a: int) -> int:
        """Takes a minute (on the fake clock)."""
        await clock.sleep(60)
        return a

    model = priced([ToolCall("slow", {"a": 1}), ToolCall("slow", {"a": 2}), "done"])
    budget = Budget(max_seconds=90, clock=clock)
    result = await Agent("t", model, tools=[slow], policies=[budget]).run("x", runtime=Runtime.in_memory())
    assert (result.error_type, model.calls) == ("BudgetExceeded", 2)
    assert "max_seconds=90" in (result.error or "")


async def test_a_stopped_durable_run_resumes_after_the_cap_is_raised(tmp_path: Path) -> None:
    rt = Runtime(f"sqlite:///{tmp_path / 'keel.db'}")
    script: list[object] = [ToolCall("add", {"a": 1, "b": 2}), ToolCall("add", {"a": 3, "b": 4}), "done"]
    first = priced(script)
    low = Agent("calc", first, tools=[add], policies=[Budget(max_usd=1.01, prices=PRICES)])
    stopped = await low.run("add", runtime=rt)
    assert (stopped.status, stopped.error_type, first.calls) == ("failed", "BudgetExceeded", 1)
    second = priced(script)
    high = Agent("calc", second, tools=[add], policies=[Budget(max_usd=10.0, prices=PRICES)])
    resumed = await rt.resume(high, stopped.run_id)
    assert (resumed.status, resumed.output) == ("done", "done")
    assert second.calls == 2  # the first request replayed from the journal, not asked again
    assert [m.role for m in resumed.messages].count("tool") == 2


async def test_daily_caps_are_shared_through_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keel.db'}"
    rt = Runtime(url)
    results = []
    for _ in range(3):  # three runs, each its own policy object, as in three processes
        # a fake clock: all three runs fall on one day, even when the test runs across midnight (UTC)
        budget = Budget(agent_daily_usd=1.005, prices=PRICES, database_url=url, clock=DAY)  # each run ~$0.004
        agent = Agent("daily", priced(["done"]), policies=[budget])
        results.append(await agent.run("x", runtime=rt, metadata={"tenant": "acme"}))
    assert [r.status for r in results] == ["done", "done", "failed"]
    assert "agent_daily_usd" in (results[2].error or "")
    ledger = Ledger(url)
    [day] = {w for (w,) in ledger.engine.connect().exec_driver_sql("SELECT window FROM keel_counters")}
    assert 0 < ledger.used("usd:agent:daily", day) <= 1.005


def test_concurrent_reservations_never_pass_the_cap(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keel.db'}"
    ledgers = [Ledger(url) for _ in range(4)]  # four engines: four processes' worth of connections
    taken: list[bool] = []
    lock = threading.Lock()

    def worker(ledger: Ledger) -> None:
        for _ in range(25):
            ok = ledger.take("w", 1.0, [("s", 30.0)]) is None
            with lock:
                taken.append(ok)

    threads = [threading.Thread(target=worker, args=(ledger,)) for ledger in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert taken.count(True) == 30
    assert ledgers[0].used("s", "w") == 30.0


def test_tenant_caps_apply_per_tenant(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keel.db'}"
    rt = Runtime(url)

    async def go(tenant: str) -> str:
        budget = Budget(tenant_daily_usd=1.005, prices=PRICES, database_url=url, clock=DAY)
        result = await Agent("t", priced(["done"]), policies=[budget]).run("x", runtime=rt, metadata={"tenant": tenant})
        return result.status

    assert [asyncio.run(go("a")) for _ in range(3)] == ["done", "done", "failed"]
    assert asyncio.run(go("b")) == "done"
