"""Metrics computed from the database: runs by several processes counted once each, per tenant."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from keel import Runtime, UsageError
from keel.observe.feedback import list_feedback, record_feedback
from keel.observe.metrics import render, timeseries

from .conftest import AGENTS, ROOT
from .service_agents import calc, support


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_count_every_process_s_runs_tool_outcomes_approvals_and_satisfaction(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keel.db'}"
    # two runs in other processes (as two workers would), on the same database
    for task in ("add 2 and 3", "divide 1 by 0"):
        done = subprocess.run(
            [sys.executable, "-m", "keel.cli", "run", f"{AGENTS}:calc", task, "--db", url, "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    runtime = Runtime(url)
    failed = calc.run_sync("please fail", runtime=runtime, metadata={"tenant": "acme"})
    assert failed.status == "failed"
    waiting = support.run_sync("refund B-7 120.00", runtime=runtime, metadata={"tenant": "acme"})
    assert waiting.status == "waiting"
    other = support.run_sync("refund B-8 10.00", runtime=runtime, metadata={"tenant": "acme"})
    [approval] = runtime.approvals(run_id=other.run_id)
    runtime.approve(approval.id, by="ops", dispatch=False)
    import asyncio

    assert asyncio.run(runtime.resume(support, other.run_id)).status == "done"
    store = runtime._engine().store
    record_feedback(store, failed.run_id, thumbs="down", comment="it gave up")
    record_feedback(store, other.run_id, score=5)

    everyone = samples(render(store, None))
    assert everyone[("keel_runs", (("agent", "calc"), ("status", "done")))] == 2
    assert everyone[("keel_runs", (("agent", "calc"), ("status", "failed")))] == 1
    assert everyone[("keel_runs_started_total", (("agent", "calc"),))] == 3
    assert everyone[("keel_run_completion_ratio", (("agent", "calc"),))] == pytest.approx(2 / 3)
    assert everyone[("keel_run_error_ratio", (("agent", "calc"),))] == pytest.approx(1 / 3)
    assert everyone[("keel_tool_calls_total", (("agent", "calc"), ("outcome", "ok"), ("tool", "add")))] == 1
    assert everyone[("keel_tool_calls_total", (("agent", "calc"), ("outcome", "error"), ("tool", "divide")))] == 1
    assert everyone[("keel_run_steps_count", (("agent", "calc"),))] == 3
    assert everyone[("keel_run_steps_sum", (("agent", "calc"),))] == 2 + 2 + 1
    assert everyone[("keel_model_call_duration_seconds_count", (("agent", "calc"),))] == 5
    assert everyone[("keel_tokens_total", (("agent", "calc"), ("direction", "input")))] > 0

    acme = samples(render(store, "acme"))  # the two subprocess runs had no tenant: not acme's
    assert ("keel_runs", (("agent", "calc"), ("status", "done"))) not in acme
    assert acme[("keel_runs", (("agent", "calc"), ("status", "failed")))] == 1
    assert acme[("keel_approvals_pending", (("agent", "support"), ("tool", "refund_order")))] == 1
    assert acme[("keel_approval_decision_seconds_count", (("agent", "support"), ("status", "approved")))] == 1
    assert acme[("keel_feedback_total", (("agent", "calc"), ("thumbs", "down")))] == 1
    assert acme[("keel_user_satisfaction_count", (("agent", "support"),))] == 1
    assert acme[("keel_user_satisfaction_sum", (("agent", "support"),))] == 1.0
    assert acme[("keel_user_satisfaction_sum", (("agent", "calc"),))] == 0.0
    assert [f.comment for f in list_feedback(store, tenant="acme")] == ["it gave up", None]

    chart = timeseries(store, "acme", hours=1, buckets=4)
    assert sum(p["runs"] for p in chart["points"]) == 2  # finished: the failed calc and the approved refund
    last = [p for p in chart["points"] if p["runs"]][-1]
    assert last["completion_rate"] == 0.5 and last["error_rate"] == 0.5 and last["satisfaction"] == 0.5


def test_feedback_from_the_command_line_and_its_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keel.db'}"
    result = calc.run_sync("add 1 and 2", runtime=Runtime(url))

    def keel(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "keel.cli", "runs", "feedback", *args, "--db", url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    ok = keel(result.run_id, "--thumbs", "up", "--score", "3", "--comment", "fine", "--json")
    assert ok.returncode == 0, ok.stderr
    assert '"satisfaction": 0.5' in ok.stdout
    missing = keel("run_nope", "--thumbs", "up")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    with pytest.raises(UsageError, match="score must be a whole number from 1 to 5"):
        record_feedback(Runtime(url)._engine().store, result.run_id, score=7)
    with pytest.raises(UsageError, match="give thumbs"):
        record_feedback(Runtime(url)._engine().store, result.run_id)
    [stored] = list_feedback(Runtime(url)._engine().store, run_id=result.run_id)
    assert (stored.thumbs, stored.score, stored.comment) == ("up", 3, "fine")
