"""`keel eval` on the support agent's flagship set: the gate passes, and fails on broken configurations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.evals import ResultStore

ROOT = Path(__file__).resolve().parents[2]
EVALSET = "examples/support/evals.yaml"
VARIANTS = "tests/evals/support_eval_variants.py"


@pytest.fixture
def workdir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    from keel.durable import DurableEngine

    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("KEEL_MODEL", raising=False)
    yield tmp_path
    DurableEngine.close()


def keel_eval(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["eval", *args])
    return result.exit_code, result.output


def test_the_flagship_set_passes_then_broken_agents_fail_the_gate(workdir: Path) -> None:
    from keel.durable import DurableEngine

    db = f"sqlite:///{workdir / 'keel.db'}"
    # launched here, not inside the CLI runner: DBOS binds its log handler to the stderr of its first launch,
    # and the runner's stderr is closed once the command returns
    DurableEngine.for_url(db)
    baseline, page = workdir / "baseline.json", workdir / "report.html"
    code, output = keel_eval(EVALSET, "--trials", "3", "--db", db, "--json", str(baseline), "--html", str(page))
    assert code == 0, output
    assert "gate passed" in output and "mean pass^3 1.000" in output
    data = json.loads(baseline.read_text())
    assert len(data["cases"]) >= 30 and data["totals"]["trials"] == 3 * len(data["cases"])
    assert all(c["pass_hat_k"] == 1.0 for c in data["cases"])
    assert "refund-above-limit-needs-approval" in page.read_text()
    store = ResultStore(db)
    (stored,) = store.history("support")
    assert stored["config_hash"] == data["config_hash"] and stored["pass_hat_k"] == 1.0
    store.close()

    # the refund approval removed: the refund above the limit runs at once
    code, output = keel_eval(
        EVALSET, "--trials", "3", "--db", db, "--agent", f"{VARIANTS}:no_approval", "--baseline", str(baseline)
    )
    assert code == 1, output
    assert "FAIL refund-above-limit-needs-approval trial 0: approval_requested[refund_order]" in output
    assert "refunds on A-1004 during the trial: 249.00, expected 0" in output
    assert "stratified exact p = 0.0500" in output and "gate failed: a regression against the baseline" in output

    # a broken refund tool: every refund case fails
    code, output = keel_eval(
        EVALSET, "--trials", "3", "--db", "memory", "--agent", f"{VARIANTS}:broken_tool", "--baseline", str(baseline)
    )
    assert code == 1, output
    assert "FAIL refund-within-policy trial 0: status=done: the run ended failed: tool 'refund_order' raised" in output
    assert "a regression against the baseline" in output and "is below 1.0" in output


def test_the_gate_can_be_relaxed_but_still_reports_failures(workdir: Path) -> None:
    code, output = keel_eval(
        EVALSET,
        "--db",
        "memory",
        "--agent",
        f"{VARIANTS}:no_approval",
        "--fail-under",
        "0.9",
        "--case",
        "refund-above-limit-needs-approval",
        "--case",
        "refund-within-policy",
    )
    assert code == 1 and "mean pass^1 0.500 is below 0.9" in output
    code, output = keel_eval(EVALSET, "--db", "memory", "--fail-under", "0.9", "--case", "refund-within-policy")
    assert code == 0 and "gate passed" in output


def test_bad_input_exits_2_naming_the_problem(workdir: Path) -> None:
    bad = workdir / "bad.yaml"
    bad.write_text("name: x\ncases:\n  - id: a\n    task: t\n    expect: {max_steps: many}\n")
    code, output = keel_eval(str(bad), "--db", "memory")
    assert code == 2 and f"{bad}:5: cases[0](id=a).expect.max_steps" in output
    code, output = keel_eval(EVALSET, "--db", "memory", "--baseline", str(workdir / "none.json"))
    assert code == 2 and "none.json: cannot read it as a keel eval report" in output
    code, output = keel_eval(EVALSET, "--db", "memory", "--case", "no-such-case")
    assert code == 2 and "unknown case id(s) ['no-such-case']" in output
    code, output = keel_eval(EVALSET, "--db", "memory", "--fail-under", "2")
    assert code == 2 and "--fail-under must be between 0 and 1" in output
    code, output = keel_eval(EVALSET, "--db", "memory", "--pairwise")
    assert code == 2 and "--pairwise compares with the baseline's answers" in output
    no_agent = workdir / "no_agent.yaml"
    no_agent.write_text("name: x\ncases:\n  - {id: a, task: t}\n")
    code, output = keel_eval(str(no_agent), "--db", "memory")
    assert code == 2 and "no agent to evaluate" in output
