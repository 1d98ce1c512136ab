"""Eval results: per trial, per case and in total; JSON round trips; the regression gate.

`compare` holds a report against a baseline report (its JSON file) and flags a regression only when
the drop is larger than the trials can tell from noise: exact one-sided tests per case (Fisher,
Holm-adjusted over the cases) and over the whole set (stratified by case). See `_stats`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from ._checks import CheckOutcome
from ._stats import fisher_less, holm, pass_at_k, pass_hat_k, significant, stratified_less

__all__ = ["CaseComparison", "CaseResult", "Comparison", "EvalReport", "TrialResult", "compare"]


@dataclass(slots=True)
class TrialResult:
    """One trial of one case."""

    case_id: str
    trial: int
    seed: int
    run_id: str
    status: str
    passed: bool
    answer: str
    error: str | None
    steps: int
    cost_usd: float
    tokens: int
    latency_s: float
    tools: list[str]
    approvals: list[str]
    checks: list[CheckOutcome]
    verdict: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "case_id": self.case_id,
            "trial": self.trial,
            "seed": self.seed,
            "run_id": self.run_id,
            "status": self.status,
            "passed": self.passed,
            "answer": self.answer,
            "error": self.error,
            "steps": self.steps,
            "cost_usd": self.cost_usd,
            "tokens": self.tokens,
            "latency_s": round(self.latency_s, 4),
            "tools": self.tools,
            "approvals": self.approvals,
            "checks": [c.to_dict() for c in self.checks],
            "verdict": self.verdict,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        """Build from `to_dict` output."""
        fields = {k: v for k, v in data.items() if k != "checks"}
        return cls(**fields, checks=[CheckOutcome(**c) for c in data.get("checks", [])])

    @property
    def failures(self) -> list[CheckOutcome]:
        """The checks that failed."""
        return [c for c in self.checks if not c.passed and not c.skipped]


@dataclass(slots=True)
class CaseResult:
    """A case's trials and what they add up to."""

    case_id: str
    tags: list[str]
    trials: list[TrialResult]

    @property
    def n(self) -> int:
        """Trials run."""
        return len(self.trials)

    @property
    def successes(self) -> int:
        """Trials that passed."""
        return sum(t.passed for t in self.trials)

    def pass_at(self, k: int) -> float:
        """pass@k: the chance that at least one of k trials passes."""
        return pass_at_k(self.n, self.successes, k)

    def pass_hat(self, k: int) -> float:
        """pass^k: the chance that all k trials pass."""
        return pass_hat_k(self.n, self.successes, k)

    def summary(self) -> dict[str, Any]:
        """Counts, pass@k and pass^k for k = trials, means of cost, steps and latency."""
        return {
            "n": self.n,
            "successes": self.successes,
            "pass_rate": self.successes / self.n,
            "pass_at_k": self.pass_at(self.n),
            "pass_hat_k": self.pass_hat(self.n),
            "cost_usd": sum(t.cost_usd for t in self.trials),
            "mean_steps": statistics.fmean(t.steps for t in self.trials),
            "mean_latency_s": statistics.fmean(t.latency_s for t in self.trials),
            "max_latency_s": max(t.latency_s for t in self.trials),
        }

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the summary's figures are included for readers of the file)."""
        return {
            "id": self.case_id,
            "tags": self.tags,
            **self.summary(),
            "trials": [t.to_dict() for t in self.trials],
        }


@dataclass(slots=True)
class EvalReport:
    """The results of one eval: which agent, how it was run, every case's trials, and the totals."""

    evalset: str
    agent: str
    model: str
    keel_version: str
    config_hash: str
    trials: int
    seed: int
    started_at: float
    duration_s: float
    cases: list[CaseResult]
    judge: str | None = None
    agent_version: str = ""
    """The deployment's application version (``KEEL_APPLICATION_VERSION``) the agent ran under."""
    agreement: dict[str, Any] | None = None
    pairwise: dict[str, Any] | None = None
    """The judge's pairwise comparison with the baseline's answers, when asked for."""
    alpha: float = 0.05
    min_pass_hat_k: float | None = None
    comparison: Comparison | None = field(default=None)

    def totals(self) -> dict[str, Any]:
        """Over all cases: trials, passes, mean pass@k and pass^k, cost, steps, latency."""
        summaries = [c.summary() for c in self.cases]
        trials = [t for c in self.cases for t in c.trials]
        return {
            "cases": len(self.cases),
            "trials": len(trials),
            "passed_trials": sum(t.passed for t in trials),
            "pass_rate": sum(t.passed for t in trials) / len(trials),
            "pass_at_k": statistics.fmean(s["pass_at_k"] for s in summaries),
            "pass_hat_k": statistics.fmean(s["pass_hat_k"] for s in summaries),
            "cases_all_passed": sum(c.successes == c.n for c in self.cases),
            "cost_usd": sum(t.cost_usd for t in trials),
            "tokens": sum(t.tokens for t in trials),
            "mean_steps": statistics.fmean(t.steps for t in trials),
            "mean_latency_s": statistics.fmean(t.latency_s for t in trials),
            "p95_latency_s": _percentile([t.latency_s for t in trials], 0.95),
            "duration_s": self.duration_s,
        }

    def below_threshold(self) -> bool:
        """Whether mean pass^k is below the set's ``gate.min_pass_hat_k``."""
        return self.min_pass_hat_k is not None and self.totals()["pass_hat_k"] < self.min_pass_hat_k

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict; `from_dict` reads it back (a baseline file is this)."""
        return {
            "format": "keel-eval/1",
            "evalset": self.evalset,
            "agent": self.agent,
            "model": self.model,
            "keel_version": self.keel_version,
            "agent_version": self.agent_version,
            "config_hash": self.config_hash,
            "trials": self.trials,
            "k": self.trials,
            "seed": self.seed,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 4),
            "judge": self.judge,
            "agreement": self.agreement,
            "pairwise": self.pairwise,
            "alpha": self.alpha,
            "min_pass_hat_k": self.min_pass_hat_k,
            "totals": self.totals(),
            "cases": [c.to_dict() for c in self.cases],
            "comparison": self.comparison.to_dict() if self.comparison else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalReport:
        """Build from `to_dict` output.

        Raises:
            ValueError: the data is not a keel eval report.
        """
        if data.get("format") != "keel-eval/1":
            raise ValueError("not a keel eval report (format keel-eval/1); write one with `keel eval ... --json FILE`")
        cases = [
            CaseResult(c["id"], list(c.get("tags", [])), [TrialResult.from_dict(t) for t in c["trials"]])
            for c in data["cases"]
        ]
        return cls(
            evalset=data["evalset"],
            agent=data["agent"],
            model=data["model"],
            keel_version=data["keel_version"],
            config_hash=data["config_hash"],
            trials=data["trials"],
            seed=data["seed"],
            started_at=data["started_at"],
            duration_s=data["duration_s"],
            cases=cases,
            judge=data.get("judge"),
            agent_version=data.get("agent_version", ""),
            agreement=data.get("agreement"),
            pairwise=data.get("pairwise"),
            alpha=data.get("alpha", 0.05),
            min_pass_hat_k=data.get("min_pass_hat_k"),
        )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(slots=True)
class CaseComparison:
    """One case, now against the baseline."""

    case_id: str
    baseline: tuple[int, int] | None
    """(successes, trials) in the baseline; None for a new case."""
    current: tuple[int, int]
    p_value: float | None = None
    """One-sided Fisher exact p-value that the case got worse."""
    p_adjusted: float | None = None
    """The p-value Holm-adjusted over the compared cases."""
    regressed: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "case_id": self.case_id,
            "baseline": list(self.baseline) if self.baseline else None,
            "current": list(self.current),
            "p_value": self.p_value,
            "p_adjusted": self.p_adjusted,
            "regressed": self.regressed,
        }


@dataclass(slots=True)
class Comparison:
    """A report against a baseline: per-case and whole-set tests, and the verdict."""

    alpha: float
    cases: list[CaseComparison]
    p_value: float
    """The stratified exact p-value that the set as a whole got worse."""
    missing: list[str]
    """Baseline cases that did not run now."""
    baseline_pass_rate: float
    current_pass_rate: float

    @property
    def regressed_cases(self) -> list[str]:
        """Cases whose drop is significant after Holm's adjustment."""
        return [c.case_id for c in self.cases if c.regressed]

    @property
    def regression(self) -> bool:
        """Whether the set as a whole, or any case, got worse beyond noise."""
        return significant(self.p_value, self.alpha) or bool(self.regressed_cases)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "alpha": self.alpha,
            "p_value": self.p_value,
            "regression": self.regression,
            "regressed_cases": self.regressed_cases,
            "missing": self.missing,
            "baseline_pass_rate": self.baseline_pass_rate,
            "current_pass_rate": self.current_pass_rate,
            "cases": [c.to_dict() for c in self.cases],
        }


def compare(current: EvalReport, baseline: EvalReport, alpha: float | None = None) -> Comparison:
    """Compare `current` with `baseline`, case by case and over the set.

    A regression is a one-sided exact test at level `alpha` (default the report's): over the set,
    stratified by case; per case, Fisher's test with Holm's adjustment over the compared cases.
    Cases only in one report are not tested (new cases have no baseline; missing ones are listed).
    """
    alpha = current.alpha if alpha is None else alpha
    base = {c.case_id: c for c in baseline.cases}
    rows: list[CaseComparison] = []
    strata: list[tuple[int, int, int, int]] = []
    for case in current.cases:
        old = base.get(case.case_id)
        row = CaseComparison(case.case_id, (old.successes, old.n) if old else None, (case.successes, case.n))
        if old is not None:
            row.p_value = fisher_less(case.successes, case.n, old.successes, old.n)
            strata.append((case.successes, case.n, old.successes, old.n))
        rows.append(row)
    tested = [r for r in rows if r.p_value is not None]
    for row, adjusted in zip(tested, holm([r.p_value or 1.0 for r in tested]), strict=True):
        row.p_adjusted = adjusted
        row.regressed = significant(adjusted, alpha)
    current_ids = {c.case_id for c in current.cases}
    compared = strata
    base_trials = sum(s[3] for s in compared) or 1
    cur_trials = sum(s[1] for s in compared) or 1
    return Comparison(
        alpha=alpha,
        cases=rows,
        p_value=stratified_less(strata) if strata else 1.0,
        missing=[c for c in base if c not in current_ids],
        baseline_pass_rate=sum(s[2] for s in compared) / base_trials,
        current_pass_rate=sum(s[0] for s in compared) / cur_trials,
    )
