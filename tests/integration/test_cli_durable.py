"""The run and approval commands across processes, on a real SQLite database: each command is a new process.

A refund agent whose tool needs approval waits; it is approved from the command line and continued
here (`runs resume --target`) or by a `keel worker` process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keel import Runtime

AGENT_FILE = '''
import os
from decimal import Decimal
from pathlib import Path

from keel import Agent, ToolCall, ToolContext, tool
from keel.models import ScriptedModel
from keel.policies.approvals import RequireApproval


@tool(side_effects=True)
def refund_order(order_id: str, amount: Decimal, ctx: ToolContext) -> str:
    """Refund an order."""
    with Path(os.environ["LEDGER"]).open("a") as f:
        f.write(f"refund {order_id} {amount} {ctx.idempotency_key}\\n")
    return f"refunded {amount} on {order_id}"


script = [ToolCall("refund_order", {"order_id": "A-1004", "amount": "249.00"}), "Refunded 249.00."]
agent = Agent("refunds", ScriptedModel(script), tools=[refund_order], policies=[RequireApproval(["refund_order"])])
'''


class Keel:
    """Runs `keel` commands as separate processes on one database."""

    def __init__(self, tmp_path: Path) -> None:
        self.cwd = tmp_path
        self.url = f"sqlite:///{tmp_path / 'keel.db'}"
        self.ledger = tmp_path / "ledger"
        self.target = "refund_agent.py:agent"
        (tmp_path / "refund_agent.py").write_text(AGENT_FILE)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
        self.env = {**env, "KEEL_DATABASE_URL": self.url, "LEDGER": str(self.ledger), "COLUMNS": "200"}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "keel.cli", *args]

    def __call__(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(*args), cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == code, f"keel {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def refunds(self) -> list[str]:
        return self.ledger.read_text().splitlines() if self.ledger.exists() else []


@pytest.fixture
def keel(tmp_path: Path) -> Iterator[Keel]:
    from keel.durable import DurableEngine

    yield Keel(tmp_path)
    DurableEngine.close()


def start_waiting_run(keel: Keel) -> tuple[str, dict[str, Any]]:
    started = keel("run", keel.target, "refund A-1004 in full", "--json", code=3)
    run_id = json.loads(started.stdout)["run_id"]
    assert json.loads(started.stdout)["status"] == "waiting"
    [approval] = keel.json("approvals", "list", "--run", run_id)
    assert keel.refunds() == []  # nothing ran before the approval
    return run_id, approval


def test_approve_then_resume_here_then_manage_the_run(keel: Keel) -> None:
    started = keel("run", keel.target, "refund A-1004 in full", code=3)  # the live view, then how to go on
    assert "waiting" in started.stderr
    assert "keel approvals approve apv_" in started.stderr and "keel runs resume run_" in started.stderr

    [approval] = keel.json("approvals", "list")
    run_id = approval["run_id"]
    assert (approval["tool"], approval["arguments"], approval["status"]) == (
        "refund_order",
        {"order_id": "A-1004", "amount": "249.00"},
        "pending",
    )

    decision = ["--by", "ops", "--note", "gold tier", "--hash", approval["arguments_hash"], "--db", keel.url]
    approved = keel("approvals", "approve", approval["id"], *decision)
    assert f"approved {approval['id']}" in approved.stdout and "queued" in approved.stdout
    again = keel("approvals", "approve", approval["id"], code=2)
    assert "error: " in again.stderr and "already approved by ops" in again.stderr

    resumed = keel("runs", "resume", run_id, "--target", keel.target)
    assert resumed.stdout.strip() == "Refunded 249.00."
    assert "← refund_order refunded 249.00 on A-1004" in resumed.stderr  # the live view
    assert len(keel.refunds()) == 1  # the tool ran once

    shown = keel.json("runs", "show", run_id)
    assert (shown["status"], shown["steps"], shown["parent_run"], shown["pending_approvals"]) == ("done", 2, None, [])
    roles = [m["role"] for m in shown["result"]["messages"]]
    assert roles[-3:] == ["assistant", "tool", "assistant"]

    forked = keel("runs", "fork", run_id, "--from-step", "1")
    fork_id = forked.stdout.strip()
    assert fork_id.startswith("run_") and fork_id != run_id
    fork = keel.json("runs", "show", fork_id)
    assert (fork["parent_run"], fork["status"]) == (run_id, "queued")

    pruned = keel.json("runs", "prune", "--older-than", "0s")
    assert pruned == {"pruned": [run_id], "older_than_seconds": 0.0}  # the queued fork stays
    listed = keel.json("runs", "list")
    assert [(r["run_id"], r["parent_run"]) for r in listed] == [(fork_id, run_id)]


def test_a_worker_process_continues_a_run_queued_by_resume(keel: Keel) -> None:
    run_id, approval = start_waiting_run(keel)
    blocked = keel("runs", "resume", run_id, code=2)  # nothing can move before the decision
    assert "decide first" in blocked.stderr and f"keel approvals approve {approval['id']}" in blocked.stderr

    keel("approvals", "approve", approval["id"])
    queued = keel("runs", "resume", run_id)
    assert f"run {run_id} is queued" in queued.stdout

    worker = subprocess.Popen(
        keel.argv("worker", keel.target, "--id", "worker-cli-test", "--concurrency", "4"),
        cwd=keel.cwd,
        env=keel.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        result = asyncio.run(asyncio.wait_for(Runtime(keel.url).wait(run_id), timeout=90))
    finally:  # stop the worker in any case, and keep what it said for the assertions
        worker.send_signal(signal.SIGTERM)
        killed = False
        try:  # a bounded wait: a worker that ignores SIGTERM is killed, and that fails below
            _, err = worker.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            killed = True
            worker.kill()
            _, err = worker.communicate()
    assert (result.status, result.output) == ("done", "Refunded 249.00."), err
    assert len(keel.refunds()) == 1  # once, though the run was queued twice
    assert not killed and worker.returncode == 0, err  # SIGTERM stopped it, cleanly
    assert "keel worker worker-cli-test on sqlite:///" in err and "agents refunds" in err
    assert "SIGTERM: stopping the worker" in err and "worker worker-cli-test stopped" in err
