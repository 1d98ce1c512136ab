"""Shared guardrail counters on real SQLite and real PostgreSQL: caps hold under concurrent takers."""

from __future__ import annotations

import threading

from keel import Agent, Runtime
from keel.models import ModelProfile, ScriptedModel
from keel.policies._ledger import Ledger
from keel.policies.budget import Budget
from keel.testing import FakeClock

DAY = FakeClock(1_700_000_000.0)


def test_concurrent_takers_never_pass_a_cap(database_url: str) -> None:
    ledgers = [Ledger(database_url) for _ in range(4)]  # four engines, as four worker processes have
    results: list[bool] = []
    lock = threading.Lock()

    def worker(ledger: Ledger) -> None:
        for _ in range(20):
            ok = ledger.take("w", 1.0, [("a", 50.0), ("b", 30.0)]) is None
            with lock:
                results.append(ok)

    threads = [threading.Thread(target=worker, args=(ledger,)) for ledger in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 30  # the tighter cap ("b") decides; "a" took only what "b" allowed
    assert (ledgers[0].used("a", "w"), ledgers[0].used("b", "w")) == (30.0, 30.0)
    for ledger in ledgers:
        ledger.engine.dispose()


async def test_a_daily_cap_stops_the_next_run_and_it_resumes_when_raised(database_url: str) -> None:
    rt = Runtime(database_url)
    profile = ModelProfile(max_output_tokens=1000)

    def agent(cap: float) -> Agent:
        budget = Budget(  # a fake clock: every run falls on one day, even across midnight (UTC)
            agent_daily_usd=cap, prices={"priced": (0.0, 1000.0)}, database_url=database_url, clock=DAY
        )
        return Agent("daily", ScriptedModel(["done"], name="priced", profile=profile), policies=[budget])

    first = await agent(1.005).run("x", runtime=rt)
    second = await agent(1.005).run("x", runtime=rt)
    third = await agent(1.005).run("x", runtime=rt)
    assert [r.status for r in (first, second, third)] == ["done", "done", "failed"]
    assert third.error_type == "BudgetExceeded"
    resumed = await rt.resume(agent(2.0), third.run_id)
    assert (resumed.status, resumed.output) == ("done", "done")
