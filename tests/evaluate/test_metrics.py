"""Metrics against hand-computed values, including absent classes and folds without positives."""

import math

import numpy as np
import pytest

from evaluate.metrics import (
    NStageMetrics,
    StationMetrics,
    n_stage_confusion,
    n_stage_metrics,
    station_confusion,
    station_metrics,
    summarise_folds,
)


def test_station_metrics_match_hand_counts():
    # tp=2, fn=1, tn=3, fp=1
    y_true = np.array([1, 1, 1, 0, 0, 0, 0])
    y_pred = np.array([1, 1, 0, 0, 0, 0, 1])
    prob = np.array([0.9, 0.8, 0.3, 0.1, 0.2, 0.4, 0.7])
    m = station_metrics(y_true, y_pred, prob)
    assert m.accuracy == pytest.approx(5 / 7)
    assert m.sensitivity == pytest.approx(2 / 3)
    assert m.specificity == pytest.approx(3 / 4)
    assert m.balanced_accuracy == pytest.approx((2 / 3 + 3 / 4) / 2)
    # AUC by pair counting: positives {0.9, 0.8, 0.3} over negatives {0.1, 0.2, 0.4, 0.7}: 4 + 4 + 2 of 12
    assert m.auc == pytest.approx(10 / 12)
    assert (m.n, m.n_positive, m.n_negative) == (7, 3, 4)


def test_station_metrics_without_positives_are_not_inflated():
    m = station_metrics(np.array([0, 0, 0, 0]), np.array([0, 1, 0, 0]), np.array([0.1, 0.6, 0.2, 0.3]))
    assert math.isnan(m.sensitivity)
    assert math.isnan(m.auc)
    assert m.specificity == pytest.approx(0.75)
    assert m.balanced_accuracy == pytest.approx(0.75)  # recall of the one class present, not (0.75 + 1) / 2


def test_station_metrics_without_probability_has_nan_auc():
    assert math.isnan(station_metrics(np.array([0, 1]), np.array([0, 1])).auc)


def test_station_metrics_refuse_unknown_labels():
    with pytest.raises(ValueError, match="filter unknown labels"):
        station_metrics(np.array([0, -1]), np.array([0, 1]))


def test_station_confusion_rows_are_truth():
    matrix = station_confusion(np.array([1, 1, 0]), np.array([0, 1, 1]))
    assert matrix.tolist() == [[0, 1], [1, 1]]


def test_n_stage_metrics_one_vs_rest_macro_over_present_stages():
    # stages present in truth: 0, 1, 2 (no N3); one scan wrongly called N3
    n_true = np.array([0, 0, 0, 1, 1, 2])
    n_pred = np.array([0, 0, 1, 1, 2, 3])
    m = n_stage_metrics(n_true, n_pred)
    assert m.stages_present == (0, 1, 2)
    assert m.accuracy == pytest.approx(3 / 6)
    # sensitivities: N0 2/3, N1 1/2, N2 0/1
    assert m.sensitivity == pytest.approx((2 / 3 + 0.5 + 0) / 3)
    assert m.balanced_accuracy == m.sensitivity
    # specificities (one vs rest): N0 3/3; N1: negatives {0,0,0,2}, one predicted 1 -> 3/4; N2: negatives 5, one
    # predicted 2 -> 4/5
    assert m.specificity == pytest.approx((1 + 0.75 + 0.8) / 3)


def test_n_stage_specificity_undefined_when_every_scan_has_that_stage():
    m = n_stage_metrics(np.array([2, 2, 2]), np.array([2, 1, 2]))
    assert m.stages_present == (2,)
    assert m.sensitivity == pytest.approx(2 / 3)
    assert math.isnan(m.specificity)


def test_n_stage_confusion_and_refusal_of_unstaged():
    assert n_stage_confusion(np.array([0, 3]), np.array([1, 3]))[0, 1] == 1
    with pytest.raises(ValueError, match="unstageable"):
        n_stage_metrics(np.array([0, -1]), np.array([0, 0]))


def test_summary_skips_folds_that_cannot_define_a_metric():
    folds = [
        station_metrics(np.array([1, 0]), np.array([1, 0])),  # sensitivity 1
        station_metrics(np.array([1, 0]), np.array([0, 0])),  # sensitivity 0
        station_metrics(np.array([0, 0]), np.array([0, 0])),  # no positives: sensitivity NaN
    ]
    s = summarise_folds(folds)
    assert s.n_folds["sensitivity"] == 2 and s.n_folds["accuracy"] == 3
    assert s.mean["sensitivity"] == pytest.approx(0.5)
    assert s.sd["sensitivity"] == pytest.approx(np.std([1.0, 0.0], ddof=1))
    assert s.format("sensitivity") == "0.50 ± 0.71 (2/3 folds)"
    assert s.format("auc") == "n/a"
    assert s.format("accuracy") == f"{np.mean([1, 0.5, 1]):.2f} ± {np.std([1, 0.5, 1], ddof=1):.2f}"


def test_summary_lists_the_float_metrics_of_each_kind():
    assert set(summarise_folds([n_stage_metrics(np.array([0]), np.array([0]))]).mean) == {
        "accuracy", "balanced_accuracy", "sensitivity", "specificity"}
    assert "auc" in summarise_folds([station_metrics(np.array([0]), np.array([0]))]).mean
    assert StationMetrics and NStageMetrics


def test_roc_auc_and_confusion_agree_with_scikit_learn_with_ties_and_weights():
    from sklearn.metrics import confusion_matrix, roc_auc_score

    from evaluate.metrics import confusion, roc_auc

    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, 300)
    score = np.round(rng.random(300) + 0.3 * y_true, 1)  # rounded: many ties
    weight = rng.integers(0, 4, 300).astype(float)
    assert roc_auc(y_true, score) == pytest.approx(roc_auc_score(y_true, score))
    assert roc_auc(y_true, score, weight) == pytest.approx(roc_auc_score(y_true, score, sample_weight=weight))
    assert np.isnan(roc_auc(np.zeros(5, int), score[:5]))
    n_true, n_pred = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    np.testing.assert_array_equal(confusion(n_true, n_pred, 4), confusion_matrix(n_true, n_pred, labels=range(4)))
    np.testing.assert_allclose(confusion(n_true, n_pred, 4, weight),
                               confusion_matrix(n_true, n_pred, labels=range(4), sample_weight=weight))
