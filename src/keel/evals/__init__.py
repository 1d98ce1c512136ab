"""Evaluation: eval-set files, a runner over k trials, checks, an LLM judge, pass@k and pass^k, reports.

Example:
    >>> from keel.evals import load_evalset, run_evalset
    >>> evalset = load_evalset("examples/support/evals.yaml")            # doctest: +SKIP
    >>> report = await run_evalset(evalset, agent, trials=3)             # doctest: +SKIP
    >>> report.totals()["pass_hat_k"]                                    # doctest: +SKIP

From the command line: ``keel eval EVALSET --trials 3 [--baseline FILE]``; see docs/evals.md.
"""

from ._checks import CheckContext, CheckOutcome, TrialFacts, contains
from ._format import (
    CRITERIA,
    Case,
    EvalSet,
    EvalSetError,
    Expectations,
    FixtureSpec,
    GateSpec,
    HumanLabel,
    JudgeSpec,
    ScriptStep,
    StateCheck,
    ToolExpectation,
    Turn,
    load_evalset,
)
from ._judge import Agreement, Judge, JudgeVerdict, PairwiseResult, PairwiseVerdict, compare_answers
from ._render import print_report, render_html
from ._report import CaseComparison, CaseResult, Comparison, EvalReport, TrialResult, compare
from ._results import ResultStore
from ._runner import FixtureRequest, agent_fingerprint, run_evalset, scripted_agent, trial_seed
from ._stats import cohens_kappa, fisher_less, holm, pass_at_k, pass_hat_k, stratified_less

__all__ = [
    "Agreement",
    "CRITERIA",
    "Case",
    "CaseComparison",
    "CaseResult",
    "CheckContext",
    "CheckOutcome",
    "Comparison",
    "EvalReport",
    "EvalSet",
    "EvalSetError",
    "Expectations",
    "FixtureRequest",
    "FixtureSpec",
    "GateSpec",
    "HumanLabel",
    "Judge",
    "JudgeSpec",
    "JudgeVerdict",
    "PairwiseResult",
    "PairwiseVerdict",
    "ResultStore",
    "ScriptStep",
    "StateCheck",
    "ToolExpectation",
    "TrialFacts",
    "TrialResult",
    "Turn",
    "agent_fingerprint",
    "cohens_kappa",
    "compare",
    "compare_answers",
    "contains",
    "fisher_less",
    "holm",
    "load_evalset",
    "pass_at_k",
    "pass_hat_k",
    "print_report",
    "render_html",
    "run_evalset",
    "scripted_agent",
    "stratified_less",
    "trial_seed",
]
