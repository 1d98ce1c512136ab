"""Durable runs on a real SQLite database: every step journaled, a crashed run resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from keel import Agent, Runtime, ToolCall, UsageError, tool
from keel.models import ScriptedModel


@tool
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('durable') / 'keel.db'}"


def journal(url: str, run_id: str) -> list[str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT name FROM keel_steps WHERE run_id = :r ORDER BY seq"), {"r": run_id}).all()
    engine.dispose()
    return [r[0] for r in rows]


def test_every_step_is_journaled(db_url: str) -> None:
    model = ScriptedModel([ToolCall("add", {"a": 1, "b": 2}), "The sum is 3."])
    result = Agent("calc", model, tools=[add]).run_sync("add 1 and 2", runtime=Runtime(db_url))
    assert (result.status, result.output) == ("done", "The sum is 3.")
    assert journal(db_url, result.run_id) == ["model", "tool:add", "model"]


def test_a_finished_run_is_not_run_again(db_url: str) -> None:
    first = Agent("calc", ScriptedModel([ToolCall("add", {"a": 2, "b": 2}), "4"]), tools=[add]).run_sync(
        "add", runtime=Runtime(db_url), run_id="run_fixed_id_1"
    )
    silent = ScriptedModel([])  # would fail if asked
    again = Agent("calc", silent, tools=[add]).run_sync("add", runtime=Runtime(db_url), run_id="run_fixed_id_1")
    assert silent.calls == 0
    assert again.to_dict() == first.to_dict()


def test_resume_rejects_unknown_and_finished_runs(db_url: str) -> None:
    import asyncio

    agent = Agent("calc", ScriptedModel(["x"]))
    rt = Runtime(db_url)
    with pytest.raises(UsageError, match="does not exist"):
        asyncio.run(rt.resume(agent, "run_nope"))
    done = agent.run_sync("x", runtime=rt)
    with pytest.raises(UsageError, match="already finished"):
        asyncio.run(rt.resume(agent, done.run_id))


CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    from keel import Agent, Runtime, ToolCall, tool
    from keel.models import ScriptedModel

    ledger = Path(os.environ["LEDGER"])

    @tool(side_effects=True)
    async def charge(n: int) -> str:
        '''Charge a card.'''
        with ledger.open("a") as f:
            f.write(f"charge {n}\\n")
        if n == 2 and os.environ.get("HANG") == "1":
            print("IN_FLIGHT", flush=True)
            await asyncio.Event().wait()
        return f"charged {n}"

    script = [ToolCall("charge", {"n": 1}), ToolCall("charge", {"n": 2}), "all charged"]
    agent = Agent("payer", ScriptedModel(script), tools=[charge])
    rt = Runtime(os.environ["DB_URL"])
    if sys.argv[1] == "start":
        agent.run_sync("charge twice", runtime=rt, run_id=os.environ["RUN_ID"])
    else:
        if sys.argv[1] == "skip":
            [request] = rt.approvals(status="pending")
            rt.resolve(request.id, "skip", by="ops", result="charged 2 (confirmed with the bank)", dispatch=False)
        result = asyncio.run(rt.resume(agent, os.environ["RUN_ID"]))
        print("RESULT", result.status, result.output, result.steps, flush=True)
    """
)


def test_a_killed_run_resumes_without_repeating_any_side_effect(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    ledger = tmp_path / "ledger"
    env = {**os.environ, "LEDGER": str(ledger), "DB_URL": f"sqlite:///{tmp_path / 'keel.db'}", "RUN_ID": "run_crash_1"}
    child = subprocess.Popen(
        [sys.executable, str(script), "start"], env={**env, "HANG": "1"}, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "IN_FLIGHT"  # the second charge is running now
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    assert ledger.read_text().splitlines() == ["charge 1", "charge 2"]

    def run(mode: str) -> str:
        done = subprocess.run([sys.executable, str(script), mode], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    # charge 1 completed and replays from the journal; charge 2 was in flight and is not idempotent,
    # so the run asks a person instead of charging again
    assert "RESULT needs_attention" in run("resume")
    assert ledger.read_text().splitlines() == ["charge 1", "charge 2"]
    # a person confirms the charge went through: skip it with that result, and the run completes
    assert "RESULT done all charged 3" in run("skip")
    assert ledger.read_text().splitlines() == ["charge 1", "charge 2"]


def test_a_tool_that_escalates_waits_for_a_person_and_the_model_sees_the_note(db_url: str) -> None:
    import asyncio

    from keel import Escalate
    from keel.messages import ToolMessage

    calls: list[str] = []

    @tool
    def escalate_to_human(reason: str) -> str:
        """Hand the conversation to a person."""
        calls.append(reason)
        raise Escalate(reason)

    script = [ToolCall("escalate_to_human", {"reason": "customer asks for a manager"}), "A manager will call you."]
    agent = Agent("escalating", ScriptedModel(script), tools=[escalate_to_human])
    runtime = Runtime(db_url)
    first = agent.run_sync("I want a manager", runtime=runtime)
    assert (first.status, first.error_type) == ("needs_attention", "NeedsAttention")
    [request] = runtime.approvals(run_id=first.run_id)
    assert request.kind == "pause" and "customer asks for a manager" in request.reason

    runtime.resolve(request.id, "continue", by="lead", note="I will call them at 3pm", dispatch=False)
    done = asyncio.run(runtime.resume(agent, first.run_id))
    assert (done.status, done.output) == ("done", "A manager will call you.")
    assert calls == ["customer asks for a manager"]  # journaled: not run again on resume
    result = next(m for m in done.messages if isinstance(m, ToolMessage))
    assert result.content.endswith("A person reviewed the run and says: I will call them at 3pm")


def test_an_expired_approval_cannot_be_approved_and_its_default_applies(db_url: str) -> None:
    import asyncio

    from keel.messages import ToolMessage
    from keel.policies.approvals import RequireApproval

    refunds: list[str] = []

    @tool(side_effects=True)
    def refund(order_id: str) -> str:
        """Refund an order."""
        refunds.append(order_id)
        return "refunded"

    script = [ToolCall("refund", {"order_id": "A-1"}), "The refund was not approved in time."]
    agent = Agent(
        "expiring", ScriptedModel(script), tools=[refund], policies=[RequireApproval(["refund"], expires_in=3600)]
    )
    runtime = Runtime(db_url)
    paused = agent.run_sync("refund A-1", runtime=runtime)
    assert paused.status == "waiting"
    [approval] = runtime.approvals(run_id=paused.run_id)

    # an hour passes: move the deadline into the past rather than waiting for it
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE keel_approvals SET expires_at = requested_at - 1 WHERE id = :i"), {"i": approval.id}
        )
    engine.dispose()

    with pytest.raises(UsageError, match="expired"):
        runtime.approve(approval.id, by="late reviewer")
    done = asyncio.run(runtime.resume(agent, paused.run_id))
    assert done.status == "done" and refunds == []
    rejected = next(m for m in done.messages if isinstance(m, ToolMessage))
    assert rejected.rejected and "expired" in rejected.content
    assert runtime.approvals(status=None, run_id=paused.run_id)[0].status == "expired"


def test_every_segment_is_queued_under_the_version_that_started_the_run(tmp_path: Path) -> None:
    """A decision taken by a process of another version queues the run for workers of its own version."""
    import asyncio

    from dbos import DBOS

    from keel.durable import DurableEngine
    from keel.policies.approvals import RequireApproval

    url = f"sqlite:///{tmp_path / 'keel.db'}"
    agent = Agent(
        "versioned",
        ScriptedModel([ToolCall("add", {"a": 1, "b": 2}), "3"]),
        tools=[add],
        policies=[RequireApproval(["add"])],
    )
    try:
        DurableEngine.for_url(url, application_version="1")
        paused = agent.run_sync("add 1 and 2", runtime=Runtime(url))
        assert paused.status == "waiting"
        DurableEngine.close()

        DurableEngine.for_url(url, application_version="2")  # a newer producer decides
        rt = Runtime(url)
        assert rt.get(paused.run_id).app_version == "1"
        (approval,) = rt.approvals(run_id=paused.run_id)
        rt.approve(approval.id, by="reviewer")
        status = DBOS.get_workflow_status(f"{paused.run_id}~1")
        assert status is not None and status.app_version == "1"
        assert rt.get(paused.run_id).status == "queued"
        DurableEngine.close()

        DurableEngine.for_url(url, application_version="1", worker=True)  # a worker of the run's version
        done = asyncio.run(Runtime(url).wait(paused.run_id, agent))
        assert (done.status, done.output) == ("done", "3")
    finally:
        DurableEngine.close()


def test_a_database_of_the_first_schema_is_migrated(tmp_path: Path) -> None:
    from keel.storage import MIGRATIONS, Store, make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    store = Store(engine, "7")
    assert store.migrate() == len(MIGRATIONS)
    with engine.begin() as conn:  # back to the schema of migration 1, with a run in it
        conn.execute(sa.text("ALTER TABLE keel_runs DROP COLUMN app_version"))
        conn.execute(sa.text("DELETE FROM keel_schema WHERE version > 1"))
        conn.execute(
            sa.text(
                "INSERT INTO keel_runs (run_id, agent, task, status, segment, metadata, steps, usage, created_at,"
                " updated_at) VALUES ('run_old', 'calc', 'add', 'queued', 0, '{}', 0, '{}', 1.0, 1.0)"
            )
        )
    assert store.migrate() == len(MIGRATIONS)
    store.create_run("run_new", "calc", "add", {})
    assert store.run_version("run_old") is None and store.run_version("run_new") == "7"
    assert store.migrate() == len(MIGRATIONS)  # nothing left to do
    engine.dispose()
