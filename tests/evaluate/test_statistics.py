"""McNemar and the paired permutation test against hand-computed values and scipy."""

import numpy as np
import pytest
from scipy.stats import binomtest, permutation_test

from evaluate.statistics import mcnemar_exact, paired_permutation_test


def test_mcnemar_counts_discordant_pairs_and_matches_binomtest():
    y_true = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0])
    pred_a = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 1])  # wrong on the last two
    pred_b = np.array([0, 0, 0, 1, 1, 0, 0, 0, 1, 0])  # wrong on 0, 1, 2, 4
    result = mcnemar_exact(y_true, pred_a, pred_b)
    assert (result.only_a, result.only_b) == (4, 2)
    assert result.p_value == pytest.approx(binomtest(4, 6, 0.5).pvalue)
    # by hand: P(X <= 2) + P(X >= 4) for X ~ Bin(6, 1/2) = (1 + 6 + 15 + 15 + 6 + 1) / 64
    assert result.p_value == pytest.approx(44 / 64)


def test_mcnemar_without_discordant_pairs_is_one():
    y = np.array([1, 0, 1])
    assert mcnemar_exact(y, y, y).p_value == 1.0


def test_mcnemar_detects_a_clear_difference():
    y_true = np.ones(30, dtype=int)
    assert mcnemar_exact(y_true, y_true, np.zeros(30, dtype=int)).p_value < 1e-6


def test_mcnemar_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        mcnemar_exact(np.zeros(3), np.zeros(3), np.zeros(2))


def _scipy_paired(y_true, pred_a, pred_b):
    def statistic(a, b, axis):
        return np.mean(a == y_true, axis=axis) - np.mean(b == y_true, axis=axis)

    return permutation_test((pred_a, pred_b), statistic, permutation_type="samples", vectorized=True,
                            n_resamples=np.inf, alternative="two-sided")


def test_exact_permutation_matches_scipy_and_the_sign_test():
    y_true = np.array([0, 1, 2, 3, 2, 2, 1, 0, 0, 3, 2, 1])
    pred_a = np.array([0, 1, 2, 3, 2, 1, 1, 0, 1, 3, 2, 2])
    pred_b = np.array([1, 2, 2, 2, 3, 1, 0, 0, 0, 3, 3, 1])
    result = paired_permutation_test(y_true, pred_a, pred_b, np.random.default_rng(0))
    assert result.exact
    assert result.difference == pytest.approx(np.mean(pred_a == y_true) - np.mean(pred_b == y_true))
    assert result.p_value == pytest.approx(_scipy_paired(y_true, pred_a, pred_b).pvalue)
    # accuracy differences move only on scans where exactly one method is right: the sign test on those
    only_a = int(np.sum((pred_a == y_true) & (pred_b != y_true)))
    only_b = int(np.sum((pred_a != y_true) & (pred_b == y_true)))
    assert result.p_value == pytest.approx(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def test_monte_carlo_permutation_is_seeded_and_close_to_exact():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 4, 80)
    pred_a = np.where(rng.random(80) < 0.7, y_true, rng.integers(0, 4, 80))
    pred_b = np.where(rng.random(80) < 0.5, y_true, rng.integers(0, 4, 80))
    first = paired_permutation_test(y_true, pred_a, pred_b, np.random.default_rng(5), n_permutations=4000)
    again = paired_permutation_test(y_true, pred_a, pred_b, np.random.default_rng(5), n_permutations=4000)
    assert not first.exact and first.p_value == again.p_value
    only_a = int(np.sum((pred_a == y_true) & (pred_b != y_true)))
    only_b = int(np.sum((pred_a != y_true) & (pred_b == y_true)))
    assert first.p_value == pytest.approx(binomtest(only_a, only_a + only_b, 0.5).pvalue, abs=0.02)


def test_identical_methods_give_p_one():
    y = np.array([0, 1, 2])
    assert paired_permutation_test(y, y, y, np.random.default_rng(0)).p_value == 1.0
