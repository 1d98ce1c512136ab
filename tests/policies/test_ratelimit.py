"""RateLimit: per-minute limits on requests, tokens and tool calls, shared across processes, on a fake clock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from keel import Agent, ConfigError, Runtime, ToolCall, tool
from keel.models import ModelProfile, ScriptedModel
from keel.policies._ledger import Ledger, RedisLedger
from keel.policies.ratelimit import RateLimit
from keel.testing import FakeClock

START = 1_699_999_990.0  # 10 s into a minute


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def calls(n: int) -> list[object]:
    return [*(ToolCall("add", {"a": i, "b": 1}) for i in range(n)), "done"]


async def test_over_the_request_limit_the_run_waits_for_the_next_minute(tmp_path: Path) -> None:
    clock = FakeClock(START)
    limit = RateLimit(requests_per_minute=2, database_url=f"sqlite:///{tmp_path / 'k.db'}", clock=clock)
    model = ScriptedModel(calls(4))
    result = await Agent("a", model, tools=[add], policies=[limit]).run("x", runtime=Runtime.in_memory())
    assert (result.status, model.calls) == ("done", 5)
    assert clock.sleeps == [50.0, 60.0]  # to the next minute after requests 2 and 4, never a real sleep


async def test_waiting_is_bounded_and_fail_mode_stops_with_rate_limited(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    clock = FakeClock(START)
    limit = RateLimit(requests_per_minute=1, on_limit="fail", database_url=url, clock=clock)
    model = ScriptedModel(calls(2))
    result = await Agent("a", model, tools=[add], policies=[limit]).run("x", runtime=Runtime.in_memory())
    assert (result.status, result.error_type, model.calls) == ("failed", "RateLimited", 1)
    assert "on_limit='fail'" in (result.error or "") and clock.sleeps == []
    bounded = RateLimit(requests_per_minute=1, max_wait=30, database_url=url, clock=clock)
    model = ScriptedModel(calls(2))
    result = await Agent("b", model, tools=[add], policies=[bounded]).run("x", runtime=Runtime.in_memory())
    assert (result.error_type, model.calls) == ("RateLimited", 0)  # the minute is used up by the run above
    assert "max_wait=30 s" in (result.error or "")


async def test_a_rate_limited_durable_run_resumes_later(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    rt, clock = Runtime(url), FakeClock(START)

    def agent() -> Agent:
        limit = RateLimit(requests_per_minute=1, on_limit="fail", database_url=url, clock=clock)
        return Agent("a", ScriptedModel(calls(1)), tools=[add], policies=[limit])

    stopped = await agent().run("x", runtime=rt)
    assert stopped.error_type == "RateLimited"
    clock.advance(60)
    resumed = await rt.resume(agent(), stopped.run_id)
    assert (resumed.status, resumed.output) == ("done", "done")


async def test_token_and_tool_limits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    clock = FakeClock(START)
    small = ModelProfile(max_output_tokens=100)
    limit = RateLimit(tokens_per_minute=50, database_url=url, clock=clock)
    result = await Agent("a", ScriptedModel(["x"], profile=small), policies=[limit]).run(
        "x", runtime=Runtime.in_memory()
    )
    assert result.error_type == "RateLimited" and "more than tpm:model:scripted's limit" in (result.error or "")
    limit = RateLimit(tool_calls_per_minute={"add": 2}, database_url=url, clock=clock)
    result = await Agent("a", ScriptedModel(calls(3)), tools=[add], policies=[limit]).run(
        "x", runtime=Runtime.in_memory()
    )
    assert result.status == "done" and clock.sleeps == [50.0]  # the third call waited for the next minute


def test_bad_limits_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="requests_per_minute must be a whole number 1 or more"):
        RateLimit(requests_per_minute=0)
    with pytest.raises(ConfigError, match="on_limit must be 'wait' or 'fail'"):
        RateLimit(on_limit="queue")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"tool_calls_per_minute\['add'\]"):
        RateLimit(tool_calls_per_minute={"add": -1})
    with pytest.raises(ConfigError, match="redis_url must look like"):
        RateLimit(redis_url="127.0.0.1:6379")


CHILD = textwrap.dedent(
    """
    import sys
    from keel.policies._ledger import Ledger, RedisLedger
    sqlite_url, redis_url, window = sys.argv[1:4]
    for counters in (Ledger(sqlite_url), RedisLedger(redis_url)):
        print(sum(counters.take(window, 1, [("rpm:model:x", 12.0)]) is None for _ in range(10)))
    """
)


def test_limits_hold_across_worker_processes_in_the_database_and_in_redis(tmp_path: Path) -> None:
    sqlite_url, redis_url = f"sqlite:///{tmp_path / 'k.db'}", "redis://127.0.0.1:6379/0"
    Ledger(sqlite_url)  # migrate once, before the processes race
    window = f"test-{uuid.uuid4().hex}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, sqlite_url, redis_url, window], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    taken = [[int(n) for n in p.communicate(timeout=120)[0].split()] for p in procs]
    assert sum(t[0] for t in taken) == 12 and sum(t[1] for t in taken) == 12  # 40 attempts each, 12 allowed
    assert Ledger(sqlite_url).used("rpm:model:x", window) == 12.0
    assert RedisLedger(redis_url).used("rpm:model:x", window) == 12.0
