"""The eval runner on a real keel Runtime: fixtures, every kind of check, k trials, seeds, stored results."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from keel import Agent, Runtime, ToolContext, tool
from keel.evals import (
    CheckContext,
    EvalReport,
    EvalSet,
    FixtureRequest,
    ResultStore,
    contains,
    load_evalset,
    run_evalset,
    trial_seed,
)
from keel.exceptions import ConfigError
from keel.models import ScriptedModel
from keel.policies.approvals import RequireApproval

LEDGER: ContextVar[list[dict[str, Any]]] = ContextVar("ledger")
OPEN = {"now": 0, "most": 0, "closed": 0}


@tool
def balance() -> dict[str, Any]:
    """The account's balance."""
    return {"balance": 100 - sum(p["amount"] for p in LEDGER.get())}


@tool(side_effects=True, idempotent=True)
def pay(to: str, amount: float, ctx: ToolContext) -> dict[str, Any]:
    """Pay someone.

    Args:
        to: who.
        amount: how much.
        ctx: injected.
    """
    LEDGER.get().append({"to": to, "amount": amount})
    return {"paid": amount, "to": to}


def ledger(request: FixtureRequest) -> Iterator[list[dict[str, Any]]]:
    entries: list[dict[str, Any]] = list(request.params.get("start", []))
    token = LEDGER.set(entries)
    OPEN["now"] += 1
    OPEN["most"] = max(OPEN["most"], OPEN["now"])
    try:
        yield entries
    finally:
        OPEN["now"] -= 1
        OPEN["closed"] += 1
        LEDGER.reset(token)


def paid(ctx: CheckContext, to: str, amount: float) -> str | None:
    entries = ctx.fixtures["ledger"]
    if not any(e["to"] == to and e["amount"] == amount for e in entries):
        return f"no payment of {amount} to {to}: {entries}"
    return None


def nothing_paid(ctx: CheckContext) -> None:
    assert not ctx.fixtures["ledger"], f"payments were made: {ctx.fixtures['ledger']}"


SET = f"""\
name: bank
fixtures:
  ledger: {{use: "{__name__}:ledger"}}
cases:
  - id: pay-bob
    task: Pay Bob 10.
    expect:
      answer_contains: [paid, "10"]
      answer_matches: "(?i)bob"
      tools_called: [{{name: pay, arguments: {{to: bob, amount: "10.00"}}}}]
      tools_not_called: [balance]
      approval_requested: false
      max_steps: 2
      max_cost: 0
      state: [{{check: "{__name__}:paid", args: {{to: bob, amount: 10}}}}]
    script:
      - {{tool: pay, args: {{to: bob, amount: 10}}}}
      - answer: I paid Bob 10.
  - id: big-payment-waits
    task: Pay Carol 80.
    expect:
      approval_requested: pay
      state: [{{check: "{__name__}:nothing_paid"}}]
    script:
      - {{tool: pay, args: {{to: carol, amount: 80}}}}
      - answer: Paid.
  - id: balance
    task: What is my balance?
    fixtures: {{ledger: {{start: [{{to: x, amount: 30}}]}}}}
    expect:
      answer_equals: Your balance is 70.
      tools_called: [balance]
    script:
      - {{tool: balance}}
      - answer: Your balance is 70.
"""


def bank_agent(**kwargs: Any) -> Agent:
    large = RequireApproval(["pay"], when=lambda name, args: float(args.get("amount", 0)) > 50)
    return Agent("bank", ScriptedModel([]), tools=[balance, pay], policies=[large], **kwargs)


@pytest.fixture
def evalset(tmp_path: Path) -> EvalSet:
    path = tmp_path / "bank.yaml"
    path.write_text(SET, encoding="utf-8")
    return load_evalset(path)


async def test_every_kind_of_check_passes_on_a_good_agent(evalset: EvalSet) -> None:
    report = await run_evalset(evalset, bank_agent(), trials=3, runtime=Runtime.in_memory(), concurrency=2)
    assert [c.case_id for c in report.cases] == ["pay-bob", "big-payment-waits", "balance"]
    for case in report.cases:
        assert [t.trial for t in case.trials] == [0, 1, 2]
        for trial in case.trials:
            assert trial.passed, [c for c in trial.checks if not c.passed]
    first = report.cases[0].trials[0]
    assert [c.name for c in first.checks] == [
        "status=done",
        "answer_contains[paid]",
        "answer_contains[10]",
        "answer_matches",
        "tools_called[pay]",
        "tools_not_called[balance]",
        "approval_requested=false",
        "max_steps=2",
        "max_cost=0.0",
        "state[paid]",
    ]
    waiting = report.cases[1].trials[0]
    assert waiting.status == "waiting" and waiting.approvals == ["pay"] and waiting.tools == []
    totals = report.totals()
    assert totals["trials"] == 9 and totals["pass_hat_k"] == 1.0 and totals["cases_all_passed"] == 3


async def test_failed_checks_say_what_was_found(evalset: EvalSet) -> None:
    @tool
    def pay(to: str, amount: float) -> dict[str, Any]:  # no approval, and it pays twice the amount
        """Pay someone."""
        LEDGER.get().append({"to": to, "amount": amount * 2})
        return {"paid": amount * 2}

    broken = Agent("bank", ScriptedModel([]), tools=[balance, pay], policies=[])
    report = await run_evalset(evalset, broken, trials=1, runtime=Runtime.in_memory())
    pay_bob, big, _ = report.cases
    failures = {c.name: c.detail for c in pay_bob.trials[0].failures}
    assert failures == {"state[paid]": "no payment of 10 to bob: [{'to': 'bob', 'amount': 20.0}]"}
    failures = {c.name: c.detail for c in big.trials[0].failures}
    assert failures["status=waiting"] == "the run ended done"
    assert failures["approval_requested[pay]"] == "approvals requested for: none"
    assert failures["state[nothing_paid]"].startswith("payments were made: [{'to': 'carol', 'amount': 160.0}]")
    assert report.totals()["pass_hat_k"] == pytest.approx(1 / 3)


async def test_fixtures_are_torn_down_and_concurrency_is_bounded(evalset: EvalSet) -> None:
    OPEN.update(now=0, most=0, closed=0)
    await run_evalset(evalset, bank_agent(), trials=4, runtime=Runtime.in_memory(), concurrency=2)
    assert OPEN["closed"] == 12 and OPEN["now"] == 0
    assert OPEN["most"] <= 2


async def test_the_same_seed_gives_the_same_results(evalset: EvalSet) -> None:
    async def trials(seed: int) -> list[dict[str, Any]]:
        report = await run_evalset(evalset, bank_agent(), trials=2, runtime=Runtime.in_memory(), seed=seed)
        return [
            {k: v for k, v in t.to_dict().items() if k not in ("run_id", "latency_s")}
            for c in report.cases
            for t in c.trials
        ]

    first, again, other = await trials(7), await trials(7), await trials(8)
    assert first == again
    seeds = [t["seed"] for t in first]
    assert len(set(seeds)) == len(seeds)  # every trial has its own seed
    assert seeds[0] == trial_seed(7, "pay-bob", 0)
    assert [t["seed"] for t in other] != seeds
    assert [t["passed"] for t in other] == [t["passed"] for t in first]


async def test_a_scripted_model_needs_a_script_for_every_case(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ncases:\n  - {id: a, task: hi, script: [{answer: hello}]}\n  - {id: b, task: hi}\n")
    with pytest.raises(ConfigError, match="case\\(s\\) b have no script"):
        await run_evalset(load_evalset(path), bank_agent(), runtime=Runtime.in_memory())
    report = await run_evalset(load_evalset(path), bank_agent(), runtime=Runtime.in_memory(), cases=["a"])
    assert [c.case_id for c in report.cases] == ["a"]


async def test_unimportable_checks_fail_before_any_trial(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\ncases:\n  - id: a\n    task: hi\n    script: [{answer: hello}]\n"
        "    expect: {state: [{check: 'no_such_module_x:fn'}]}\n"
    )
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module_x'"):
        await run_evalset(load_evalset(path), bank_agent(), runtime=Runtime.in_memory())


async def test_results_are_stored_in_the_database_with_the_agents_configuration(
    evalset: EvalSet, tmp_path: Path
) -> None:
    from keel.durable import DurableEngine

    url = f"sqlite:///{tmp_path / 'keel.db'}"
    try:
        runtime = Runtime(url)
        report = await run_evalset(evalset, bank_agent(), trials=2, runtime=runtime)
        store = ResultStore(url)
        eval_id = store.save(report)
        stored = store.load(eval_id)
        assert stored.to_dict() == EvalReport.from_dict(json.loads(json.dumps(report.to_dict()))).to_dict()
        assert stored.config_hash == report.config_hash and stored.agent == "bank" and stored.model == "scripted"
        (row,) = store.history("bank")
        assert row["eval_id"] == eval_id and row["config_hash"] == report.config_hash and row["trials"] == 2
        assert row["agent_version"] == "1" and row["keel_version"] == "0.1.0"
        trials = store.trial_rows(eval_id)
        assert len(trials) == 6 and all(t["passed"] for t in trials)
        # every trial is a real durable run in the same database
        assert runtime.get(trials[0]["run_id"]).status in ("done", "waiting")
        assert bank_agent(max_steps=3).max_steps == 3
        store.close()
    finally:
        DurableEngine.close()


def test_the_configuration_hash_follows_the_agent() -> None:
    from keel.evals import agent_fingerprint

    same = agent_fingerprint(bank_agent())["config_hash"]
    assert agent_fingerprint(bank_agent())["config_hash"] == same
    assert agent_fingerprint(bank_agent(max_steps=3))["config_hash"] != same
    without_approval = Agent("bank", ScriptedModel([]), tools=[balance, pay], policies=[])
    assert agent_fingerprint(without_approval)["config_hash"] != same


@pytest.mark.parametrize(
    ("actual", "expected", "result"),
    [
        ({"amount": "249.00", "order_id": "A-1004"}, {"amount": 249}, True),
        ({"amount": 249.5}, {"amount": "249.50"}, True),
        ({"amount": 249.5}, {"amount": 249}, False),
        ({"order_id": "a-1004 "}, {"order_id": "A-1004"}, True),
        ({"address": {"street": "Main 1", "city": "X"}}, {"address": {"street": "main 1"}}, True),
        ({"address": {"street": "Main 1"}}, {"address": {"city": "X"}}, False),
        ({"tags": ["a", "b"]}, {"tags": ["b"]}, True),
        ({"flag": "true"}, {"flag": True}, False),
        ({}, {"x": None}, False),
    ],
)
def test_argument_containment(actual: Any, expected: Any, result: bool) -> None:
    assert contains(actual, expected) is result


class Refund(BaseModel):
    order_id: str
    amount: float


class Strict(BaseModel):
    order_id: str
    amount: float
    currency: str


STRUCTURED = f"""\
name: structured
cases:
  - id: structured-output
    task: Refund A-1 fully.
    expect:
      output_schema: "{__name__}:Refund"
    script:
      - output: {{order_id: A-1, amount: 5}}
  - id: schema-mismatch
    task: Refund A-1 fully.
    expect:
      output_schema: "{__name__}:Strict"
    script:
      - output: {{order_id: A-1, amount: 5}}
  - id: gives-up
    task: Refund A-1 fully.
    expect: {{status: failed, answer_contains: [no order]}}
    script:
      - give_up: no order A-1
"""


async def test_structured_outputs_are_checked_against_a_schema(tmp_path: Path) -> None:
    path = tmp_path / "structured.yaml"
    path.write_text(STRUCTURED, encoding="utf-8")
    agent = Agent("refunder", ScriptedModel([]), output_type=Refund)
    report = await run_evalset(load_evalset(path), agent, runtime=Runtime.in_memory())
    ok, mismatch, gave_up = report.cases
    assert ok.successes == 1 and ok.trials[0].answer == '{"order_id":"A-1","amount":5.0}'
    (failure,) = mismatch.trials[0].failures
    assert failure.name == f"output_schema[{__name__}:Strict]" and "Field required" in failure.detail
    assert gave_up.successes == 1 and gave_up.trials[0].status == "failed"


def test_limits_and_exact_answers_report_what_they_found(tmp_path: Path) -> None:
    from keel import RunResult, Usage
    from keel.evals import Case, TrialFacts
    from keel.evals._checks import run_checks

    case = Case.model_validate(
        {"id": "c", "task": "t", "expect": {"answer_equals": "yes", "max_steps": 2, "max_cost": 0.01}}
    )
    result = RunResult("run_1", "done", "no", steps=3, usage=Usage(10, 10, 3, 0.02))
    outcomes = run_checks(CheckContext(case, result, TrialFacts(), {}, 0))
    assert {o.name: (o.passed, o.detail) for o in outcomes} == {
        "status=done": (True, ""),
        "answer_equals": (False, "answer: 'no'"),
        "max_steps=2": (False, "3 steps"),
        "max_cost=0.01": (False, "cost 0.020000"),
    }
