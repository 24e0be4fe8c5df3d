"""McNemar, the patient-clustered permutation test and the patient bootstrap against hand-computed values and
scipy."""

import numpy as np
import pytest
from scipy.stats import binomtest, permutation_test

from evaluate.statistics import (
    bootstrap_intervals,
    cluster_permutation_test,
    mcnemar_exact,
    patient_resamples,
    percentile_interval,
)


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


def _one_patient_each(n: int) -> list[str]:
    return [f"p{i}" for i in range(n)]


def test_exact_permutation_with_a_patient_per_scan_matches_scipy_and_the_sign_test():
    y_true = np.array([0, 1, 2, 3, 2, 2, 1, 0, 0, 3, 2, 1])
    pred_a = np.array([0, 1, 2, 3, 2, 1, 1, 0, 1, 3, 2, 2])
    pred_b = np.array([1, 2, 2, 2, 3, 1, 0, 0, 0, 3, 3, 1])
    result = cluster_permutation_test(y_true, pred_a, pred_b, _one_patient_each(12), np.random.default_rng(0))
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
    patients = _one_patient_each(80)
    first = cluster_permutation_test(y_true, pred_a, pred_b, patients, np.random.default_rng(5), 4000)
    again = cluster_permutation_test(y_true, pred_a, pred_b, patients, np.random.default_rng(5), 4000)
    assert not first.exact and first.p_value == again.p_value
    only_a = int(np.sum((pred_a == y_true) & (pred_b != y_true)))
    only_b = int(np.sum((pred_a != y_true) & (pred_b == y_true)))
    assert first.p_value == pytest.approx(binomtest(only_a, only_a + only_b, 0.5).pvalue, abs=0.02)


def test_identical_methods_give_p_one():
    y = np.array([0, 1, 2])
    assert cluster_permutation_test(y, y, y, _one_patient_each(3), np.random.default_rng(0)).p_value == 1.0


def test_cluster_permutation_test_against_hand_computed_null():
    # patient differences (right by A - right by B): p0 +2 (3 stations), p1 +1, p2 0 -> flips of p0, p1 give
    # sums {3, 1, -1, -3}; |sum| >= 3 in 2 of 4 patterns
    y_true = np.array([1, 1, 0, 1, 0, 0])
    pred_a = np.array([1, 1, 0, 1, 1, 0])
    pred_b = np.array([0, 0, 0, 0, 1, 0])
    clusters = ["p0", "p0", "p0", "p1", "p2", "p2"]
    result = cluster_permutation_test(y_true, pred_a, pred_b, clusters, np.random.default_rng(0))
    assert result.exact and result.n_permutations == 4
    assert result.difference == pytest.approx(3 / 6) and result.p_value == pytest.approx(0.5)


def test_one_patient_with_many_discordant_stations_is_significant_for_mcnemar_but_not_when_clustered():
    y_true = np.ones(17 * 3, dtype=int)
    pred_a = y_true.copy()
    pred_b = y_true.copy()
    pred_b[:17] = 0  # B misses every station of patient 0 only
    clusters = [f"p{i // 17}" for i in range(y_true.size)]
    assert mcnemar_exact(y_true, pred_a, pred_b).p_value < 1e-4  # 17 "independent" discordant cases
    clustered = cluster_permutation_test(y_true, pred_a, pred_b, clusters, np.random.default_rng(0))
    assert clustered.p_value == 1.0  # one patient: its sign flip gives +17 or -17, both as extreme


def test_cluster_permutation_test_monte_carlo_agrees_with_exact_enumeration(monkeypatch):
    import evaluate.statistics as statistics

    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 2, 48)  # 12 patients of 4 stations: at most 12 differing patients, enumerated
    pred_a = np.where(rng.random(48) < 0.8, y_true, 1 - y_true)
    pred_b = np.where(rng.random(48) < 0.6, y_true, 1 - y_true)
    clusters = [f"p{i // 4}" for i in range(48)]
    exact = statistics.cluster_permutation_test(y_true, pred_a, pred_b, clusters, rng)
    monkeypatch.setattr(statistics, "EXACT_PERMUTATION_LIMIT", 0)
    sampled = statistics.cluster_permutation_test(y_true, pred_a, pred_b, clusters, np.random.default_rng(2), 40_000)
    assert exact.exact and not sampled.exact
    assert sampled.p_value == pytest.approx(exact.p_value, abs=0.01)


def test_patient_bootstrap_moves_a_patients_scans_together_and_matches_a_hand_computed_interval():
    from evaluate.metrics import n_stage_metrics

    # p0: one scan staged right; p1: two scans staged wrong. Resamples (multiplicities of p0, p1):
    # (2, 0) -> accuracy 1, (0, 2) -> 0, (1, 1) -> 1/3 (one right scan of three)
    patients = ["p0", "p1", "p1"]
    n_true, n_pred = np.array([1, 2, 3]), np.array([1, 0, 0])
    weights = np.array([[2, 0, 0], [0, 2, 2], [1, 1, 1]])
    intervals = bootstrap_intervals(lambda w: n_stage_metrics(n_true, n_pred, w), weights, ["accuracy"])
    # percentiles 2.5 and 97.5 of (0, 1/3, 1), linear interpolation: 0.05 * 1/3 and 1/3 + 0.95 * 2/3
    assert intervals["accuracy"].low == pytest.approx(0.05 / 3)
    assert intervals["accuracy"].high == pytest.approx(1 / 3 + 0.95 * 2 / 3)

    drawn = patient_resamples(patients, 4000, seed=0)
    assert drawn.shape == (4000, 3) and (drawn[:, 1] == drawn[:, 2]).all()
    assert set(np.unique(drawn[:, 0] + drawn[:, 1])) == {2}  # two patients drawn each time
    # P(p0 drawn twice) = 1/4, once = 1/2, never = 1/4
    share = np.bincount(drawn[:, 0], minlength=3) / 4000
    np.testing.assert_allclose(share, [0.25, 0.5, 0.25], atol=0.03)


def test_stratified_resamples_draw_each_member_as_often_as_it_has_patients():
    # member a: one patient with two scans; member b: three patients. Unstratified, a's patient would be drawn
    # 0-4 times; stratified it is drawn exactly once in every resample, and b's patients three times in all.
    patients = ["a/p0", "a/p0", "b/p0", "b/p1", "b/p2"]
    strata = ["a", "a", "b", "b", "b"]
    drawn = patient_resamples(patients, 20_000, 0, strata)
    assert (drawn[:, 0] == 1).all() and (drawn[:, 1] == 1).all()
    assert (drawn[:, 2:].sum(axis=1) == 3).all()
    np.testing.assert_allclose(drawn[:, 2:].mean(axis=0), [1, 1, 1], atol=0.03)  # sd of a mean: 0.006
    unstratified = patient_resamples(patients, 2000, 0)
    assert set(np.unique(unstratified[:, 0])) == {0, 1, 2, 3, 4}


def test_a_members_resamples_are_the_same_alone_as_in_a_pool_and_a_patient_in_two_members_is_refused():
    tiny = [f"tiny/p{i % 7}" for i in range(20)]
    pool = [f"dx/p{i}" for i in range(5)] + tiny + ["dx/p9"]
    alone = patient_resamples(tiny, 50, 3, ["tiny"] * 20)
    pooled = patient_resamples(pool, 50, 3, ["dx"] * 5 + ["tiny"] * 20 + ["dx"])
    assert (pooled[:, 5:25] == alone).all()
    assert not (patient_resamples(tiny, 50, 4, ["tiny"] * 20) == alone).all()  # another seed, other draws
    with pytest.raises(ValueError, match="patient 'p0' has scans in strata \\['a', 'b'\\]"):
        patient_resamples(["p0", "p0"], 5, 0, ["a", "b"])


def test_interval_counts_and_shows_the_resamples_that_left_the_metric_undefined():
    values = np.array([0.2, np.nan, 0.2, 0.8, np.nan, 0.8])
    interval = percentile_interval(values)
    assert (interval.n_undefined, interval.n_resamples) == (2, 6)
    assert (interval.low, interval.high) == (0.2, 0.8)  # the percentiles of the four defined values
    assert interval.format() == "[0.20, 0.80] (2/6 undefined)"
    assert percentile_interval(np.array([0.5, 0.5])).format() == "[0.50, 0.50]"
    assert percentile_interval(np.array([np.nan])).format() == "n/a"
    # a resample without weight on these cases leaves every metric undefined, and is counted
    from evaluate.metrics import n_stage_metrics

    weights = np.array([[1, 1], [0, 0], [2, 0]])
    intervals = bootstrap_intervals(lambda w: n_stage_metrics(np.array([1, 2]), np.array([1, 0]), w), weights,
                                    ["accuracy"])
    assert intervals["accuracy"].n_undefined == 1 and intervals["accuracy"].high == pytest.approx(0.5 + 0.975 * 0.5)
