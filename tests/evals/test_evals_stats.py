"""pass@k, pass^k, the exact regression tests and Cohen's kappa, checked against brute force."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

from keel.evals import cohens_kappa, fisher_less, holm, pass_at_k, pass_hat_k, stratified_less


def draws(n: int, c: int, k: int) -> list[tuple[bool, ...]]:
    trials = [True] * c + [False] * (n - c)
    return [tuple(trials[i] for i in idx) for idx in itertools.combinations(range(n), k)]


@pytest.mark.parametrize(("n", "c"), [(n, c) for n in range(1, 7) for c in range(n + 1)])
def test_pass_at_k_and_pass_hat_k_are_the_chances_over_all_k_subsets(n: int, c: int) -> None:
    for k in range(1, n + 1):
        subsets = draws(n, c, k)
        assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))
        assert pass_hat_k(n, c, k) == pytest.approx(sum(all(s) for s in subsets) / len(subsets))


def test_pass_hat_k_falls_with_k_while_pass_at_k_rises() -> None:
    assert [pass_hat_k(3, 2, k) for k in (1, 2, 3)] == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert [pass_at_k(3, 2, k) for k in (1, 2, 3)] == pytest.approx([2 / 3, 1.0, 1.0])


@pytest.mark.parametrize(("n", "c", "k"), [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_out_of_range_arguments_are_refused(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_hat_k(n, c, k)


def brute_fisher_less(c1: int, n1: int, c0: int, n0: int) -> Fraction:
    """P(current successes <= c1) when the c0 + c1 successes fall at random among all n0 + n1 trials."""
    total, successes = n0 + n1, c0 + c1
    outcomes = list(itertools.combinations(range(total), successes))
    low = sum(1 for o in outcomes if sum(1 for i in o if i < n1) <= c1)
    return Fraction(low, len(outcomes))


@pytest.mark.parametrize(
    ("c1", "n1", "c0", "n0"), [(0, 3, 3, 3), (1, 3, 3, 3), (2, 3, 3, 3), (0, 5, 4, 5), (3, 3, 0, 3)]
)
def test_fisher_matches_brute_force(c1: int, n1: int, c0: int, n0: int) -> None:
    assert fisher_less(c1, n1, c0, n0) == pytest.approx(float(brute_fisher_less(c1, n1, c0, n0)))


def test_three_trials_can_show_a_drop_only_from_all_to_none() -> None:
    assert fisher_less(0, 3, 3, 3) == pytest.approx(0.05)
    assert fisher_less(1, 3, 3, 3) == pytest.approx(0.2)
    assert fisher_less(3, 3, 3, 3) == 1.0


def test_the_stratified_test_pools_cases_without_mixing_them() -> None:
    one = (0, 3, 3, 3)
    assert stratified_less([one]) == pytest.approx(0.05)
    # cases with nothing to tell (all passed in both) change nothing
    assert stratified_less([one, (3, 3, 3, 3), (0, 3, 0, 3)]) == pytest.approx(0.05)
    # two cases dropping from 3/3 to 0/3 are far less likely by chance
    assert stratified_less([one, one]) == pytest.approx(0.05 * 0.05)
    # an improvement elsewhere offsets a drop: P(sum <= 3) = (1 + P(sum = 3)) / 2 = (1 + 0.41) / 2
    assert stratified_less([one, (3, 3, 0, 3)]) == pytest.approx(0.705)
    assert stratified_less([]) == 1.0


def test_holm_adjusts_in_order() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []


def test_cohens_kappa() -> None:
    # the textbook example: 20 yes-yes, 5 yes-no, 10 no-yes, 15 no-no -> kappa 0.4
    a = [True] * 20 + [True] * 5 + [False] * 10 + [False] * 15
    b = [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15
    assert cohens_kappa(a, b) == pytest.approx(0.4)
    assert cohens_kappa([True, False], [True, False]) == pytest.approx(1.0)
    assert cohens_kappa([True, True], [True, True]) is None  # chance agreement is 1: undefined
    assert cohens_kappa([], []) is None
    with pytest.raises(ValueError):
        cohens_kappa([True], [])
