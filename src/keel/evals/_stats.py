"""The statistics of evals: pass@k, pass^k, exact tests for regressions, and Cohen's kappa.

pass@k and pass^k use the unbiased estimators over n trials with c successes (HumanEval's pass@k,
tau-bench's pass^k): the chance that at least one, or all, of k trials drawn without replacement
from the n succeed.

Regressions are judged with exact tests, because k is small (3 trials is common) and normal
approximations are meaningless there:

- per case, Fisher's exact test, one-sided (is the current success rate lower than the baseline's?);
- over the whole set, the exact conditional test stratified by case: under "nothing changed" each
  case's current successes, given the case's total successes over both runs, follow a
  hypergeometric law; the p-value is the chance that the sum over cases is as low as observed
  (the exact form of the Cochran-Mantel-Haenszel test). Cases are strata, so a set mixing easy
  and hard cases is not mistaken for a change.

Per-case p-values are adjusted for the number of cases (Holm); the whole-set test needs no
adjustment. With 3 trials a single case can reach p = 0.05 at best (3/3 before, 0/3 now), which is
what 3 trials can tell from noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

__all__ = [
    "cohens_kappa",
    "fisher_less",
    "holm",
    "pass_at_k",
    "pass_hat_k",
    "significant",
    "stratified_less",
]


def _check(n: int, c: int, k: int) -> None:
    if not 0 <= c <= n:
        raise ValueError(f"successes must be between 0 and the {n} trials, got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of trials ({n}), got {k}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of k trials succeeds, estimated from c successes in n trials.

    Raises:
        ValueError: k is outside 1..n or c outside 0..n.
    """
    _check(n, c, k)
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """pass^k: the chance that all k trials succeed, estimated from c successes in n trials.

    Raises:
        ValueError: k is outside 1..n or c outside 0..n.
    """
    _check(n, c, k)
    return comb(c, k) / comb(n, k)


def _hypergeom(total: int, successes: int, draws: int) -> dict[int, float]:
    """The law of the successes among `draws` of `total` items of which `successes` are successes."""
    denominator = comb(total, draws)
    low, high = max(0, draws - (total - successes)), min(draws, successes)
    return {x: comb(successes, x) * comb(total - successes, draws - x) / denominator for x in range(low, high + 1)}


def fisher_less(c1: int, n1: int, c0: int, n0: int) -> float:
    """One-sided Fisher exact p-value that the current rate c1/n1 is below the baseline's c0/n0."""
    return stratified_less([(c1, n1, c0, n0)])


def stratified_less(strata: Sequence[tuple[int, int, int, int]]) -> float:
    """One-sided exact p-value that current rates are lower, stratified by case.

    Args:
        strata: per case ``(current successes, current trials, baseline successes, baseline trials)``.

    Returns:
        P(sum of current successes <= observed), each case's current successes hypergeometric given
        that case's total successes; 1.0 when no case carries information.
    """
    law = {0: 1.0}
    observed = 0
    for c1, n1, c0, n0 in strata:
        observed += c1
        stratum = _hypergeom(n1 + n0, c1 + c0, n1)
        combined: dict[int, float] = {}
        for s, p in law.items():
            for x, q in stratum.items():
                combined[s + x] = combined.get(s + x, 0.0) + p * q
        law = combined
    return min(1.0, sum(p for s, p in law.items() if s <= observed))


def significant(p_value: float, alpha: float) -> bool:
    """Whether `p_value` rejects at level `alpha` (p <= alpha, with room for floating-point rounding)."""
    return p_value <= alpha * (1 + 1e-9)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (family-wise error control across cases), in the input's order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def cohens_kappa(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Cohen's kappa between two raters' pass/fail labels; None when undefined (no items, or chance = 1).

    Raises:
        ValueError: the two label lists differ in length.
    """
    if len(a) != len(b):
        raise ValueError(f"kappa needs as many labels from each rater, got {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pa, pb = sum(a) / n, sum(b) / n
    chance = pa * pb + (1 - pa) * (1 - pb)
    if chance >= 1.0:
        return None
    return (observed - chance) / (1 - chance)
