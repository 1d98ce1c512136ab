"""One durable engine per database URL in a process: a second database never stops the first."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from keel import Agent, Runtime, tool
from keel.durable import DurableEngine, run_worker
from keel.events import RunEvent
from keel.exceptions import UsageError
from keel.models import ScriptedModel, ToolCall

from .conftest import PG_ADMIN


@pytest.fixture(params=["sqlite", "postgresql"])
def two_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two databases: SQLite files, or a SQLite file and a PostgreSQL database as the second."""
    url_a = f"sqlite:///{tmp_path / 'a.db'}"
    if request.param == "sqlite":
        yield url_a, f"sqlite:///{tmp_path / 'b.db'}"
        DurableEngine.close()
        return
    name = f"keel_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield url_a, f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        DurableEngine.close()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def calc(name: str = "calc") -> Agent:
    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    return Agent(name=name, model=ScriptedModel([ToolCall("add", {"a": 1, "b": 2}), "The sum is 3."]), tools=[add])


async def test_a_run_on_one_database_survives_a_runtime_on_another(two_urls: tuple[str, str]) -> None:
    url_a, url_b = two_urls
    entered, release = asyncio.Event(), asyncio.Event()

    @tool
    async def slow(x: int) -> int:
        """Wait until released, then echo."""
        entered.set()
        await release.wait()
        return x

    held = Agent(name="held", model=ScriptedModel([ToolCall("slow", {"x": 7}), "got 7"]), tools=[slow])
    runtime_a = Runtime(url_a)
    first = asyncio.create_task(runtime_a.run(held, "hold on", run_id="run_a"))
    await asyncio.wait_for(entered.wait(), 30)

    on_b = await Runtime(url_b).run(calc(), "add 1 and 2", run_id="run_b")  # while run_a is mid-step
    release.set()
    on_a = await asyncio.wait_for(first, 30)

    assert (on_a.status, on_a.output) == ("done", "got 7")
    assert (on_b.status, on_b.output) == ("done", "The sum is 3.")
    assert runtime_a.get("run_a").status == "done"
    assert Runtime(url_b).get("run_b").status == "done"
    assert [r.run_id for r in runtime_a.runs()] == ["run_a"]  # each database keeps its own runs
    assert DurableEngine.for_url(url_a) is not DurableEngine.for_url(url_b)


async def test_runs_queued_on_a_second_database_reach_its_workers(two_urls: tuple[str, str]) -> None:
    url_a, url_b = two_urls
    runtime_a, runtime_b = Runtime(url_a), Runtime(url_b)
    assert (await runtime_a.run(calc(), "add 1 and 2")).status == "done"  # DBOS runs on a in this process
    run_id = runtime_b.start(calc(), "add 1 and 2")  # on b's queue, in b's database
    assert runtime_b.get(run_id).status == "queued"
    DurableEngine.close()

    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(url_b, [calc()]), kwargs={"worker_id": "w-b", "stop": stop})
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while runtime_b.get(run_id).status != "done":
            assert time.monotonic() < deadline, f"run still {runtime_b.get(run_id).status}"
            stop.wait(0.05)
    finally:
        stop.set()
        worker.join(30)
    assert runtime_b.get(run_id).result is not None


async def test_a_worker_on_a_second_database_is_refused_and_the_first_keeps_working(
    two_urls: tuple[str, str],
) -> None:
    url_a, url_b = two_urls
    runtime_a = Runtime(url_a)
    assert (await runtime_a.run(calc(), "add 1 and 2")).status == "done"
    with pytest.raises(UsageError, match=r"one database per process.*own process"):
        run_worker(url_b, [calc()], worker_id="w-b", stop=threading.Event())
    assert (await runtime_a.run(calc(), "add 1 and 2")).status == "done"
    assert len(runtime_a.runs()) == 2


async def test_one_observer_registration_sees_every_run_in_the_process(two_urls: tuple[str, str]) -> None:
    url_a, _ = two_urls
    seen: list[RunEvent] = []
    stop_observing = Runtime.observe(seen.append)
    try:
        memory = await Runtime.in_memory().run(calc(), "add 1 and 2")
        durable = await Runtime(url_a).run(calc(), "add 1 and 2")
    finally:
        stop_observing()
    after = await Runtime.in_memory().run(calc(), "add 1 and 2")
    runs = {event.run_id for event in seen}
    assert runs == {memory.run_id, durable.run_id}
    assert after.run_id not in runs
    for run_id in runs:
        kinds = [event.kind for event in seen if event.run_id == run_id]
        assert kinds[0] == "run_started" and kinds[-1] == "run_finished"


def test_the_durable_observer_name_is_the_same_registration() -> None:
    import keel.durable

    seen: list[RunEvent] = []
    keel.durable.add_observer(seen.append)
    try:
        result = asyncio.run(Runtime.in_memory().run(calc(), "add 1 and 2"))
    finally:
        keel.durable.remove_observer(seen.append)
    assert {event.run_id for event in seen} == {result.run_id}
