"""Reports: totals, JSON round trips, the regression gate's statistics, the table and the HTML page."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from keel.evals import CaseResult, CheckOutcome, EvalReport, TrialResult, compare, print_report, render_html


def trial(case: str, index: int, passed: bool, answer: str = "ok") -> TrialResult:
    checks = [CheckOutcome("status=done", passed, "" if passed else "the run ended failed")]
    return TrialResult(
        case,
        index,
        index,
        f"run_{case}_{index}",
        "done",
        passed,
        answer,
        None,
        2,
        0.001,
        10,
        0.5,
        ["lookup_order"],
        [],
        checks,
    )


def report(outcomes: dict[str, list[bool]], answer: str = "ok") -> EvalReport:
    cases = [CaseResult(c, ["t"], [trial(c, i, p, answer) for i, p in enumerate(r)]) for c, r in outcomes.items()]
    k = len(next(iter(outcomes.values())))
    return EvalReport("set", "agent", "scripted", "0.1.0", "abc", k, 0, 1_700_000_000.0, 1.5, cases)


ALL = [True, True, True]


def test_totals() -> None:
    r = report({"a": ALL, "b": [True, False, True]})
    t = r.totals()
    assert t["trials"] == 6 and t["passed_trials"] == 5
    assert t["pass_at_k"] == pytest.approx(1.0) and t["pass_hat_k"] == pytest.approx(0.5)
    assert t["cost_usd"] == pytest.approx(0.006) and t["cases_all_passed"] == 1


def test_json_round_trip_and_a_foreign_file_is_refused() -> None:
    r = report({"a": ALL, "b": [True, False, True]})
    data = json.loads(json.dumps(r.to_dict()))
    assert EvalReport.from_dict(data).to_dict() == data
    with pytest.raises(ValueError, match="not a keel eval report"):
        EvalReport.from_dict({"cases": []})


def test_an_unchanged_set_is_no_regression() -> None:
    base = report({f"c{i}": ALL for i in range(30)})
    c = compare(report({f"c{i}": ALL for i in range(30)}), base)
    assert not c.regression and c.p_value == 1.0 and c.regressed_cases == []


def test_noise_is_not_a_regression() -> None:
    base = report({"a": ALL, "b": ALL, "c": ALL})
    c = compare(report({"a": [True, False, True], "b": ALL, "c": ALL}), base)
    assert c.p_value == pytest.approx(0.5) and not c.regression


def test_one_case_failing_every_trial_is_a_regression_of_the_set() -> None:
    outcomes = {f"c{i}": ALL for i in range(30)}
    base = report(outcomes)
    now = report({**outcomes, "c7": [False, False, False]})
    c = compare(now, base)
    assert c.p_value == pytest.approx(0.05) and c.regression
    assert c.regressed_cases == []  # with 30 cases, Holm's adjustment needs more than 3 trials per case
    row = next(r for r in c.cases if r.case_id == "c7")
    assert row.p_value == pytest.approx(0.05) and row.p_adjusted == pytest.approx(1.0)
    assert c.baseline_pass_rate == 1.0 and c.current_pass_rate == pytest.approx(87 / 90)


def test_with_more_trials_a_single_case_is_flagged_on_its_own() -> None:
    ten = [True] * 10
    base = report({"a": ten, "b": ten, "c": ten})
    c = compare(report({"a": [False] * 10, "b": ten, "c": ten}), base)
    assert c.regressed_cases == ["a"] and c.regression


def test_small_drops_across_many_cases_add_up() -> None:
    base = report({f"c{i}": ALL for i in range(10)})
    c = compare(report({f"c{i}": [True, True, False] for i in range(10)}), base)
    assert c.p_value == pytest.approx(0.5**10) and c.regression and c.regressed_cases == []


def test_new_and_missing_cases_are_listed_not_tested() -> None:
    c = compare(report({"a": ALL, "new": [False, False, False]}), report({"a": ALL, "gone": ALL}))
    assert c.missing == ["gone"] and not c.regression
    new = next(r for r in c.cases if r.case_id == "new")
    assert new.baseline is None and new.p_value is None


def test_the_table_shows_cases_failures_and_the_verdict() -> None:
    base = report({"a": ALL, "b": ALL})
    now = report({"a": ALL, "b": [False, False, False]})
    now.comparison = compare(now, base)
    buffer = io.StringIO()
    print_report(now, Console(file=buffer, width=160, color_system=None))
    text = buffer.getvalue()
    assert "pass^3" in text and "0/3" in text and "baseline" in text
    assert "FAIL b trial 0: status=done: the run ended failed" in text
    assert "stratified exact p = 0.0500" in text and "REGRESSION" in text


def test_the_html_report_is_self_contained_and_escaped() -> None:
    r = report({"refund-case": [True, False, True]}, answer="<script>alert(1)</script>")
    page = render_html(r)
    assert page.startswith("<!doctype html>") and "refund-case" in page and "pass^3" in page
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    data = page.split("<script type='application/json' id='keel-eval-data'>", 1)[1].split("</script>", 1)[0]
    assert json.loads(data.replace("<\\/", "</"))["cases"][0]["id"] == "refund-case"
