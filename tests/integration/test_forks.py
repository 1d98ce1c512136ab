"""Forks and decisions on real SQLite and PostgreSQL: each fork asks its own questions, keeps a cut-off call
cut off, and is stored whole or not at all; no fork, decision or cancel killed half-way strands a run.

The kills are real: a `keel` command runs as its own process with ``KEEL_KILL_POINT`` naming the instant at
which it sends itself SIGKILL (see `keel.durable._killpoints`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from keel import Agent, Runtime, ToolCall, ToolContext, tool
from keel.durable import DurableEngine
from keel.messages import AssistantMessage, Message
from keel.models import ScriptedModel
from keel.policies.approvals import RequireApproval


class Crash(BaseException):
    """The process dies here: nothing in keel catches a BaseException, so the call stays journaled as started."""


@dataclass
class Shop:
    """A support agent that refunds an order, then emails the customer; every effect is counted by run."""

    approve: bool = False
    crash_emails: int = 0
    refunds: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)

    @property
    def agent(self) -> Agent:
        shop = self

        @tool(side_effects=True, idempotent=True)
        def refund_order(order_id: str, amount: Decimal, ctx: ToolContext) -> str:
            """Refund an order."""
            shop.refunds.append(ctx.run_id)
            return f"refunded {amount} on {order_id}"

        @tool(side_effects=True)
        def email_customer(text: str, ctx: ToolContext) -> str:
            """Email the customer (not idempotent)."""
            shop.emails.append(ctx.run_id)
            if shop.crash_emails:
                shop.crash_emails -= 1
                raise Crash
            return "sent"

        def script(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> str | ToolCall:
            turn = sum(isinstance(m, AssistantMessage) for m in messages)
            if turn == 0:
                return ToolCall("refund_order", {"order_id": "A-1", "amount": "240.00"})
            if turn == 1:
                return ToolCall("email_customer", {"text": "We refunded 240.00 EUR."})
            return "Refunded and emailed."

        policies = [RequireApproval(["refund_order"], expires_in=3600, on_expiry="escalate")] if self.approve else []
        return Agent("shop", ScriptedModel(script), tools=[refund_order, email_customer], policies=policies)


def resume(runtime: Runtime, agent: Agent, run_id: str) -> str:
    return asyncio.run(runtime.resume(agent, run_id)).status


def keel(url: str, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run one `keel` command as its own process, killed at `kill_at` if given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["KEEL_DATABASE_URL"] = url
    if kill_at is not None:
        env["KEEL_KILL_POINT"] = kill_at
    argv = [sys.executable, "-m", "keel.cli", *args, "--db", url]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def queued_segment(url: str, run_id: str) -> bool:
    """Whether the run's current segment waits on the DBOS queue for a worker."""
    table = "workflow_status" if url.startswith("sqlite") else "dbos.workflow_status"
    engine = DurableEngine.for_url(url)
    record = engine.store.get_run(run_id)
    assert record is not None
    wid = run_id if record.segment == 0 else f"{run_id}~{record.segment}"
    with engine.engine.connect() as conn:
        status = conn.execute(sa.text(f"SELECT status FROM {table} WHERE workflow_uuid = :w"), {"w": wid}).scalar()
    return status == "ENQUEUED"


def journal(url: str, run_id: str) -> list[tuple[str, str]]:
    steps = DurableEngine.for_url(url).store.load_steps(run_id)
    return [(name, status) for _, (name, status, _) in sorted(steps.items())]


def movable(runtime: Runtime, url: str, run_id: str) -> bool:
    """A person is asked about the run, or a worker will take it: it is not stranded."""
    status = runtime.get(run_id).status
    if status in ("queued", "running"):
        return queued_segment(url, run_id)
    return status in ("done", "failed", "cancelled") or bool(runtime.approvals(run_id=run_id))


# -- a fork gets its own approvals ---------------------------------------------------------------
def test_a_fork_waits_on_its_own_approval_and_one_approval_releases_one_run(database_url: str) -> None:
    runtime, shop = Runtime(database_url), Shop(approve=True)
    assert shop.agent.run_sync("refund A-1", runtime=runtime, run_id="run_apv_src").status == "waiting"
    [original] = runtime.approvals(run_id="run_apv_src")

    runtime.fork("run_apv_src", 1, run_id_new="run_apv_fork")
    mine = runtime.approvals(run_id="run_apv_fork")
    assert len(mine) == 1, f"the fork asks nobody: {mine}"
    own = mine[0]
    assert own.id != original.id and own.status == "pending"
    same = ("kind", "tool", "arguments", "arguments_hash", "reason", "on_expiry")
    assert [getattr(own, a) for a in same] == [getattr(original, a) for a in same]
    assert own.expires_at is not None and original.expires_at is not None
    assert own.expires_at - own.requested_at == pytest.approx(original.expires_at - original.requested_at)

    # approving the original releases the original only
    runtime.approve(original.id, by="ops", dispatch=False)
    assert resume(runtime, shop.agent, "run_apv_src") == "done"
    assert resume(runtime, shop.agent, "run_apv_fork") == "waiting"
    assert shop.refunds == ["run_apv_src"]
    assert [a.id for a in runtime.approvals()] == [own.id]

    # the fork's own approval releases the fork
    runtime.approve(own.id, by="ops", dispatch=False)
    assert resume(runtime, shop.agent, "run_apv_fork") == "done"
    assert shop.refunds == ["run_apv_src", "run_apv_fork"]


def test_a_decision_journaled_before_the_fork_point_stays_history(database_url: str) -> None:
    runtime, shop = Runtime(database_url), Shop(approve=True)
    assert shop.agent.run_sync("refund A-1", runtime=runtime, run_id="run_hist_src").status == "waiting"
    [original] = runtime.approvals(run_id="run_hist_src")
    runtime.approve(original.id, by="ops", dispatch=False)
    assert resume(runtime, shop.agent, "run_hist_src") == "done"

    runtime.fork("run_hist_src", 1, run_id_new="run_hist_fork")  # after the approved refund, before the email
    assert runtime.approvals(status=None, run_id="run_hist_fork") == []
    assert resume(runtime, shop.agent, "run_hist_fork") == "done"
    assert shop.refunds == ["run_hist_src"]  # the refund is history in the fork: not asked for, not repeated
    assert shop.emails == ["run_hist_src", "run_hist_fork"]  # the fork's own email, after its fork point


# -- a fork carries a cut-off call ---------------------------------------------------------------
def test_a_fork_keeps_a_call_cut_off_by_a_dead_worker_and_asks_a_person(database_url: str) -> None:
    runtime, shop = Runtime(database_url), Shop(crash_emails=1)
    with pytest.raises(Crash):  # the email went out; the worker died before journaling it
        asyncio.run(runtime.run(shop.agent, "refund A-1", run_id="run_cut_src"))
    assert journal(database_url, "run_cut_src")[-1] == ("tool:email_customer", "started")

    runtime.fork("run_cut_src", 2, run_id_new="run_cut_fork")
    assert resume(runtime, shop.agent, "run_cut_fork") == "needs_attention"
    assert shop.emails == ["run_cut_src"]  # not sent again with no person deciding
    [asked] = runtime.approvals(run_id="run_cut_fork")
    assert (asked.kind, asked.tool) == ("interrupted", "email_customer")

    # forked once the original asks: the fork carries the question, as its own
    assert resume(runtime, shop.agent, "run_cut_src") == "needs_attention"
    [original] = runtime.approvals(run_id="run_cut_src")
    runtime.fork("run_cut_src", 2, run_id_new="run_cut_fork2")
    [own] = runtime.approvals(run_id="run_cut_fork2")
    assert own.id != original.id and (own.kind, own.tool, own.arguments) == (
        "interrupted",
        "email_customer",
        original.arguments,
    )
    runtime.resolve(own.id, "skip", by="ops", result="sent (seen in the mail log)", dispatch=False)
    assert resume(runtime, shop.agent, "run_cut_fork2") == "done"
    assert shop.emails == ["run_cut_src"]
    assert [a.id for a in runtime.approvals(run_id="run_cut_src")] == [original.id]  # still the original's to decide


# -- a fork is stored whole or not at all ---------------------------------------------------------
@pytest.mark.parametrize("point", ["fork:indexed", "fork:committed"])
def test_a_fork_killed_half_way_repeats_no_effect_and_strands_nothing(database_url: str, point: str) -> None:
    runtime, shop = Runtime(database_url), Shop()
    assert shop.agent.run_sync("refund A-1", runtime=runtime, run_id="run_fk_src").status == "done"
    history = journal(database_url, "run_fk_src")[:4]  # up to the last model step

    killed = keel(database_url, "runs", "fork", "run_fk_src", "--from-step", "2", kill_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    engine = DurableEngine.for_url(database_url)
    swept = engine.sweep(now=time.time() + 60)

    forks = [r.run_id for r in runtime.runs(limit=100) if r.parent_run == "run_fk_src"]
    assert len(forks) == 1 if point == "fork:committed" else len(forks) <= 1
    for fork_id in forks:
        assert journal(database_url, fork_id) == history  # the whole history, or no fork at all
        assert fork_id in swept and movable(runtime, database_url, fork_id)
        assert resume(runtime, shop.agent, fork_id) == "done"
    assert (shop.refunds, shop.emails) == (["run_fk_src"], ["run_fk_src"])


# -- no decision strands a run --------------------------------------------------------------------
@pytest.mark.parametrize("point", ["decide:recorded", "decide:claimed"])
def test_an_approval_killed_half_way_strands_no_run(database_url: str, point: str) -> None:
    runtime, shop = Runtime(database_url), Shop(approve=True)
    assert shop.agent.run_sync("refund A-1", runtime=runtime, run_id="run_dk").status == "waiting"
    [request] = runtime.approvals(run_id="run_dk")

    killed = keel(database_url, "approvals", "approve", request.id, "--by", "ops", kill_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    DurableEngine.for_url(database_url).sweep(now=time.time() + 60)
    assert movable(runtime, database_url, "run_dk"), (runtime.get("run_dk").status, runtime.approvals(status=None))

    if runtime.approvals(run_id="run_dk"):  # nothing was decided: the person decides again
        runtime.approve(request.id, by="ops", dispatch=False)
    assert resume(runtime, shop.agent, "run_dk") == "done"
    assert shop.refunds == ["run_dk"]


def test_a_resolution_killed_half_way_strands_no_run(database_url: str) -> None:
    runtime, shop = Runtime(database_url), Shop(crash_emails=1)
    with pytest.raises(Crash):
        asyncio.run(runtime.run(shop.agent, "refund A-1", run_id="run_rk"))
    assert resume(runtime, shop.agent, "run_rk") == "needs_attention"
    [request] = runtime.approvals(run_id="run_rk")

    killed = keel(database_url, "runs", "resolve", request.id, "skip", "--result", "sent", kill_at="decide:recorded")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    DurableEngine.for_url(database_url).sweep(now=time.time() + 60)
    assert movable(runtime, database_url, "run_rk"), (runtime.get("run_rk").status, runtime.approvals(status=None))


def test_a_cancel_killed_half_way_leaves_no_request_pending(database_url: str) -> None:
    runtime, shop = Runtime(database_url), Shop(approve=True)
    assert shop.agent.run_sync("refund A-1", runtime=runtime, run_id="run_ck").status == "waiting"
    killed = keel(database_url, "runs", "cancel", "run_ck", kill_at="cancel:recorded")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    status = runtime.get("run_ck").status
    assert status in ("waiting", "cancelled")
    assert (status == "cancelled") == (runtime.approvals(run_id="run_ck") == []), status


@pytest.mark.parametrize("how", ["decided", "expired"])
def test_the_sweeper_queues_a_decided_run_that_nobody_queued(database_url: str, how: str) -> None:
    runtime, shop = Runtime(database_url), Shop(approve=True)
    assert shop.agent.run_sync("refund A-1", runtime=runtime, run_id="run_sw").status == "waiting"
    [request] = runtime.approvals(run_id="run_sw")
    engine = DurableEngine.for_url(database_url)
    later = time.time() + 7200  # past the request's expiry
    if how == "decided":  # the deciding process died before queueing the run (as an older keel left it)
        runtime.approve(request.id, by="ops", dispatch=False)
    else:  # a sweeper expired the request and died before queueing the run
        expired = {"decision": "expired", "on_expiry": "escalate"}
        engine.decide(request.id, "expired", expired, by="keel", note=None, dispatch=False)

    assert "run_sw" in engine.sweep(now=later)
    assert runtime.get("run_sw").status == "queued" and queued_segment(database_url, "run_sw")
